//! Faults injected into the local system on a seeded schedule, for the chaos run: what AWS and
//! Kafka do to functions on a bad day, made reproducible.
//!
//! - a trigger delivers a batch twice, crashes after the handler committed (the batch comes
//!   again), fails half-way through (the batch comes again), or runs two invocations of the
//!   same batch at once (optimistic-concurrency races on every aggregate in it);
//! - the relay crashes after publishing and before its checkpoint (it publishes again);
//! - DynamoDB throttles a request before it is sent, or loses the answer to one that succeeded;
//! - a service never answers chosen commands, so the saga's deadline fires.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_types::config_bag::{Storable, StoreReplace};

/// A number in [0, 1) decided by `seed` and `parts` alone (splitmix64 over an FNV-1a mix).
pub fn roll(seed: u64, parts: &[&[u8]]) -> f64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ seed;
    for part in parts {
        for b in *part {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// What a trigger does to one invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerFault {
    /// Nothing: invoke once, commit.
    None,
    /// Invoke twice with the same batch (every record delivered twice).
    DeliverTwice,
    /// Invoke, then lose the response as if the function died after its commit: redeliver.
    CrashAfterCommit,
    /// Invoke with the first half of the batch only, then fail: redeliver the whole batch.
    ErrorHalfway,
    /// Invoke twice at once with the same batch: two functions racing on every aggregate.
    Race,
}

/// How often each fault happens, as shares in [0, 1].
#[derive(Clone, Debug, Default)]
pub struct FaultRates {
    /// Batches delivered twice.
    pub deliver_twice: f64,
    /// Invocations that crash after their commit.
    pub crash_after_commit: f64,
    /// Invocations that fail half-way.
    pub error_halfway: f64,
    /// Invocations raced by a second one on the same batch.
    pub race: f64,
    /// Relay batches published and then not checkpointed.
    pub relay_crash: f64,
    /// DynamoDB requests throttled before they are sent.
    pub dynamodb_throttle: f64,
    /// DynamoDB writes that succeed but whose answer is lost.
    pub dynamodb_lost_answer: f64,
}

/// Counts of the faults injected so far.
#[derive(Debug, Default)]
pub struct FaultCounts {
    /// Batches delivered twice.
    pub delivered_twice: AtomicU64,
    /// Invocations crashed after their commit.
    pub crashed_after_commit: AtomicU64,
    /// Invocations failed half-way.
    pub errored_halfway: AtomicU64,
    /// Invocations raced.
    pub raced: AtomicU64,
    /// Relay batches published twice.
    pub relay_crashes: AtomicU64,
    /// DynamoDB requests throttled.
    pub dynamodb_throttled: AtomicU64,
    /// DynamoDB answers lost after a successful write.
    pub dynamodb_answers_lost: AtomicU64,
    /// Commands never answered.
    pub silenced: AtomicU64,
    /// DynamoDB endpoint outages (the emulator stopped and started again on its data).
    pub endpoint_outages: AtomicU64,
}

impl FaultCounts {
    /// The counts as `(name, count)` lines.
    pub fn lines(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("batches delivered twice", get(&self.delivered_twice)),
            (
                "crashes after commit (batch redelivered)",
                get(&self.crashed_after_commit),
            ),
            (
                "errors half-way (batch redelivered)",
                get(&self.errored_halfway),
            ),
            ("racing invocations on the same batch", get(&self.raced)),
            ("relay crashes before checkpoint", get(&self.relay_crashes)),
            ("DynamoDB requests throttled", get(&self.dynamodb_throttled)),
            (
                "DynamoDB answers lost after a commit",
                get(&self.dynamodb_answers_lost),
            ),
            (
                "commands never answered (deadline fires)",
                get(&self.silenced),
            ),
            (
                "DynamoDB endpoint outages (stopped, started again)",
                get(&self.endpoint_outages),
            ),
        ]
    }
}

/// The seeded fault schedule every part of the local system consults.
#[derive(Debug)]
pub struct FaultPlan {
    /// The seed.
    pub seed: u64,
    /// How often each fault happens.
    pub rates: FaultRates,
    /// Orders whose `shipment.schedule` command the shipment service never answers.
    pub silent_orders: HashSet<String>,
    /// What was injected.
    pub counts: FaultCounts,
    requests: AtomicU64,
}

impl FaultPlan {
    /// A plan from `seed`, `rates` and the orders to silence.
    pub fn new(seed: u64, rates: FaultRates, silent_orders: HashSet<String>) -> Self {
        Self {
            seed,
            rates,
            silent_orders,
            counts: FaultCounts::default(),
            requests: AtomicU64::new(0),
        }
    }

