//! Why a record was not processed, and what its trigger does about it: retried (with the rest
//! of its key), or dead-lettered with the error as its reason. Every handler returns this, built
//! with `?` from the errors underneath, each of which says for itself whether trying again may
//! help ([`Classified`]); no handler decides retry or dead letter on its own.

use std::error::Error;
use std::fmt;

use sagaflow_eventsourcing::{Classified, Transience};
use sagaflow_lambda_kafka::{InboundRecord, RecordOutcome};

/// Any error, kept with its sources.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// A record that failed: why, and whether it is retried or dead-lettered.
#[derive(Debug)]
pub struct RecordError {
    transience: Transience,
    source: BoxError,
}

impl RecordError {
    /// A record that can never succeed: it is dead-lettered with `error` as its reason.
    pub fn dead_letter(error: impl Into<BoxError>) -> Self {
        Self {
            transience: Transience::Permanent,
            source: error.into(),
        }
    }

    /// A record that may succeed later: it is retried.
    pub fn retry(error: impl Into<BoxError>) -> Self {
        Self {
            transience: Transience::Transient,
            source: error.into(),
        }
    }

    /// The same failure with `context` (such as the command type) before its reason.
    pub fn context(self, context: &'static str) -> Self {
        Self {
            transience: self.transience,
            source: Box::new(InContext {
                context,
                source: self.source,
            }),
        }
    }

    /// Whether the record is retried or dead-lettered.
    pub fn transience(&self) -> Transience {
        self.transience
    }

    /// The reason a dead letter or a retry carries: the error's own message.
    pub fn reason(&self) -> String {
        self.source.to_string()
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

impl Error for RecordError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}

impl<E: Classified + Error + Send + Sync + 'static> From<E> for RecordError {
    fn from(error: E) -> Self {
        Self {
            transience: error.transience(),
            source: Box::new(error),
        }
    }
}

impl From<RecordError> for RecordOutcome {
    fn from(error: RecordError) -> Self {
        match error.transience {
            Transience::Transient => RecordOutcome::Retry(error.reason()),
            Transience::Permanent => RecordOutcome::DeadLetter(error.reason()),
        }
    }
}

/// What a handler's result means for its record.
pub fn outcome(result: Result<(), RecordError>) -> RecordOutcome {
    match result {
        Ok(()) => RecordOutcome::Done,
        Err(error) => error.into(),
    }
}

/// A record with nothing to read: dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("record has no value")]
pub struct NoValue;

impl Classified for NoValue {
    fn transience(&self) -> Transience {
        Transience::Permanent
    }
}

/// The bytes a record carries, or [`NoValue`] when it carries none.
pub fn record_value(record: &InboundRecord) -> Result<&[u8], NoValue> {
    record
        .value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or(NoValue)
}

/// An error with what was being done when it happened.
#[derive(Debug)]
struct InContext {
    context: &'static str,
    source: BoxError,
}

impl fmt::Display for InContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl Error for InContext {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagaflow_eventsourcing::{DecodeError, StoreError};

    #[test]
    fn each_error_says_whether_its_record_is_retried_or_dead_lettered() {
        let unavailable = StoreError::Unavailable {
            reason: "throttled".into(),
            transience: Transience::Transient,
        };
        assert!(matches!(
            RecordOutcome::from(RecordError::from(unavailable)),
            RecordOutcome::Retry(r) if r.contains("throttled")
        ));
        let unreadable = DecodeError::UnknownEventType {
            aggregate_type: "order".into(),
            event_type: "order.exploded".into(),
        };
        let error = RecordError::from(unreadable).context("saga.start");
        assert_eq!(error.transience(), Transience::Permanent);
        assert!(error.reason().starts_with("saga.start: "), "{error}");
        assert!(
            error.source().is_some(),
            "the decode error is kept as the source"
        );
        assert_eq!(
            outcome(Err(RecordError::dead_letter("record has no value"))),
            RecordOutcome::DeadLetter("record has no value".into())
        );
        assert_eq!(outcome(Ok(())), RecordOutcome::Done);
    }
}
