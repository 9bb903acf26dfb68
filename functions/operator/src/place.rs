//! The front door as the documentation describes it (`docs/events.md`, "The front door"): an
//! orchestrated order is a `saga.start` command to the orchestrator's topic, a choreographed one
//! an `order.create` to the order service's, with ids derived from the order id, so placing the
//! same order twice is one order.

use sagaflow_eventsourcing::command::{command_id_for, CommandEnvelope};
use sagaflow_eventsourcing::Timestamp;
use sagaflow_orders::domain::{CreateOrder, Flow};
use sagaflow_records::{command_record, OutboundRecord, Topics};

use crate::error::OperatorError;

/// The record that places `order`, read from the JSON of `text`, under `flow` when given.
pub fn placement(
    text: &str,
    flow: Option<Flow>,
    topics: &Topics,
    now: Timestamp,
) -> Result<(String, OutboundRecord), OperatorError> {
    let mut order: CreateOrder = serde_json::from_str(text)
        .map_err(|e| OperatorError::Settings(format!("the order file is not an order: {e}")))?;
    if let Some(flow) = flow {
        order.flow = flow;
    }
    order
        .validate()
        .map_err(|e| OperatorError::Settings(format!("the order is refused: {e}")))?;
    let command_type = match order.flow {
        Flow::Orchestrated => "saga.start",
        Flow::Choreographed | Flow::InProcess => "order.create",
    };
    let command = CommandEnvelope {
        command_id: command_id_for(&order.order_id, command_type, "front-door"),
        command_type: command_type.into(),
        target_id: order.order_id.clone(),
        payload: serde_json::to_value(&order)
            .map_err(|e| OperatorError::Settings(e.to_string()))?,
        correlation_id: order.order_id.clone(),
        causation_id: format!("cli-{}", order.order_id),
        issued_at: now,
        trace_context: None,
    };
    Ok((order.order_id.clone(), command_record(topics, &command)))
}
