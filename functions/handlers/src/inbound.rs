//! A record read once, at the edge: every handler starts with [`parse_record`], and what comes
//! after works on a typed command or a typed, upcast event; nothing decodes a record again.

use sagaflow_eventsourcing::command::CommandEnvelope;
use sagaflow_eventsourcing::StoredEvent;
use sagaflow_lambda_kafka::InboundRecord;
use sagaflow_orders::flow::{FlowEnvelope, FlowEvent};
use sagaflow_records::topology::{Function, Topic};
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

impl Inbound {
    /// Gives the message the trace context of the span handling it: what it causes carries it.
    pub fn set_trace_context(&mut self, trace_context: Option<String>) {
        match self {
            Inbound::Command(command) => command.trace_context = trace_context,
            Inbound::Event(event) => event.trace_context = trace_context,
        }
    }
}

/// The topics a handler reads, each with what it carries, and the handler's name in the reason
/// a record on any other topic is refused with; built once, when the handler is.
#[derive(Clone, Debug)]
pub struct Subscriptions {
    reader: String,
    topics: Vec<(String, Topic)>,
}

impl Subscriptions {
    /// What `function` reads under `topics`' prefix, `reader` naming it in refusals (such as
    /// "the orchestrator").
    pub fn new(reader: impl Into<String>, function: &Function, topics: &Topics) -> Self {
        Self {
            reader: reader.into(),
            topics: function
                .reads
                .iter()
                .map(|t| (t.name(topics), *t))
                .collect(),
        }
    }

    /// The full names of the topics.
    pub fn names(&self) -> Vec<String> {
        self.topics.iter().map(|(name, _)| name.clone()).collect()
    }
}

/// Reads `record` as what its topic carries (a command on a commands topic, an event on an
/// events topic), refusing it unless it came on one of `subscriptions`. Every failure is a dead
/// letter with its reason: the record will not read better later.
pub fn parse_record(
    record: &InboundRecord,
    subscriptions: &Subscriptions,
) -> Result<Inbound, RecordError> {
    let topic = subscriptions
        .topics
        .iter()
        .find(|(name, _)| *name == record.id.topic)
        .map(|(_, topic)| *topic)
        .ok_or_else(|| {
            RecordError::dead_letter(format!(
                "topic {} is not one {} reads",
                record.id.topic, subscriptions.reader
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
