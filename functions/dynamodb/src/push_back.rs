//! How often DynamoDB pushed back on this process: throttled attempts, counted per attempt by an
//! interceptor on the client (so a throttle the SDK retried away still counts), and conflicts
//! (a stream's version moved under an append, an analytics shard moved under its update, or
//! another transaction held an item). A function reads and resets the counts after each
//! batch and writes them as metrics beside the batch's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use serde::Deserialize;

/// The counts, shared by a function's client and stores.
#[derive(Debug, Default)]
pub struct PushBack {
    throttled: AtomicU64,
    conflicts: AtomicU64,
}

/// What [`PushBack`] counted since it was last taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushBackCounts {
    /// Requests DynamoDB refused for throughput (throttling), retried or not.
    pub throttled: u64,
    /// Writes refused because another writer got there first.
    pub conflicts: u64,
}

impl PushBack {
    /// The counts since the last call, which start again from zero.
    pub fn take(&self) -> PushBackCounts {
        PushBackCounts {
            throttled: self.throttled.swap(0, Ordering::Relaxed),
            conflicts: self.conflicts.swap(0, Ordering::Relaxed),
        }
    }

    /// Counts one conflict the stores saw.
    pub(crate) fn conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    fn add(&self, counts: PushBackCounts) {
        self.throttled
            .fetch_add(counts.throttled, Ordering::Relaxed);
        self.conflicts
            .fetch_add(counts.conflicts, Ordering::Relaxed);
    }

    /// The client interceptor that counts into these counts.
    pub fn interceptor(self: &Arc<Self>) -> CountPushBack {
        CountPushBack(Arc::clone(self))
    }
}

/// Error codes DynamoDB refuses a request with for throughput.
const THROTTLING: [&str; 4] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "ThrottlingError",
];

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "__type", default)]
    kind: String,
    #[serde(rename = "CancellationReasons", default)]
    reasons: Vec<Reason>,
}

#[derive(Deserialize)]
struct Reason {
    #[serde(rename = "Code", default)]
    code: Option<String>,
}

/// What one response says, by the DynamoDB JSON protocol: a 400 whose `__type` is a throttling
/// code is one throttle; a cancelled transaction counts each item throttled and notes a
/// conflict when another transaction held one of its items. A condition that failed is not
/// counted here: the store knows whether it was a conflict or a duplicate.
pub fn push_back_of(status: u16, body: &[u8]) -> PushBackCounts {
    if status != 400 {
        return PushBackCounts::default();
    }
    let Ok(error) = serde_json::from_slice::<ErrorBody>(body) else {
        return PushBackCounts::default();
    };
    let code = error.kind.rsplit('#').next().unwrap_or_default();
    let mut counts = PushBackCounts {
        throttled: u64::from(THROTTLING.contains(&code)),
        conflicts: 0,
    };
    for reason in error.reasons.iter().filter_map(|r| r.code.as_deref()) {
        if THROTTLING.contains(&reason) {
            counts.throttled += 1;
        }
        if reason == "TransactionConflict" {
            counts.conflicts = 1;
        }
    }
    counts
}

/// Counts each attempt's push-back; never fails a request.
#[derive(Debug)]
pub struct CountPushBack(Arc<PushBack>);

impl Intercept for CountPushBack {
    fn name(&self) -> &'static str {
        "sagaflow::CountPushBack"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(response) = context.response() {
            // The orchestrator has read a non-streaming body into memory by now.
            let body = response.body().bytes().unwrap_or_default();
            self.0.add(push_back_of(response.status().as_u16(), body));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_and_transaction_conflicts_are_read_from_the_error_body() {
        let throttled = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}"#;
        assert_eq!(
            push_back_of(400, throttled),
            PushBackCounts {
                throttled: 1,
                conflicts: 0
            }
        );
        let cancelled = br#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","CancellationReasons":[{"Code":"None"},{"Code":"TransactionConflict"},{"Code":"ThrottlingError"}]}"#;
        assert_eq!(
            push_back_of(400, cancelled),
            PushBackCounts {
                throttled: 1,
                conflicts: 1
            }
        );
        let condition = br#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","CancellationReasons":[{"Code":"ConditionalCheckFailed"}]}"#;
        assert_eq!(push_back_of(400, condition), PushBackCounts::default());
        assert_eq!(push_back_of(200, throttled), PushBackCounts::default());
        assert_eq!(push_back_of(400, b"<html>"), PushBackCounts::default());
    }

    #[test]
    fn taking_the_counts_starts_them_again() {
        let counts = PushBack::default();
        counts.conflict();
        counts.add(PushBackCounts {
            throttled: 2,
            conflicts: 0,
        });
        assert_eq!(
            counts.take(),
            PushBackCounts {
                throttled: 2,
                conflicts: 1
            }
        );
        assert_eq!(counts.take(), PushBackCounts::default());
    }
}
