//! A record read once, at the edge: every handler starts with [`parse_record`], and what comes
//! after works on a typed command or a typed, upcast event; nothing decodes a record again.

use sagaflow_eventsourcing::command::CommandEnvelope;
use sagaflow_eventsourcing::StoredEvent;
use sagaflow_lambda_kafka::InboundRecord;
use sagaflow_orders::flow::{FlowEnvelope, FlowEvent};
use sagaflow_records::topology::Topic;
use sagaflow_records::Topics;

use crate::headers::{check_command_headers, check_event_headers};
use crate::record_error::{record_value, RecordError};

/// What a record carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Inbound {
    /// A command, its headers agreeing with it.
    Command(CommandEnvelope),
    /// An event of the flow, decoded through its type's upcasters, its headers agreeing with it.
    Event(Box<FlowEnvelope>),
}

/// Reads `record` as what its topic carries (a command on a commands topic, an event on an
/// events topic), refusing it unless `reader` reads that topic. Every failure is a dead letter
/// with its reason: the record will not read better later.
pub fn parse_record(
    record: &InboundRecord,
    topics: &Topics,
    reader: &str,
    subscriptions: &[String],
) -> Result<Inbound, RecordError> {
    let topic = Topic::named(&record.id.topic, topics)
        .filter(|_| subscriptions.contains(&record.id.topic))
        .ok_or_else(|| {
            RecordError::dead_letter(format!(
                "topic {} is not one {reader} reads",
                record.id.topic
            ))
        })?;
    let value = record_value(record)?;
    if topic.carries_commands() {
        let command = CommandEnvelope::from_json(value)?;
        check_command_headers(record, &command)?;
        Ok(Inbound::Command(command))
    } else {
        let event = StoredEvent::from_json(value)?;
        check_event_headers(record, &event)?;
        Ok(Inbound::Event(Box::new(FlowEvent::decode(&event)?)))
    }
}
