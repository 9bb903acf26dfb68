//! How the services connect: the command handler, choreography policies, the saga definitions.

pub mod choreography;
pub mod intake;
pub mod sagas;
pub mod services;

pub use services::{FlowServices, HandledCommand, ServiceError};

use crate::domain::{InventoryEvent, OrderEvent, PaymentEvent, ShipmentEvent};
use sagaflow_eventsourcing::event::{DecodeError, StoredEvent};
use sagaflow_eventsourcing::upcast::Upcasters;
use sagaflow_saga::SagaEvent;

/// Checks that `event` is one this flow knows: a known aggregate type, a known event type of
/// it, a schema version it can read, and a payload of the right shape. A consumer that only
/// reacts to some events still refuses the ones nobody could read, rather than skipping them.
pub fn check_known_event(event: &StoredEvent, upcasters: &Upcasters) -> Result<(), DecodeError> {
    match event.aggregate_type.as_str() {
        "order" => event.decode::<OrderEvent>(upcasters).map(drop),
        "payment" => event.decode::<PaymentEvent>(upcasters).map(drop),
        "inventory" => event.decode::<InventoryEvent>(upcasters).map(drop),
        "shipment" => event.decode::<ShipmentEvent>(upcasters).map(drop),
        "saga" => event.decode::<SagaEvent>(upcasters).map(drop),
        _ => Err(DecodeError::UnknownEventType {
            aggregate_type: event.aggregate_type.clone(),
            event_type: event.event_type.clone(),
        }),
    }
}
