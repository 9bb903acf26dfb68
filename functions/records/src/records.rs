//! The Kafka record of an event or a command: keyed by aggregate id so one aggregate's records
//! stay in one partition, in order; the value is the JSON envelope; headers carry the ids a
//! consumer or a tracer needs without parsing the value.

use sagaflow_eventsourcing::command::CommandEnvelope;
use sagaflow_eventsourcing::StoredEvent;

use crate::topics::Topics;
use crate::trace_context::TraceParent;

/// Header: the event type (`payment.processed`).
pub const EVENT_TYPE_HEADER: &str = "event_type";
/// Header: the schema version of the payload.
pub const SCHEMA_VERSION_HEADER: &str = "schema_version";
/// Header: the command type (`payment.charge`).
pub const COMMAND_TYPE_HEADER: &str = "command_type";
/// Header: the correlation id.
pub const CORRELATION_ID_HEADER: &str = "correlation_id";
/// Header: the causation id.
pub const CAUSATION_ID_HEADER: &str = "causation_id";
/// Header: the W3C trace context: the message's trace and the span that sent it.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// A record to produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundRecord {
    /// The topic.
    pub topic: String,
    /// The key: the aggregate id.
    pub key: String,
    /// The JSON envelope.
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

fn header(name: &str, value: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (name.to_string(), value.into())
}

/// The record of a committed event, on its aggregate type's events topic; its `traceparent`
/// is the event's trace context, or its order's derived one.
pub fn event_record(topics: &Topics, event: &StoredEvent) -> OutboundRecord {
    OutboundRecord {
        topic: topics.events(&event.aggregate_type),
        key: event.aggregate_id.clone(),
        value: event.to_json(),
        headers: vec![
            header(EVENT_TYPE_HEADER, event.event_type.as_str()),
            header(SCHEMA_VERSION_HEADER, event.schema_version.to_string()),
            header(CORRELATION_ID_HEADER, event.correlation_id.as_str()),
            header(CAUSATION_ID_HEADER, event.causation_id.as_str()),
            header(
                TRACEPARENT_HEADER,
                TraceParent::stored_or_derived(
                    event.trace_context.as_deref(),
                    &event.correlation_id,
                    &event.event_id,
                )
                .to_string(),
            ),
        ],
    }
}

/// The record of a command, on its service's commands topic.
pub fn command_record(topics: &Topics, command: &CommandEnvelope) -> OutboundRecord {
    OutboundRecord {
        topic: topics.commands(command.aggregate_type()),
        key: command.target_id.clone(),
        value: command.to_json(),
        headers: vec![
            header(COMMAND_TYPE_HEADER, command.command_type.as_str()),
            header(CORRELATION_ID_HEADER, command.correlation_id.as_str()),
            header(CAUSATION_ID_HEADER, command.causation_id.as_str()),
            header(
                TRACEPARENT_HEADER,
                TraceParent::stored_or_derived(
                    command.trace_context.as_deref(),
                    &command.correlation_id,
                    &command.command_id,
                )
                .to_string(),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagaflow_eventsourcing::event::envelope_events;
    use sagaflow_eventsourcing::CommandMeta;
    use sagaflow_eventsourcing::StreamId;
    use sagaflow_eventsourcing::Timestamp;
    use sagaflow_orders::domain::{Money, PaymentEvent};

    #[test]
    fn an_event_record_is_keyed_by_aggregate_and_carries_its_ids_in_headers() {
        let meta = CommandMeta::new("ord-1", "cmd-1", Timestamp(9));
        let event = envelope_events(
            &StreamId::new("payment", "ord-1"),
            0,
            &[PaymentEvent::Processed {
                order_id: "ord-1".into(),
                amount: Money::eur(5),
            }],
            &meta,
        )
        .remove(0);
        let record = event_record(&Topics::default(), &event);
        assert_eq!(record.topic, "sagaflow.events.payment");
        assert_eq!(record.key, "ord-1");
        assert_eq!(StoredEvent::from_json(&record.value).unwrap(), event);
        let get = |name: &str| {
            record
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(get(EVENT_TYPE_HEADER).as_deref(), Some("payment.processed"));
        assert_eq!(get(SCHEMA_VERSION_HEADER).as_deref(), Some("1"));
        assert_eq!(get(CORRELATION_ID_HEADER).as_deref(), Some("ord-1"));
        assert_eq!(get(CAUSATION_ID_HEADER).as_deref(), Some("cmd-1"));
        let trace = get(TRACEPARENT_HEADER).unwrap();
        let parts: Vec<&str> = trace.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len(), parts[3]),
            ("00", 32, 16, "01")
        );
        assert!(
            trace.starts_with(&TraceParent::derived("ord-1", "other").to_string()[..35]),
            "one trace per order"
        );
    }

    #[test]
    fn a_record_carries_the_trace_context_its_message_was_sent_with() {
        let sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let meta = CommandMeta::new("ord-1", "cmd-1", Timestamp(9))
            .with_trace_context(Some(sent.to_string()));
        let event = envelope_events(
            &StreamId::new("payment", "ord-1"),
            0,
            &[PaymentEvent::Declined {
                order_id: "ord-1".into(),
                reason: "no".into(),
                amount: Money::eur(5),
            }],
            &meta,
        )
        .remove(0);
        let record = event_record(&Topics::default(), &event);
        let header = record
            .headers
            .iter()
            .find(|(n, _)| n == TRACEPARENT_HEADER)
            .map(|(_, v)| v.as_slice());
        assert_eq!(header, Some(sent.as_bytes()));
        let mut garbled = event.clone();
        garbled.trace_context = Some("not a traceparent".into());
        let record = event_record(&Topics::default(), &garbled);
        let header = record
            .headers
            .iter()
            .find(|(n, _)| n == TRACEPARENT_HEADER)
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap());
        assert_eq!(
            header,
            Some(TraceParent::derived("ord-1", &event.event_id).to_string()),
            "an unreadable context falls back to the order's derived trace"
        );
    }
}
