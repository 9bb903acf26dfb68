//! Creating topics: brokers such as tansu do not create them on first use.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;

/// Why topics could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create topic {topic}: {reason}")]
pub struct TopicError {
    /// The topic (or `*` when the client itself failed).
    pub topic: String,
    /// What the broker or client said.
    pub reason: String,
}

/// Creates each of `topics` with `partitions` partitions unless it exists.
pub async fn ensure_topics(
    config: &KafkaConfig,
    topics: &[String],
    partitions: i32,
) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> =
        config
            .client_config()
            .create()
            .map_err(|e: KafkaError| TopicError {
                topic: "*".into(),
                reason: e.to_string(),
            })?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(new_topics.iter(), &options)
        .await
        .map_err(|e| TopicError {
            topic: "*".into(),
            reason: e.to_string(),
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(TopicError {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}
