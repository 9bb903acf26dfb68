//! The saga orchestrator function: feeds every service event to the saga of its order.

use std::sync::Arc;

use sagaflow_core::flow::sagas::{order_saga, SagaRunner};
use sagaflow_core::saga::SagaDefinitionError;
use sagaflow_core::{EventStore, StoredEvent, Timestamp};
use sagaflow_kafka::Topics;
use sagaflow_lambda_kafka::{BoxFuture, InboundRecord, RecordHandler, RecordOutcome};

use crate::clock;
use crate::service::SERVICE_NAMES;

/// What the orchestrator function does with each record.
pub struct OrchestratorHandler<S> {
    sagas: SagaRunner<S>,
    topics: Topics,
    clock: fn() -> Timestamp,
}

impl<S> Clone for OrchestratorHandler<S> {
    fn clone(&self) -> Self {
        Self {
            sagas: self.sagas.clone(),
            topics: self.topics.clone(),
            clock: self.clock,
        }
    }
}

impl<S: EventStore + 'static> OrchestratorHandler<S> {
    /// The orchestrator of the order-processing saga over `store`.
    pub fn new(store: Arc<S>, topics: Topics) -> Result<Self, SagaDefinitionError> {
        Ok(Self {
            sagas: SagaRunner::new(store, vec![order_saga()?]),
            topics,
            clock: clock::now,
        })
    }

    /// The topics it reads: every service's events (replies to saga steps).
    pub fn subscriptions(&self) -> Vec<String> {
        SERVICE_NAMES
            .iter()
            .map(|s| self.topics.events(s))
            .collect()
    }

    /// The sagas, to start one at the front door.
    pub fn sagas(&self) -> &SagaRunner<S> {
        &self.sagas
    }

    /// Feeds one event to its saga.
    pub async fn handle_record(&self, record: &InboundRecord) -> RecordOutcome {
        if !self.subscriptions().contains(&record.id.topic) {
            return RecordOutcome::DeadLetter(format!(
                "topic {} is not one the orchestrator reads",
                record.id.topic
            ));
        }
        let Some(value) = record.value.as_deref().filter(|v| !v.is_empty()) else {
            return RecordOutcome::DeadLetter("record has no value".into());
        };
        let event = match StoredEvent::from_json(value) {
            Ok(event) => event,
            Err(e) => return RecordOutcome::DeadLetter(e.to_string()),
        };
        match self.sagas.on_event(&event, (self.clock)()).await {
            Ok(_) => RecordOutcome::Done,
            Err(e) if e.is_permanent() => RecordOutcome::DeadLetter(e.to_string()),
            Err(e) => RecordOutcome::Retry(e.to_string()),
        }
    }
}

impl<S: EventStore + 'static> RecordHandler for OrchestratorHandler<S> {
    fn handle(&self, record: InboundRecord) -> BoxFuture<RecordOutcome> {
        let this = self.clone();
        Box::pin(async move { this.handle_record(&record).await })
    }
}
