//! Small helpers shared by the DynamoDB adapters: attribute values and SDK error triage.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use sagaflow_eventsourcing::{StoreError, Transience};
use sagaflow_orders::projection::ReadModelError;

/// FNV-1a of `bytes`: a hash that stays the same across processes and Rust versions, for
/// spreading items over shards that every reader must find again.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A string attribute.
pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute.
pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A string attribute of `item`, if present and a string.
pub(crate) fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// A number attribute of `item`, if present and parseable as `T`.
pub(crate) fn get_n<T: std::str::FromStr>(
    item: &HashMap<String, AttributeValue>,
    name: &str,
) -> Option<T> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// Error codes after which the same request may succeed: throttling, contention, server faults.
pub(crate) fn code_transience(code: &str) -> Transience {
    let transient = matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "ThrottlingException"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "TransactionInProgressException"
            | "TransactionConflictException"
            | "TransactionConflict"
            | "ThrottlingError"
    );
    if transient {
        Transience::Transient
    } else {
        Transience::Permanent
    }
}

/// An SDK call that failed: what was attempted and came back, and whether it may pass.
pub(crate) struct SdkFailure {
    /// The operation and the service's complaint.
    pub reason: String,
    /// Whether the same call may succeed again.
    pub transience: Transience,
}

impl From<SdkFailure> for StoreError {
    fn from(failure: SdkFailure) -> Self {
        StoreError::Unavailable {
            reason: failure.reason,
            transience: failure.transience,
        }
    }
}

impl From<SdkFailure> for ReadModelError {
    fn from(failure: SdkFailure) -> Self {
        ReadModelError::Unavailable {
            reason: failure.reason,
            transience: failure.transience,
        }
    }
}

/// What went wrong with an SDK call, and whether retrying may help (throttling, timeouts and
/// connection failures may pass; a malformed request or a missing table will not).
pub(crate) fn sdk_failure<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    operation: &str,
    error: &SdkError<E, R>,
) -> SdkFailure {
    let (transience, detail) = match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown");
            let message = service.err().message().unwrap_or("");
            (code_transience(code), format!("{code}: {message}"))
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (Transience::Transient, format!("{error:?}"))
        }
        _ => (Transience::Permanent, format!("{error:?}")),
    };
    SdkFailure {
        reason: format!("{operation}: {detail}"),
        transience,
    }
}
