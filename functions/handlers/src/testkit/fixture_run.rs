//! Running a function's handler on a committed trigger payload, twice as a redelivering
//! trigger would, over the in-memory store: the harness every function's own tests share.

use std::future::Future;
use std::sync::Arc;

use sagaflow_eventsourcing::InMemoryEventStore;
use sagaflow_lambda_kafka::{BatchConfig, DeadLetter, KafkaBatchResponse, RecordHandler};
use sagaflow_records::Topics;

use crate::function::{KafkaFunction, RecordedDeadLetters};
use crate::intake::HandlerSetupError;
use crate::orchestrator::OrchestratorHandler;
use crate::service::ServiceHandler;
use serde_json::Value;

/// Why a committed payload could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// Reads `fixtures/<function>/<name>` of the crate under test as the JSON a trigger sends.
pub fn load_kafka_fixture(function: &str, name: &str) -> Result<Value, FixtureError> {
    let path = format!("fixtures/{function}/{name}");
    let text = std::fs::read_to_string(&path).map_err(|source| FixtureError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| FixtureError::Json { path, source })
}

/// A function over a fresh in-memory store, with its dead letters kept in memory.
pub struct MemoryFunction<H> {
    /// The store the handler writes.
    pub store: Arc<InMemoryEventStore>,
    /// The record handler, for reads through its services or sagas.
    pub handler: H,
    /// Letters the function dead-lettered.
    pub dead_letters: RecordedDeadLetters,
    /// The function as the Lambda runtime calls it.
    pub function: KafkaFunction,
}

/// What two deliveries of the same batch did.
pub struct Redelivery {
    /// The response to the first delivery.
    pub first: KafkaBatchResponse,
    /// The response to the redelivery.
    pub second: KafkaBatchResponse,
    /// Events stored after the first delivery.
    pub events_after_first: usize,
    /// Events stored after the redelivery.
    pub events_after_second: usize,
    /// Letters dead-lettered by the first delivery.
    pub dead_letters: Vec<DeadLetter>,
}

impl Redelivery {
    /// Asserts both deliveries fully succeeded and the redelivery stored nothing new.
    #[track_caller]
    pub fn assert_clean(&self, name: &str) {
        assert!(
            self.first.batch_item_failures.is_empty(),
            "{name}: {:?}",
            self.first
        );
        assert!(
            self.second.batch_item_failures.is_empty(),
            "{name}: {:?}",
            self.second
        );
        assert_eq!(
            self.events_after_second, self.events_after_first,
            "{name}: a redelivered batch appends nothing"
        );
    }
}

fn wrap<H: RecordHandler + Clone>(store: Arc<InMemoryEventStore>, handler: H) -> MemoryFunction<H> {
    let dead_letters = RecordedDeadLetters::default();
    let function = KafkaFunction::new(
        Arc::new(handler.clone()),
        Arc::new(dead_letters.clone()),
        BatchConfig::default(),
    );
    MemoryFunction {
        store,
        handler,
        dead_letters,
        function,
    }
}

impl MemoryFunction<ServiceHandler<InMemoryEventStore>> {
    /// The function of `service` over a fresh store.
    pub fn service(service: &str) -> Result<Self, HandlerSetupError> {
        let store = Arc::new(InMemoryEventStore::new());
        let handler = ServiceHandler::new(service, store.clone(), Topics::default())?;
        Ok(wrap(store, handler))
    }
}

impl MemoryFunction<OrchestratorHandler<InMemoryEventStore>> {
    /// The orchestrator function over a fresh store.
    pub fn orchestrator() -> Result<Self, HandlerSetupError> {
        let store = Arc::new(InMemoryEventStore::new());
        let handler = OrchestratorHandler::new(store.clone(), Topics::default())?;
        Ok(wrap(store, handler))
    }
}

impl<H> MemoryFunction<H> {
    /// Delivers `payload` through `invoke` (the binary's own handler), then delivers it again.
    pub async fn deliver_twice<F, Fut>(&self, payload: Value, invoke: F) -> Redelivery
    where
        F: Fn(Value) -> Fut,
        Fut: Future<Output = KafkaBatchResponse>,
    {
        let first = invoke(payload.clone()).await;
        let events_after_first = self.store.event_count();
        let dead_letters = self.dead_letters.letters();
        let second = invoke(payload).await;
        Redelivery {
            first,
            second,
            events_after_first,
            events_after_second: self.store.event_count(),
            dead_letters,
        }
    }
}
