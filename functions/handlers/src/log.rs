//! What a function says about its work, as structured `tracing` events: one per batch, one per
//! record that is retried or dead-lettered, with the record's place and its message's ids, and
//! the orchestrator's saga transitions. Never a payload, never a secret: only ids, counts,
//! names and reasons. The runtime's subscriber writes them (JSON lines on Lambda).

use std::time::Duration;

use sagaflow_eventsourcing::{StoredEvent, Transience};
use sagaflow_lambda_kafka::{BatchReport, InboundRecord, RecordId, RecordOutcome};
use sagaflow_records::records::{CAUSATION_ID_HEADER, CORRELATION_ID_HEADER};

use crate::inbound::Inbound;
use crate::record_error::{outcome, RecordError};

/// The ids a log line names a message by; each is there when the message (or, before it could
/// be read, the record's headers) says it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageIds {
    /// The command's or the event's own id.
    pub message_id: Option<String>,
    /// The business flow: the order id.
    pub correlation_id: Option<String>,
    /// What caused the message.
    pub causation_id: Option<String>,
    /// The command's or the event's type.
    pub message_type: Option<String>,
}

impl MessageIds {
    /// The ids of a message that was read.
    pub fn of(inbound: &Inbound) -> Self {
        match inbound {
            Inbound::Command(command) => Self {
                message_id: Some(command.command_id.clone()),
                correlation_id: Some(command.correlation_id.clone()),
                causation_id: Some(command.causation_id.clone()),
                message_type: Some(command.command_type.clone()),
            },
            Inbound::Event(event) => Self {
                message_id: Some(event.event_id.clone()),
                correlation_id: Some(event.correlation_id.clone()),
                causation_id: Some(event.causation_id.clone()),
                message_type: Some(event.event_type.clone()),
            },
        }
    }

    /// The ids a record's headers carry, for a record that could not be read.
    pub fn from_headers(record: &InboundRecord) -> Self {
        let header = |name| {
            record
                .header_values(name)
                .next()
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string)
        };
        Self {
            message_id: None,
            correlation_id: header(CORRELATION_ID_HEADER),
            causation_id: header(CAUSATION_ID_HEADER),
            message_type: None,
        }
    }

    /// The ids of a record as far as it could be read.
    pub fn of_prepared(record: &InboundRecord, prepared: &Result<Inbound, RecordError>) -> Self {
        match prepared {
            Ok(inbound) => Self::of(inbound),
            Err(_) => Self::from_headers(record),
        }
    }
}

/// Logs a record that failed: a warning when it is retried, an error when it is dead-lettered.
pub fn record_failed(function: &str, record: &RecordId, ids: &MessageIds, error: &RecordError) {
    let reason = without_quoted_values(&error.reason());
    let message_id = ids.message_id.as_deref().unwrap_or("");
    let correlation_id = ids.correlation_id.as_deref().unwrap_or("");
    let causation_id = ids.causation_id.as_deref().unwrap_or("");
    // One set of fields at either level: tracing wants each event's level written out.
    macro_rules! failed {
        ($level:expr, $message:literal) => {
            tracing::event!(
                $level,
                function,
                topic = %record.topic,
                partition = record.partition,
                offset = record.offset,
                message_id,
                correlation_id,
                causation_id,
                reason = %reason,
                $message
            )
        };
    }
    match error.transience() {
        Transience::Transient => failed!(tracing::Level::WARN, "record retried"),
        Transience::Permanent => failed!(tracing::Level::ERROR, "record dead-lettered"),
    }
}

/// `reason` with every double-quoted part masked: JSON decoders quote the values they could not
/// read (`invalid type: string "Ada", expected u32`), which are pieces of a payload; names
/// (fields, types) are in backticks and stay. The dead letter keeps the whole reason.
pub fn without_quoted_values(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut quoted = false;
    let mut escaped = false;
    for c in reason.chars() {
        if quoted {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    quoted = false;
                    out.push_str("…\"");
                }
                _ => escaped = false,
            }
        } else {
            out.push(c);
            quoted = c == '"';
        }
    }
    if quoted {
        out.push('…');
    }
    out
}

/// What a record's result means for it, logged: a failure as [`record_failed`] says, a record
/// done at DEBUG (an order's whole timeline, when the level lets it through).
pub fn settle(
    function: &str,
    record: &InboundRecord,
    ids: &MessageIds,
    result: Result<(), RecordError>,
) -> RecordOutcome {
    match &result {
        Err(error) => record_failed(function, &record.id, ids, error),
        Ok(()) => tracing::debug!(
            function,
            topic = %record.id.topic,
            partition = record.id.partition,
            offset = record.id.offset,
            message_id = ids.message_id.as_deref().unwrap_or(""),
            message_type = ids.message_type.as_deref().unwrap_or(""),
            correlation_id = ids.correlation_id.as_deref().unwrap_or(""),
            causation_id = ids.causation_id.as_deref().unwrap_or(""),
            "record done"
        ),
    }
    outcome(result)
}

/// A log event's fields as JSON members, for the local runtimes' own log writers.
pub fn fields(event: &tracing::Event<'_>) -> serde_json::Map<String, serde_json::Value> {
    let mut fields = Fields(serde_json::Map::new());
    fields.0.insert(
        "level".into(),
        serde_json::Value::from(event.metadata().level().as_str()),
    );
    event.record(&mut fields);
    fields.0
}

/// Collects an event's fields.
struct Fields(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// Logs what one Kafka batch came to.
pub fn batch_done(function: &str, report: &BatchReport, duration: Duration, partitions: usize) {
    tracing::info!(
        function,
        records = report.records,
        done = report.done,
        retried = report.retried.len(),
        dead_lettered = report.dead_lettered.len(),
        skipped = report.skipped_after_failure,
        partitions,
        duration_ms = duration.as_secs_f64() * 1e3,
        "batch"
    );
}

/// Logs each saga transition the orchestrator recorded: the saga, the step and the event.
pub fn saga_transitions(events: &[StoredEvent]) {
    for event in events.iter().filter(|e| e.aggregate_type == "saga") {
        let step = event
            .payload
            .get("step")
            .and_then(|s| s.as_str())
            .unwrap_or("");
        tracing::info!(
            function = "orchestrator",
            saga_id = %event.aggregate_id,
            correlation_id = %event.correlation_id,
            causation_id = %event.causation_id,
            event_id = %event.event_id,
            transition = %event.event_type,
            step,
            "saga transition"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_masked_and_names_kept() {
        assert_eq!(
            without_quoted_values(
                r#"invalid type: string "Ada Lovelace", expected u32 at `lines`"#
            ),
            r#"invalid type: string "…", expected u32 at `lines`"#
        );
        assert_eq!(
            without_quoted_values(r#"a "quote \" inside" and "cut off"#),
            r#"a "…" and "…"#
        );
        assert_eq!(
            without_quoted_values("command `order.teleport` is unknown"),
            "command `order.teleport` is unknown"
        );
    }
}