    /// The fault for invocation `n` of trigger `name`.
    pub fn trigger_fault(&self, name: &str, n: u64) -> TriggerFault {
        let r = roll(self.seed, &[name.as_bytes(), &n.to_le_bytes()]);
        let rates = &self.rates;
        let mut edge = 0.0;
        for (rate, fault, count) in [
            (
                rates.deliver_twice,
                TriggerFault::DeliverTwice,
                &self.counts.delivered_twice,
            ),
            (
                rates.crash_after_commit,
                TriggerFault::CrashAfterCommit,
                &self.counts.crashed_after_commit,
            ),
            (
                rates.error_halfway,
                TriggerFault::ErrorHalfway,
                &self.counts.errored_halfway,
            ),
            (rates.race, TriggerFault::Race, &self.counts.raced),
        ] {
            edge += rate;
            if r < edge {
                count.fetch_add(1, Ordering::Relaxed);
                return fault;
            }
        }
        TriggerFault::None
    }

    /// Whether the relay crashes after publishing its batch `n`.
    pub fn relay_crashes(&self, n: u64) -> bool {
        let crash = roll(self.seed, &[b"relay", &n.to_le_bytes()]) < self.rates.relay_crash;
        if crash {
            self.counts.relay_crashes.fetch_add(1, Ordering::Relaxed);
        }
        crash
    }

    /// Whether a record is a command the shipment service never answers.
    pub fn is_silenced(&self, command_type: Option<&str>, key: Option<&str>) -> bool {
        let silenced = command_type == Some("shipment.schedule")
            && key.is_some_and(|k| self.silent_orders.contains(k));
        if silenced {
            self.counts.silenced.fetch_add(1, Ordering::Relaxed);
        }
        silenced
    }

    /// The DynamoDB interceptor that injects this plan's DynamoDB faults.
    pub fn dynamodb_interceptor(self: &Arc<Self>) -> DynamoFaults {
        DynamoFaults { plan: self.clone() }
    }

    fn next_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed)
    }
}

/// Injects DynamoDB faults: throttling before a request is sent, and a lost answer after a
/// write succeeded (the caller sees an error although the write happened).
#[derive(Debug, Clone)]
pub struct DynamoFaults {
    plan: Arc<FaultPlan>,
}

#[derive(Debug, Clone)]
struct LoseAnswer;

impl Storable for LoseAnswer {
    type Storer = StoreReplace<Self>;
}

const WRITES: [&str; 4] = ["TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem"];

impl Intercept for DynamoFaults {
    fn name(&self) -> &'static str {
        "sagaflow-chaos-dynamodb-faults"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let n = self.plan.next_request();
        let r = roll(self.plan.seed, &[b"dynamodb", &n.to_le_bytes()]);
        let rates = &self.plan.rates;
        if r < rates.dynamodb_throttle {
            self.plan
                .counts
                .dynamodb_throttled
                .fetch_add(1, Ordering::Relaxed);
            return Err("injected fault: throttled before sending".into());
        }
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or_default();
        let is_write = WRITES.iter().any(|w| target.ends_with(w));
        if is_write && r < rates.dynamodb_throttle + rates.dynamodb_lost_answer {
            cfg.interceptor_state().store_put(LoseAnswer);
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let succeeded = context.output_or_error().is_ok();
        if succeeded && cfg.load::<LoseAnswer>().is_some() {
            cfg.interceptor_state().unset::<LoseAnswer>();
            self.plan
                .counts
                .dynamodb_answers_lost
                .fetch_add(1, Ordering::Relaxed);
            return Err("injected fault: the write succeeded but its answer was lost".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_are_reproducible_and_spread() {
        assert_eq!(roll(7, &[b"a", b"1"]), roll(7, &[b"a", b"1"]));
        assert_ne!(roll(7, &[b"a", b"1"]), roll(8, &[b"a", b"1"]));
        let below: usize = (0..10_000u32)
            .filter(|i| roll(1, &[&i.to_le_bytes()]) < 0.1)
            .count();
        assert!((800..1_200).contains(&below), "{below}");
    }

    #[test]
    fn fault_shares_follow_the_rates() {
        let plan = FaultPlan::new(
            3,
            FaultRates {
                deliver_twice: 0.1,
                race: 0.05,
                ..FaultRates::default()
            },
            HashSet::new(),
        );
        let faults: Vec<_> = (0..10_000).map(|n| plan.trigger_fault("t", n)).collect();
        let twice = faults
            .iter()
            .filter(|f| **f == TriggerFault::DeliverTwice)
            .count();
        let race = faults.iter().filter(|f| **f == TriggerFault::Race).count();
        assert!((800..1_200).contains(&twice), "{twice}");
        assert!((350..650).contains(&race), "{race}");
        assert_eq!(
            plan.counts.delivered_twice.load(Ordering::Relaxed) as usize,
            twice
        );
    }
}
