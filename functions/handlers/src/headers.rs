//! Checking a record's headers against the envelope it carries. The envelope is the contract:
//! a producer may send it with no headers at all (`docs/events.md`). The relay writes headers
//! from the same event so that consumers can route and filter without parsing the value; when
//! one is there and disagrees with the envelope, the record was produced by something else or
//! damaged, and routing on a header that lies would be worse than refusing the record.

use sagaflow_eventsourcing::command::CommandEnvelope;
use sagaflow_eventsourcing::{Classified, StoredEvent, Transience};
use sagaflow_lambda_kafka::InboundRecord;
use sagaflow_records::records::{
    COMMAND_TYPE_HEADER, CORRELATION_ID_HEADER, EVENT_TYPE_HEADER, SCHEMA_VERSION_HEADER,
};

/// A header that contradicts the envelope its record carries: the record is dead-lettered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderMismatch {
    /// The header's bytes are not text.
    #[error("header `{name}` is not UTF-8")]
    NotUtf8 {
        /// The header.
        name: &'static str,
    },
    /// The header names something else than the envelope.
    #[error("header `{name}` says `{found}` but the envelope says `{expected}`")]
    Disagrees {
        /// The header.
        name: &'static str,
        /// What the header says.
        found: String,
        /// What the envelope says.
        expected: String,
    },
}

impl Classified for HeaderMismatch {
    /// The record was produced by something else or damaged; it will not change.
    fn transience(&self) -> Transience {
        Transience::Permanent
    }
}

/// A header `name` that, when there (every time it is there), must equal `expected`.
fn check(record: &InboundRecord, name: &'static str, expected: &str) -> Result<(), HeaderMismatch> {
    for value in record.header_values(name) {
        let text = std::str::from_utf8(value).map_err(|_| HeaderMismatch::NotUtf8 { name })?;
        if text != expected {
            return Err(HeaderMismatch::Disagrees {
                name,
                found: text.to_string(),
                expected: expected.to_string(),
            });
        }
    }
    Ok(())
}

/// The headers of an event record: `event_type`, `schema_version` and `correlation_id`, each
/// checked against the envelope when present.
pub fn check_event_headers(
    record: &InboundRecord,
    event: &StoredEvent,
) -> Result<(), HeaderMismatch> {
    check(record, EVENT_TYPE_HEADER, &event.event_type)?;
    check(
        record,
        SCHEMA_VERSION_HEADER,
        &event.schema_version.to_string(),
    )?;
    check(record, CORRELATION_ID_HEADER, &event.correlation_id)?;
    Ok(())
}

/// The headers of a command record: `command_type` and `correlation_id`, each checked against
/// the envelope when present.
pub fn check_command_headers(
    record: &InboundRecord,
    command: &CommandEnvelope,
) -> Result<(), HeaderMismatch> {
    check(record, COMMAND_TYPE_HEADER, &command.command_type)?;
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
    fn a_command_may_come_without_headers_but_not_with_lying_ones() {
        let c = command();
        assert_eq!(
            check_command_headers(&record(&[("command_type", b"payment.charge")]), &c),
            Ok(())
        );
        assert_eq!(check_command_headers(&record(&[]), &c), Ok(()));
        assert_eq!(
            check_command_headers(&record(&[("correlation_id", b"ord-2")]), &c)
                .map_err(|e| e.to_string()),
            Err("header `correlation_id` says `ord-2` but the envelope says `ord-1`".into())
        );
        assert_eq!(
            check_command_headers(&record(&[("command_type", b"payment.refund")]), &c),
            Err(HeaderMismatch::Disagrees {
                name: "command_type",
                found: "payment.refund".into(),
                expected: "payment.charge".into(),
            })
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
            check_command_headers(&not_text, &c).map_err(|e| e.to_string()),
            Err("header `correlation_id` is not UTF-8".into())
        );
    }
}
