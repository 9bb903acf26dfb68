//! What every function builds once at init: the DynamoDB store, the Kafka publisher and the
//! dead-letter sink, with their connections opened before the first record arrives.

use std::sync::Arc;

use sagaflow_adapters::{dynamodb_client, AdapterConfig, DynamoEventStore};
use sagaflow_kafka::config::PropertyError;
use sagaflow_kafka::{EventPublisher, KafkaConfig, PublishError};

use crate::dead_letter::KafkaDeadLetterSink;
use crate::function::KafkaFunction;
use crate::orchestrator::OrchestratorHandler;
use crate::service::ServiceHandler;

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The Kafka settings are malformed.
    #[error(transparent)]
    KafkaConfig(#[from] PropertyError),
    /// Kafka could not be reached or configured.
    #[error(transparent)]
    Kafka(#[from] PublishError),
    /// The function was built for something that does not exist (a service, a saga).
    #[error("{0}")]
    Definition(String),
    /// The events table could not be reached.
    #[error("cannot reach the events table {table}: {reason}")]
    Dynamo {
        /// The table.
        table: String,
        /// What failed.
        reason: String,
    },
}

/// Clients shared by every invocation of a function.
#[derive(Clone)]
pub struct FunctionContext {
    /// Table names.
    pub adapters: AdapterConfig,
    /// Kafka settings and topic names.
    pub kafka: KafkaConfig,
    /// The event store.
    pub store: Arc<DynamoEventStore>,
    /// The producer.
    pub publisher: EventPublisher,
    /// The dead-letter path.
    pub dead_letters: KafkaDeadLetterSink,
}

impl FunctionContext {
    /// Builds the clients from the environment and opens their connections now, so the first
    /// invocation does not pay for the handshakes.
    pub async fn from_env() -> Result<Self, InitError> {
        let adapters = AdapterConfig::from_env();
        let kafka = KafkaConfig::from_env()?;
        let client = dynamodb_client().await;
        client
            .describe_table()
            .table_name(&adapters.events_table)
            .send()
            .await
            .map_err(|e| InitError::Dynamo {
                table: adapters.events_table.clone(),
                reason: format!("{e:?}"),
            })?;
        let publisher = EventPublisher::new(&kafka)?;
        publisher.warm().await?;
        Ok(Self {
            store: Arc::new(DynamoEventStore::new(client, adapters.events_table.clone())),
            dead_letters: KafkaDeadLetterSink::new(publisher.clone(), kafka.topics.clone()),
            publisher,
            adapters,
            kafka,
        })
    }

    /// The Kafka-triggered function of `service`, its handler over these clients.
    pub fn service_function(&self, service: &str) -> Result<KafkaFunction, InitError> {
        let handler = ServiceHandler::new(service, self.store.clone(), self.kafka.topics.clone())
            .map_err(|e| InitError::Definition(e.to_string()))?;
        Ok(self.kafka_function(Arc::new(handler)))
    }

    /// The Kafka-triggered saga orchestrator over these clients.
    pub fn orchestrator_function(&self) -> Result<KafkaFunction, InitError> {
        let handler = OrchestratorHandler::new(self.store.clone(), self.kafka.topics.clone())
            .map_err(|e| InitError::Definition(e.to_string()))?;
        Ok(self.kafka_function(Arc::new(handler)))
    }

    fn kafka_function(
        &self,
        handler: Arc<dyn sagaflow_lambda_kafka::RecordHandler>,
    ) -> KafkaFunction {
        KafkaFunction::new(
            handler,
            Arc::new(self.dead_letters.clone()),
            sagaflow_lambda_kafka::BatchConfig::default(),
        )
    }
}
