//! The dead-letter path: a record that can never succeed is published, with its reason, to the
//! dead-letter topic, so that it neither blocks its partition nor disappears.

use sagaflow_kafka::{EventPublisher, OutboundRecord, Topics};
use sagaflow_lambda_kafka::{BoxFuture, DeadLetter, DeadLetterSink};

/// Header of a dead letter carrying its reason, readable without parsing the value.
pub const REASON_HEADER: &str = "dead_letter_reason";

/// Sends dead letters to the deployment's dead-letter topic.
#[derive(Clone)]
pub struct KafkaDeadLetterSink {
    publisher: EventPublisher,
    topics: Topics,
}

impl KafkaDeadLetterSink {
    /// A sink publishing with `publisher` to `topics.dead_letter()`.
    pub fn new(publisher: EventPublisher, topics: Topics) -> Self {
        Self { publisher, topics }
    }

    /// Publishes any JSON dead letter under `key` with its `reason`.
    pub async fn send_json(
        &self,
        key: &str,
        reason: &str,
        value: &serde_json::Value,
    ) -> Result<(), String> {
        let record = OutboundRecord {
            topic: self.topics.dead_letter(),
            key: key.to_string(),
            value: serde_json::to_vec(value).map_err(|e| e.to_string())?,
            headers: vec![(REASON_HEADER.to_string(), reason.as_bytes().to_vec())],
        };
        self.publisher
            .publish(std::slice::from_ref(&record))
            .await
            .map_err(|e| e.to_string())
    }
}

impl DeadLetterSink for KafkaDeadLetterSink {
    fn send(&self, letter: DeadLetter) -> BoxFuture<Result<(), String>> {
        let this = self.clone();
        Box::pin(async move {
            let value = serde_json::to_value(&letter).map_err(|e| e.to_string())?;
            this.send_json(&letter.source.to_string(), &letter.reason, &value)
                .await
        })
    }
}
