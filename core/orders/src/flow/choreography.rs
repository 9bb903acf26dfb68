//! Choreography: each service reacts to the others' events, with no coordinator.
//!
//! A policy is a pure function from a committed event (and the order it belongs to) to the
//! commands it causes. Command ids derive from the event id, so a redelivered event causes the
//! same commands and their effects are recorded once.

use serde_json::{json, Value};

use crate::domain::types::StockLine;
use crate::domain::{
    inventory_target, CancelReason, Flow, InventoryEvent, Order, OrderEvent, PaymentEvent,
    RefundStatus, ShipmentEvent,
};
use crate::flow::{FlowEnvelope, FlowEvent};
use sagaflow_eventsourcing::command::{command_id_for, CommandEnvelope};

/// Why a policy could not react to an event.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// The reaction needs the order, and it is not there.
    #[error("order {0} for a choreographed reaction does not exist")]
    MissingOrder(String),
}

/// Whether a reaction to this event type may need the order's state (so the caller loads it).
pub fn needs_order(event_type: &str) -> bool {
    event_type == "order.completed"
        || event_type == "order.cancel_requested"
        || (!event_type.starts_with("order.") && !event_type.starts_with("saga."))
}

/// The commands that `event` causes in a choreographed order; `order` is that order's state,
/// looked up by the event's correlation id. Orders run by another flow cause nothing here.
pub fn react(
    event: &FlowEnvelope,
    order: Option<&Order>,
) -> Result<Vec<CommandEnvelope>, PolicyError> {
    let order_id = event.correlation_id.clone();
    let reactions: Vec<(&str, String, Value)> = match &event.payload {
        FlowEvent::Order(order_event) => match order_event.clone() {
            OrderEvent::Created {
                order_id,
                total,
                payment_method,
                flow: Flow::Choreographed,
                ..
            } => vec![(
                "payment.charge",
                order_id.clone(),
                json!({ "order_id": order_id, "amount": total, "method": payment_method }),
            )],
            // Only a choreographed order's customer can ask (the order refuses the others):
            // every service undoes its part at once; the refund's reply cancels the order.
            OrderEvent::CancelRequested { order_id, reason } => {
                let why = CancelReason::new("customer_cancelled", reason);
                vec![
                    refund(&order_id, &why),
                    (
                        "inventory.release",
                        order.map_or_else(|| order_id.clone(), stock_target),
                        json!({ "order_id": order_id, "reason": why.to_string() }),
                    ),
                    (
                        "shipment.cancel",
                        order_id.clone(),
                        json!({ "order_id": order_id, "reason": why.to_string() }),
                    ),
                ]
            }
            // Stock ships once the order is completed, never for one its customer cancelled.
            OrderEvent::Completed { order_id } => {
                let Some(order) = order.filter(|o| o.details.is_some()) else {
                    return Err(PolicyError::MissingOrder(order_id));
                };
                if order.details.as_ref().map(|d| d.flow) != Some(Flow::Choreographed) {
                    return Ok(vec![]);
                }
                vec![(
                    "inventory.ship",
                    stock_target(order),
                    json!({ "order_id": order_id }),
                )]
            }
            _ => vec![],
        },
        FlowEvent::Payment(_) | FlowEvent::Inventory(_) | FlowEvent::Shipment(_) => {
            let Some(order) = order.filter(|o| o.details.is_some()) else {
                return Err(PolicyError::MissingOrder(order_id));
            };
            if order.details.as_ref().map(|d| d.flow) != Some(Flow::Choreographed) {
                return Ok(vec![]);
            }
            react_to_service_event(&event.payload, order)?
        }
        FlowEvent::Saga(_) | FlowEvent::Stock(_) => vec![],
    };
    Ok(reactions
        .into_iter()
        .map(|(command_type, target_id, payload)| CommandEnvelope {
            command_id: command_id_for(&event.event_id, command_type, &target_id),
            command_type: command_type.to_string(),
            target_id,
            payload,
            correlation_id: event.correlation_id.clone(),
            causation_id: event.event_id.clone(),
            issued_at: event.occurred_at,
            trace_context: event.trace_context.clone(),
        })
        .collect())
}

fn cancel(
    order_id: &str,
    reason: CancelReason,
    refund: RefundStatus,
) -> (&'static str, String, Value) {
    (
        "order.cancel",
        order_id.to_string(),
        json!({ "reason": reason, "refund_status": refund }),
    )
}

fn refund(order_id: &str, reason: &CancelReason) -> (&'static str, String, Value) {
    (
        "payment.refund",
        order_id.to_string(),
        json!({ "order_id": order_id, "reason": reason.to_string() }),
    )
}

/// The target of `order`'s inventory commands ([`inventory_target`]).
fn stock_target(order: &Order) -> String {
    let lines: Vec<StockLine> = order
        .details
        .iter()
        .flat_map(|d| d.lines.iter().map(StockLine::from))
        .collect();
    inventory_target(&order.order_id(), &lines)
}

/// Reads a refund reason written as `code: detail` back into a cancel reason.
fn reason_from_refund(reason: &str) -> CancelReason {
    match reason.split_once(": ") {
        Some((code, detail)) => CancelReason::new(code, detail),
        None => CancelReason::new("cancelled", reason),
    }
}

fn react_to_service_event(
    event: &FlowEvent,
    order: &Order,
) -> Result<Vec<(&'static str, String, Value)>, PolicyError> {
    let order_id = order.order_id();
    let Some(details) = order.details.as_ref() else {
        return Err(PolicyError::MissingOrder(order_id));
    };
    Ok(match event.clone() {
        FlowEvent::Payment(payment) => match payment {
            PaymentEvent::Processed { .. } => {
                let lines: Vec<StockLine> = details.lines.iter().map(StockLine::from).collect();
                vec![(
                    "inventory.reserve",
                    inventory_target(&order_id, &lines),
                    json!({ "order_id": order_id, "lines": lines }),
                )]
            }
            PaymentEvent::Declined { reason, .. } => vec![cancel(
                &order_id,
                CancelReason::new("payment_declined", reason),
                RefundStatus::NotCharged,
            )],
            PaymentEvent::Refunded { reason, .. } => vec![cancel(
                &order_id,
                reason_from_refund(&reason),
                RefundStatus::Refunded,
            )],
            PaymentEvent::Voided { reason, .. } => vec![cancel(
                &order_id,
                reason_from_refund(&reason),
                RefundStatus::NotCharged,
            )],
        },
        FlowEvent::Inventory(inventory) => match inventory {
            InventoryEvent::Reserved { .. } => vec![(
                "shipment.schedule",
                order_id.clone(),
                json!({ "order_id": order_id, "address": details.shipping_address }),
            )],
            InventoryEvent::ReservationFailed { reason, .. } => {
                vec![refund(
                    &order_id,
                    &CancelReason::new("out_of_stock", reason),
                )]
            }
            _ => vec![],
        },
        FlowEvent::Shipment(shipment) => match shipment {
            ShipmentEvent::Scheduled { .. } => {
                vec![("order.complete", order_id.clone(), json!({}))]
            }
            ShipmentEvent::Failed { reason, .. } => {
                let why = CancelReason::new("shipment_failed", reason);
                vec![
                    (
                        "inventory.release",
                        stock_target(order),
                        json!({ "order_id": order_id, "reason": why.to_string() }),
                    ),
                    refund(&order_id, &why),
                ]
            }
            _ => vec![],
        },
        _ => vec![],
    })
}
