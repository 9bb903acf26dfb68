//! How the services connect: the command handler, choreography policies, the saga definitions.

pub mod choreography;
pub mod intake;
pub mod sagas;
pub mod services;

pub use services::{FlowServices, HandledCommand, ServiceError};

use crate::domain::{InventoryEvent, OrderEvent, PaymentEvent, ShipmentEvent, StockEvent};
use sagaflow_eventsourcing::event::{DecodeError, DomainEvent, EventEnvelope, StoredEvent};
use sagaflow_saga::SagaEvent;
use serde_json::Value;

/// Every event of the order flow, typed: one enum over every aggregate's events. A record on an
/// events topic is decoded into it once, at the edge, and everything after reads it typed.
#[derive(Clone, Debug, PartialEq)]
pub enum FlowEvent {
    /// An order's event.
    Order(OrderEvent),
    /// A payment's event.
    Payment(PaymentEvent),
    /// An order's reservation's event.
    Inventory(InventoryEvent),
    /// A SKU's stock's event.
    Stock(StockEvent),
    /// A shipment's event.
    Shipment(ShipmentEvent),
    /// A saga instance's event.
    Saga(SagaEvent),
}

/// A committed event of the flow with its typed payload.
pub type FlowEnvelope = EventEnvelope<FlowEvent>;

impl FlowEvent {
    /// Decodes `event` by its aggregate type through that type's upcasters: a known aggregate
    /// and event type, a schema version it can read and a payload of the right shape, or a
    /// typed error. A consumer that reacts to only some events still refuses the ones nobody
    /// could read, rather than skipping them.
    pub fn decode(event: &StoredEvent) -> Result<FlowEnvelope, DecodeError> {
        let payload = match event.aggregate_type.as_str() {
            "order" => FlowEvent::Order(event.decode::<OrderEvent>()?.payload),
            "payment" => FlowEvent::Payment(event.decode::<PaymentEvent>()?.payload),
            "inventory" => FlowEvent::Inventory(event.decode::<InventoryEvent>()?.payload),
            "stock" => FlowEvent::Stock(event.decode::<StockEvent>()?.payload),
            "shipment" => FlowEvent::Shipment(event.decode::<ShipmentEvent>()?.payload),
            "saga" => FlowEvent::Saga(event.decode::<SagaEvent>()?.payload),
            _ => {
                return Err(DecodeError::UnknownEventType {
                    aggregate_type: event.aggregate_type.clone(),
                    event_type: event.event_type.clone(),
                })
            }
        };
        Ok(event.with_payload(payload))
    }

    /// The payload JSON at the version the code writes (an old event's, upcast).
    pub fn to_payload(&self) -> Value {
        match self {
            FlowEvent::Order(e) => e.to_payload(),
            FlowEvent::Payment(e) => e.to_payload(),
            FlowEvent::Inventory(e) => e.to_payload(),
            FlowEvent::Stock(e) => e.to_payload(),
            FlowEvent::Shipment(e) => e.to_payload(),
            FlowEvent::Saga(e) => e.to_payload(),
        }
    }
}
