//! The front door as the documentation describes it (`docs/events.md`, "The front door"): an
//! orchestrated order is a `saga.start` command to the orchestrator's topic, a choreographed one
//! an `order.create` to the order service's, with ids derived from the order id, so placing the
//! same order twice is one order.

use sagaflow_eventsourcing::Timestamp;
use sagaflow_handlers::orchestrator::place_command;
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
    let command = place_command(&order, &format!("cli-{}", order.order_id), now)
        .map_err(|e| OperatorError::Settings(e.to_string()))?;
    Ok((order.order_id.clone(), command_record(topics, &command)))
}
