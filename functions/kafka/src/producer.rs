//! The producer: idempotent, `acks=all`, records of one key sent in order.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::config::KafkaConfig;
use sagaflow_records::{OutboundRecord, PublishFailure, PublishFuture, Publisher};

/// Why records could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The producer could not be created from the configuration.
    #[error("cannot create the Kafka producer: {0}")]
    Setup(KafkaError),
    /// A record was not acknowledged; it and the ones after it must be sent again.
    #[error("record {index} to {topic} (key {key}) not acknowledged: {error}")]
    Delivery {
        /// Position of the first failed record in the batch.
        index: usize,
        /// Its topic.
        topic: String,
        /// Its key.
        key: String,
        /// What the client said.
        error: Box<KafkaError>,
    },
    /// The broker could not be reached while warming up.
    #[error("cannot reach Kafka: {0}")]
    Unreachable(KafkaError),
}

/// Publishes records and waits until the broker has them all.
#[derive(Clone)]
pub struct EventPublisher {
    producer: FutureProducer,
    delivery_timeout: Duration,
}

impl EventPublisher {
    /// A publisher with `config`'s servers and properties.
    pub fn new(config: &KafkaConfig) -> Result<Self, PublishError> {
        let mut client = config.client_config();
        client
            .set("acks", "all")
            .set(
                "enable.idempotence",
                if config.idempotent { "true" } else { "false" },
            )
            // With idempotence librdkafka keeps order per partition for up to 5 in flight;
            // without it, one in flight is the only way to keep a key's records in order.
            .set(
                "max.in.flight.requests.per.connection",
                if config.idempotent { "5" } else { "1" },
            )
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5");
        for (name, value) in &config.properties {
            client.set(name, value);
        }
        let producer = client.create().map_err(PublishError::Setup)?;
        Ok(Self {
            producer,
            delivery_timeout: Duration::from_secs(30),
        })
    }

    /// Opens the connections now (during a function's init) rather than on the first record.
    pub async fn warm(&self) -> Result<(), PublishError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|_| ())
        })
        .await
        .map_err(|_| PublishError::Unreachable(KafkaError::Canceled))?
        .map_err(PublishError::Unreachable)
    }

    /// Sends every record, in order, and returns once all are acknowledged. On an error the
    /// records before the failed one's `index` were acknowledged.
    pub async fn publish(&self, records: &[OutboundRecord]) -> Result<(), PublishError> {
        // Enqueue all first, so they travel in few requests, then wait for every ack.
        // `FutureProducer::send` is an `async fn` that enqueues only when awaited (one round
        // trip per record); `send_result` enqueues at once.
        let queued_until = Instant::now() + self.delivery_timeout;
        let mut pending = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in &record.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value),
                });
            }
            let mut next = FutureRecord::to(&record.topic)
                .key(&record.key)
                .payload(&record.value)
                .headers(headers);
            let enqueued = loop {
                match self.producer.send_result(next) {
                    Ok(delivery) => break Ok(delivery),
                    // The client's local queue is full: let what is queued drain.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < queued_until =>
                    {
                        next = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => break Err(error),
                }
            };
            match enqueued {
                Ok(delivery) => pending.push(delivery),
                Err(error) => {
                    // Settle the ones already queued first, so the error's index keeps its
                    // meaning: everything before it was acknowledged.
                    acknowledged(pending, records).await?;
                    return Err(delivery_error(index, record, error));
                }
            }
        }
        acknowledged(pending, records).await
    }
}

impl PublishError {
    /// Position of the first record not acknowledged: every record before it was.
    pub fn first_unacknowledged(&self) -> usize {
        match self {
            PublishError::Delivery { index, .. } => *index,
            PublishError::Setup(_) | PublishError::Unreachable(_) => 0,
        }
    }
}

impl Publisher for EventPublisher {
    fn publish<'a>(&'a self, records: &'a [OutboundRecord]) -> PublishFuture<'a> {
        Box::pin(async move {
            EventPublisher::publish(self, records)
                .await
                .map_err(|error| PublishFailure {
                    index: error.first_unacknowledged(),
                    source: Box::new(error),
                })
        })
    }
}

/// Waits for the acks of `pending`, the deliveries of the first records of `records`.
async fn acknowledged(
    pending: Vec<DeliveryFuture>,
    records: &[OutboundRecord],
) -> Result<(), PublishError> {
    for ((index, delivery), record) in pending.into_iter().enumerate().zip(records) {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => return Err(delivery_error(index, record, error)),
            // The producer dropped the delivery report (it is shutting down).
            Err(_) => return Err(delivery_error(index, record, KafkaError::Canceled)),
        }
    }
    Ok(())
}

fn delivery_error(index: usize, record: &OutboundRecord, error: KafkaError) -> PublishError {
    PublishError::Delivery {
        index,
        topic: record.topic.clone(),
        key: record.key.clone(),
        error: Box::new(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MSK with SASL/SCRAM (and most managed Kafka) needs TLS: librdkafka refuses these settings
    /// when it was built without it, so creating the producer proves the build can reach them.
    #[test]
    fn the_producer_accepts_tls_and_sasl_scram_settings() {
        let config = KafkaConfig::from_lookup(|name| match name {
            "SAGAFLOW_KAFKA_BOOTSTRAP" => Some("b-1.example:9096".into()),
            "SAGAFLOW_KAFKA_PROPERTIES" => Some(
                "security.protocol=SASL_SSL;sasl.mechanism=SCRAM-SHA-512;\
                 sasl.username=app;sasl.password=secret"
                    .into(),
            ),
            _ => None,
        })
        .unwrap();
        if let Err(e) = EventPublisher::new(&config) {
            panic!("TLS with SASL/SCRAM must be available: {e}");
        }
    }
}
