//! The functions on AWS: what every function reads at init (its settings) and builds once
//! in the background from there (the DynamoDB store, the rdkafka publisher and the
//! dead-letter topic, with their connections opened before the first record needs them), and
//! the handler of `sagaflow-handlers` it runs over them.

use std::sync::Arc;

use lambda_runtime::tracing;

use crate::logging::StdoutMetrics;

use sagaflow_dynamodb::{
    aws_shared_config, counting_dynamodb_client, dynamodb_client, AdapterConfig,
    DynamoAnalyticsStore, DynamoEventStore, PushBack,
};

use crate::kafka_auth::{self, KafkaAuthError};
use crate::table_check::TableCheck;
use sagaflow_handlers::metrics::{PushBackSource, StorePushBack};
use sagaflow_kafka::config::PropertyError;
use sagaflow_kafka::{EventPublisher, KafkaConfig, PublishError};

use sagaflow_handlers::analytics::{AnalyticsFunction, AnalyticsHandler};
use sagaflow_handlers::dead_letter::DeadLetterTopic;
use sagaflow_handlers::deadline::DeadlineTimer;
use sagaflow_handlers::function::KafkaFunction;
use sagaflow_handlers::orchestrator::OrchestratorHandler;
use sagaflow_handlers::service::ServiceHandler;

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A table or timing setting is malformed.
    #[error(transparent)]
    Config(#[from] sagaflow_dynamodb::config::ConfigError),
    /// The Kafka settings are malformed.
    #[error(transparent)]
    KafkaConfig(#[from] PropertyError),
    /// The producers' credentials could not be resolved (the SCRAM secret, the IAM signer).
    #[error(transparent)]
    KafkaAuth(#[from] KafkaAuthError),
    /// Kafka could not be reached or configured.
    #[error(transparent)]
    Kafka(#[from] PublishError),
    /// The function was built for something that does not exist (a service, a saga).
    #[error("{0}")]
    Definition(String),
    /// The start in the background did not finish.
    #[error(transparent)]
    Aborted(#[from] crate::starting::StartAborted),
}

/// Clients shared by every invocation of a function.
#[derive(Clone)]
pub struct FunctionContext {
    /// Table names.
    pub adapters: AdapterConfig,
    /// Kafka settings and topic names.
    pub kafka: KafkaConfig,
    /// The DynamoDB client every table adapter shares.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// How often DynamoDB pushed back on the client and the stores, read after each batch.
    pub push_back: Arc<PushBack>,
    /// The event store.
    pub store: Arc<DynamoEventStore>,
    /// The producer.
    pub publisher: EventPublisher,
    /// The dead-letter path.
    pub dead_letters: DeadLetterTopic,
    /// The check of the tables, begun at init; every invocation waits for it to pass.
    pub tables: Arc<TableCheck>,
}

/// What a function is configured with: its tables and its Kafka settings, read from the
/// environment at init, where a malformed setting stops the function before anything starts.
#[derive(Clone, Debug)]
pub struct FunctionSettings {
    /// Table names and the saga's step timing.
    pub adapters: AdapterConfig,
    /// Kafka settings and topic names.
    pub kafka: KafkaConfig,
}

impl FunctionSettings {
    /// Reads the settings (no I/O) and logs what the function starts with.
    pub fn from_env() -> Result<Self, InitError> {
        let settings = Self {
            adapters: AdapterConfig::from_env()?,
            kafka: KafkaConfig::from_env()?,
        };
        log_ready(&settings.adapters, &settings.kafka);
        Ok(settings)
    }
}

impl FunctionContext {
    /// Builds the clients of `settings` and starts opening their connections; it runs in the
    /// background from init on ([`crate::Starting`]), so init awaits none of it.
    ///
    /// The events table (and with `analytics` the analytics table) is checked alongside
    /// ([`TableCheck`]): a wrong table name fails the first invocation, clearly. Kafka is
    /// warmed alongside too: librdkafka needs tens of milliseconds to settle its broker
    /// connections, and the functions only produce dead letters (the relay its records),
    /// which can wait for it.
    pub async fn build(settings: FunctionSettings, analytics: bool) -> Result<Self, InitError> {
        let FunctionSettings { adapters, kafka } = settings;
        let shared = aws_shared_config().await;
        let push_back = Arc::new(PushBack::default());
        let client = counting_dynamodb_client(&shared, &push_back);
        let mut needed = vec![adapters.events_table.clone()];
        if analytics {
            needed.push(adapters.analytics_table.clone());
        }
        let tables = TableCheck::start(client.clone(), needed);
        let (kafka, tokens) = kafka_auth::resolve(&shared, kafka).await?;
        let publisher = EventPublisher::with_tokens(&kafka, tokens)?;
        let warming = publisher.clone();
        tokio::spawn(async move {
            if let Err(e) = warming.warm().await {
                // Not fatal: the first publish connects again and reports its own failure.
                tracing::warn!(reason = %e, "Kafka warm-up failed; the first publish connects again");
            }
        });
        Ok(Self {
            store: Arc::new(
                DynamoEventStore::new(client.clone(), adapters.events_table.clone())
                    .with_push_back(push_back.clone()),
            ),
            dynamodb: client,
            push_back,
            dead_letters: DeadLetterTopic::new(Arc::new(publisher.clone()), kafka.topics.clone()),
            publisher,
            adapters,
            kafka,
            tables,
        })
    }

    /// The Kafka-triggered function of `service`, its handler over these clients.
    pub fn service_function(&self, service: &str) -> Result<KafkaFunction, InitError> {
        let handler = ServiceHandler::new(service, self.store.clone(), self.kafka.topics.clone())
            .map_err(|e| InitError::Definition(e.to_string()))?
            .with_metrics(Arc::new(StdoutMetrics));
        Ok(self.kafka_function(Arc::new(handler)))
    }

    /// The Kafka-triggered saga orchestrator over these clients.
    pub fn orchestrator_function(&self) -> Result<KafkaFunction, InitError> {
        Ok(self.kafka_function(Arc::new(self.orchestrator()?)))
    }

    /// The scheduled deadline timer over the clients of `settings`, with its table checked
    /// alongside and no Kafka client (it only reads and writes the events table): it ticks the
    /// same sagas the orchestrator runs, under the same definitions.
    pub async fn deadline_timer(
        settings: FunctionSettings,
    ) -> Result<(DeadlineTimer<DynamoEventStore>, Arc<TableCheck>), InitError> {
        let FunctionSettings { adapters, kafka } = settings;
        let client = dynamodb_client().await;
        let tables = TableCheck::start(client.clone(), vec![adapters.events_table.clone()]);
        let store = Arc::new(DynamoEventStore::new(client, adapters.events_table.clone()));
        Ok((deadline_timer(store, &kafka, &adapters)?, tables))
    }

    fn orchestrator(&self) -> Result<OrchestratorHandler<DynamoEventStore>, InitError> {
        orchestrator(self.store.clone(), &self.kafka, &self.adapters)
    }

    /// The analytics function over the analytics table (checked with the events table when
    /// the context was built `from_env(true)`).
    pub fn analytics_function(&self) -> Result<AnalyticsFunction, InitError> {
        let read_model =
            DynamoAnalyticsStore::new(self.dynamodb.clone(), self.adapters.analytics_table.clone())
                .with_push_back(self.push_back.clone());
        let handler = AnalyticsHandler::new(Arc::new(read_model), self.kafka.topics.clone())
            .with_metrics(Arc::new(StdoutMetrics));
        AnalyticsFunction::new(handler, Arc::new(self.dead_letters.clone()))
            .map(|function| {
                function
                    .with_metrics(Arc::new(StdoutMetrics))
                    .with_push_back(self.push_back_source())
            })
            .map_err(|e| InitError::Definition(e.to_string()))
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
        .with_metrics(Arc::new(StdoutMetrics))
        .with_push_back(self.push_back_source())
    }

    /// Reads and resets the push-back counts, for each batch's metrics.
    fn push_back_source(&self) -> PushBackSource {
        let push_back = self.push_back.clone();
        Arc::new(move || {
            let counts = push_back.take();
            StorePushBack {
                throttled: counts.throttled,
                conflicts: counts.conflicts,
            }
        })
    }
}

fn orchestrator(
    store: Arc<DynamoEventStore>,
    kafka: &KafkaConfig,
    adapters: &AdapterConfig,
) -> Result<OrchestratorHandler<DynamoEventStore>, InitError> {
    OrchestratorHandler::with_step_timing(store, kafka.topics.clone(), adapters.step_timing)
        .map(|handler| handler.with_metrics(Arc::new(StdoutMetrics)))
        .map_err(|e| InitError::Definition(e.to_string()))
}

fn deadline_timer(
    store: Arc<DynamoEventStore>,
    kafka: &KafkaConfig,
    adapters: &AdapterConfig,
) -> Result<DeadlineTimer<DynamoEventStore>, InitError> {
    let sagas = orchestrator(store.clone(), kafka, adapters)?
        .sagas()
        .clone();
    Ok(DeadlineTimer::new(store, sagas))
}

/// Logs what a function starts with: its tables and its Kafka settings, secrets hidden (the
/// configuration's `Debug` redacts them).
pub fn log_ready(adapters: &AdapterConfig, kafka: &KafkaConfig) {
    tracing::info!(
        function = %std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default(),
        events_table = %adapters.events_table,
        analytics_table = %adapters.analytics_table,
        kafka = ?kafka,
        "function ready"
    );
}
