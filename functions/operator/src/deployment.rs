//! The clients every command and the console share, built from the environment the way the
//! functions build theirs: the events table, the analytics table, the topics and the producer's
//! authentication.

use std::sync::Arc;

use sagaflow_dynamodb::{
    aws_shared_config, counting_dynamodb_client, DynamoAnalyticsStore, DynamoEventStore, PushBack,
};
use sagaflow_kafka::msk_iam::MskTokenSource;
use sagaflow_kafka::producer::AuthContext;
use sagaflow_kafka::{EventPublisher, KafkaConfig};

use crate::error::OperatorError;
use crate::letters::{self, Letter};
use crate::settings;

/// The deployment the environment names.
#[derive(Clone)]
pub struct Deployment {
    /// The events table, as the functions' store.
    pub store: DynamoEventStore,
    /// The DynamoDB client, for the scans and records of the operator's own.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The events table's name.
    pub table: String,
    /// The analytics table's name.
    pub analytics_table: String,
    /// The broker and topics.
    pub kafka: KafkaConfig,
    /// The MSK IAM token source, when the producers authenticate with IAM.
    pub tokens: Option<Arc<MskTokenSource>>,
}

impl Deployment {
    /// The deployment of the `SAGAFLOW_*` and `AWS_*` variables.
    pub async fn from_env() -> Result<Self, OperatorError> {
        let (adapters, kafka) = settings::from_env()?;
        let shared = aws_shared_config().await;
        let (kafka, tokens) = sagaflow_lambdas::kafka_auth::resolve(&shared, kafka)
            .await
            .map_err(|e| OperatorError::Settings(e.to_string()))?;
        let dynamodb = counting_dynamodb_client(&shared, &Arc::new(PushBack::default()));
        Ok(Self {
            store: DynamoEventStore::new(dynamodb.clone(), adapters.events_table.clone()),
            dynamodb,
            table: adapters.events_table,
            analytics_table: adapters.analytics_table,
            kafka,
            tokens,
        })
    }

    /// A producer for the deployment's broker.
    pub fn publisher(&self) -> Result<EventPublisher, OperatorError> {
        EventPublisher::with_tokens(&self.kafka, self.tokens.clone()).map_err(|e| {
            OperatorError::Kafka {
                servers: self.kafka.bootstrap_servers.clone(),
                reason: e.to_string(),
            }
        })
    }

    /// The live analytics read model.
    pub fn analytics(&self) -> DynamoAnalyticsStore {
        DynamoAnalyticsStore::new(self.dynamodb.clone(), self.analytics_table.clone())
    }

    /// The dead-letter topic's name.
    pub fn dead_letter_topic(&self) -> String {
        self.kafka.topics.dead_letter()
    }

    /// Every letter on the dead-letter topic, oldest first (read on a blocking thread: the
    /// consumer polls).
    pub async fn letters(&self) -> Result<Vec<Letter>, OperatorError> {
        let kafka = self.kafka.clone();
        let context = AuthContext::new(self.tokens.clone());
        let topic = self.dead_letter_topic();
        tokio::task::spawn_blocking(move || letters::read_letters(&kafka, context, &topic))
            .await
            .map_err(|e| OperatorError::Settings(format!("the reader stopped: {e}")))?
    }

    /// The letter `id`, or why there is none.
    pub async fn letter(&self, id: &str) -> Result<Letter, OperatorError> {
        letters::parse_id(id)?;
        self.letters()
            .await?
            .into_iter()
            .find(|l| l.id == id)
            .ok_or_else(|| OperatorError::NoSuchLetter {
                id: id.to_string(),
                topic: self.dead_letter_topic(),
            })
    }
}
