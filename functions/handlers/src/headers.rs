//! Checking a record's headers against the envelope it carries. The relay writes both from the
//! same event, so a disagreement means the record was produced by something else, or damaged:
//! routing on a header that lies would be worse than refusing the record.

use sagaflow_core::command::CommandEnvelope;
use sagaflow_core::StoredEvent;
use sagaflow_kafka::records::{
    COMMAND_TYPE_HEADER, CORRELATION_ID_HEADER, EVENT_TYPE_HEADER, SCHEMA_VERSION_HEADER,
};
use sagaflow_lambda_kafka::InboundRecord;

/// A header `name` that must be there and equal `expected`.
fn require(record: &InboundRecord, name: &str, expected: &str) -> Result<(), String> {
    match check(record, name, expected)? {
        Some(()) => Ok(()),
        None => Err(format!("missing header `{name}` (expected `{expected}`)")),
    }
}

/// A header `name` that, when there, must equal `expected`; `None` when absent.
fn check(record: &InboundRecord, name: &str, expected: &str) -> Result<Option<()>, String> {
    let mut values = record.header_values(name).peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    for value in values {
        let text =
            std::str::from_utf8(value).map_err(|_| format!("header `{name}` is not UTF-8"))?;
        if text != expected {
            return Err(format!(
                "header `{name}` says `{text}` but the envelope says `{expected}`"
            ));
        }
    }
    Ok(Some(()))
}

/// The headers of an event record: `event_type` required, `schema_version` and
/// `correlation_id` checked when present.
pub fn check_event_headers(record: &InboundRecord, event: &StoredEvent) -> Result<(), String> {
    require(record, EVENT_TYPE_HEADER, &event.event_type)?;
    check(
        record,
        SCHEMA_VERSION_HEADER,
        &event.schema_version.to_string(),
    )?;
    check(record, CORRELATION_ID_HEADER, &event.correlation_id)?;
    Ok(())
}

/// The headers of a command record: `command_type` required, `correlation_id` checked when
/// present.
pub fn check_command_headers(
    record: &InboundRecord,
    command: &CommandEnvelope,
) -> Result<(), String> {
    require(record, COMMAND_TYPE_HEADER, &command.command_type)?;
    check(record, CORRELATION_ID_HEADER, &command.correlation_id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagaflow_lambda_kafka::RecordId;
    use serde_json::json;

    fn record(headers: &[(&str, &[u8])]) -> InboundRecord {
        InboundRecord {
            id: RecordId {
                topic: "t".into(),
                partition: 0,
                offset: 1,
            },
            timestamp_ms: 0,
            key: None,
            value: None,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
        }
    }

    fn command() -> CommandEnvelope {
        serde_json::from_value(json!({
            "command_id": "c-1", "command_type": "payment.charge", "target_id": "ord-1",
            "payload": {}, "correlation_id": "ord-1", "causation_id": "x", "issued_at": 0
        }))
        .unwrap()
    }

    #[test]
    fn a_command_needs_its_type_header_and_agreeing_optional_ones() {
        let c = command();
        assert_eq!(
            check_command_headers(&record(&[("command_type", b"payment.charge")]), &c),
            Ok(())
        );
        assert_eq!(
            check_command_headers(&record(&[]), &c),
            Err("missing header `command_type` (expected `payment.charge`)".into())
        );
        assert_eq!(
            check_command_headers(&record(&[("command_type", b"payment.refund")]), &c),
            Err(
                "header `command_type` says `payment.refund` but the envelope says `payment.charge`"
                    .into()
            )
        );
        let lying_twice = record(&[
            ("command_type", b"payment.charge"),
            ("command_type", b"payment.refund"),
        ]);
        assert!(check_command_headers(&lying_twice, &c).is_err());
        let not_text = record(&[
            ("command_type", b"payment.charge"),
            ("correlation_id", &[0xff]),
        ]);
        assert_eq!(
            check_command_headers(&not_text, &c),
            Err("header `correlation_id` is not UTF-8".into())
        );
    }
}
