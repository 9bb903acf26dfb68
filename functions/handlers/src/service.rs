//! A service function (order, payment, inventory, shipment): executes the commands on its
//! topic, and reacts to the other services' events with the choreography policies, executing
//! the reactions that are its own. Every effect is recorded once under its command id.

use std::sync::Arc;

use sagaflow_core::command::CommandEnvelope;
use sagaflow_core::domain::order::order_upcasters;
use sagaflow_core::flow::check_known_event;

use crate::headers::{check_command_headers, check_event_headers};
use sagaflow_core::flow::choreography::{needs_order, react, PolicyError};
use sagaflow_core::flow::services::FlowServices;
use sagaflow_core::{EventStore, StoredEvent, Timestamp, Upcasters};
use sagaflow_kafka::Topics;
use sagaflow_lambda_kafka::{BoxFuture, InboundRecord, RecordHandler, RecordOutcome};

use crate::clock;

/// The services whose functions exist, by the aggregate type they own.
pub const SERVICE_NAMES: [&str; 4] = ["order", "payment", "inventory", "shipment"];

/// What one service's function does with each record.
pub struct ServiceHandler<S> {
    service: String,
    services: FlowServices<S>,
    topics: Topics,
    upcasters: Arc<Upcasters>,
    clock: fn() -> Timestamp,
}

impl<S> Clone for ServiceHandler<S> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            services: self.services.clone(),
            topics: self.topics.clone(),
            upcasters: self.upcasters.clone(),
            clock: self.clock,
        }
    }
}

/// A service name that is not one of [`SERVICE_NAMES`] (`shipping` is the function, `shipment` the service).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown service `{0}`; the services are order, payment, inventory and shipment")]
pub struct UnknownService(pub String);

impl<S: EventStore + 'static> ServiceHandler<S> {
    /// The handler of `service` (one of [`SERVICE_NAMES`]) over `store`.
    pub fn new(service: &str, store: Arc<S>, topics: Topics) -> Result<Self, UnknownService> {
        if !SERVICE_NAMES.contains(&service) {
            return Err(UnknownService(service.to_string()));
        }
        Ok(Self {
            service: service.to_string(),
            services: FlowServices::new(store, 50),
            topics,
            upcasters: Arc::new(order_upcasters()),
            clock: clock::now,
        })
    }

    /// The topics this function reads: its commands and the events it may react to.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut topics = vec![self.topics.commands(&self.service)];
        topics.extend(
            SERVICE_NAMES
                .iter()
                .filter(|s| **s != self.service)
                .map(|s| self.topics.events(s)),
        );
        topics
    }

    /// Handles one record: a command of this service, or another service's event.
    pub async fn handle_record(&self, record: &InboundRecord) -> RecordOutcome {
        let Some(value) = record.value.as_deref().filter(|v| !v.is_empty()) else {
            return RecordOutcome::DeadLetter("record has no value".into());
        };
        if record.id.topic == self.topics.commands(&self.service) {
            match CommandEnvelope::from_json(value) {
                Ok(command) if command.aggregate_type() == self.service => {
                    if let Err(reason) = check_command_headers(record, &command) {
                        return RecordOutcome::DeadLetter(reason);
                    }
                    self.execute(&command).await
                }
                Ok(command) => RecordOutcome::DeadLetter(format!(
                    "command `{}` does not belong to the {} service",
                    command.command_type, self.service
                )),
                Err(e) => RecordOutcome::DeadLetter(e.to_string()),
            }
        } else if SERVICE_NAMES
            .iter()
            .any(|s| record.id.topic == self.topics.events(s))
        {
            match StoredEvent::from_json(value) {
                Ok(event) => match check_event_headers(record, &event) {
                    Ok(()) => self.react_to(&event).await,
                    Err(reason) => RecordOutcome::DeadLetter(reason),
                },
                Err(e) => RecordOutcome::DeadLetter(e.to_string()),
            }
        } else {
            RecordOutcome::DeadLetter(format!(
                "topic {} is not one the {} service reads",
                record.id.topic, self.service
            ))
        }
    }

    async fn react_to(&self, event: &StoredEvent) -> RecordOutcome {
        if let Err(e) = check_known_event(event, &self.upcasters) {
            return RecordOutcome::DeadLetter(e.to_string());
        }
        let order = if needs_order(&event.event_type) {
            match self.services.orders().load(&event.correlation_id).await {
                Ok(loaded) if loaded.version > 0 => Some(loaded.state),
                Ok(_) => None,
                Err(e) if e.is_transient() => return RecordOutcome::Retry(e.to_string()),
                Err(e) => return RecordOutcome::DeadLetter(e.to_string()),
            }
        } else {
            None
        };
        match react(event, order.as_ref(), &self.upcasters) {
            Ok(commands) => {
                // Every service sees the same event and derives the same commands with the
                // same ids; each executes only its own, so each reaction happens once.
                for command in commands
                    .iter()
                    .filter(|c| c.aggregate_type() == self.service)
                {
                    match self.execute(command).await {
                        RecordOutcome::Done => {}
                        other => return other,
                    }
                }
                RecordOutcome::Done
            }
            // An event with no order behind it (restocking, say) has nothing to choreograph.
            Err(PolicyError::MissingOrder(_)) => RecordOutcome::Done,
            Err(e) => RecordOutcome::DeadLetter(e.to_string()),
        }
    }

    async fn execute(&self, command: &CommandEnvelope) -> RecordOutcome {
        match self.services.handle(command, (self.clock)()).await {
            Ok(_) => RecordOutcome::Done,
            Err(e) if e.is_permanent() => RecordOutcome::DeadLetter(e.to_string()),
            Err(e) => RecordOutcome::Retry(e.to_string()),
        }
    }

    /// The services underneath, for reads.
    pub fn services(&self) -> &FlowServices<S> {
        &self.services
    }
}

impl<S: EventStore + 'static> RecordHandler for ServiceHandler<S> {
    fn handle(&self, record: InboundRecord) -> BoxFuture<RecordOutcome> {
        let this = self.clone();
        Box::pin(async move { this.handle_record(&record).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagaflow_core::InMemoryEventStore;

    #[test]
    fn only_the_four_services_have_handlers() {
        let store = Arc::new(InMemoryEventStore::new());
        assert!(ServiceHandler::new("shipment", store.clone(), Topics::default()).is_ok());
        assert_eq!(
            ServiceHandler::new("shipping", store, Topics::default()).err(),
            Some(UnknownService("shipping".into()))
        );
    }
}
