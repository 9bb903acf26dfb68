//! The dead-letter path: a record that can never succeed is published, with its reason, to the
//! dead-letter topic, so that it neither blocks its partition nor disappears.

use std::sync::Arc;

use sagaflow_lambda_kafka::{BoxFuture, DeadLetter, DeadLetterSink, SinkError};
use sagaflow_records::{OutboundRecord, PublishFailure, Publisher, Topics};

/// Header of a dead letter carrying its reason, readable without parsing the value.
pub const REASON_HEADER: &str = "dead_letter_reason";

/// Sends dead letters to the deployment's dead-letter topic, through any publisher (rdkafka on
/// AWS and the local servers, the in-process broker in `make run`).
#[derive(Clone)]
pub struct DeadLetterTopic {
    publisher: Arc<dyn Publisher>,
    topics: Topics,
}

impl DeadLetterTopic {
    /// A sink publishing with `publisher` to `topics.dead_letter()`.
    pub fn new(publisher: Arc<dyn Publisher>, topics: Topics) -> Self {
        Self { publisher, topics }
    }

    /// Publishes any JSON dead letter under `key` with its `reason`.
    pub async fn send_json(
        &self,
        key: &str,
        reason: &str,
        value: &serde_json::Value,
    ) -> Result<(), PublishFailure> {
        let record = OutboundRecord {
            topic: self.topics.dead_letter(),
            key: key.to_string(),
            value: serde_json::to_vec(value).map_err(PublishFailure::of_batch)?,
            headers: vec![(REASON_HEADER.to_string(), reason.as_bytes().to_vec())],
        };
        self.publisher.publish(std::slice::from_ref(&record)).await
    }
}

impl DeadLetterSink for DeadLetterTopic {
    fn send(&self, letter: DeadLetter) -> BoxFuture<Result<(), SinkError>> {
        let this = self.clone();
        Box::pin(async move {
            let value = serde_json::to_value(&letter)?;
            this.send_json(&letter.source.to_string(), &letter.reason, &value)
                .await?;
            Ok(())
        })
    }
}
