//! The producer and topic creation against a real Kafka-protocol broker (tansu or Redpanda,
//! started by `make test` / `make up`).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use sagaflow_eventsourcing::event::envelope_events;
use sagaflow_eventsourcing::CommandMeta;
use sagaflow_eventsourcing::StoredEvent;
use sagaflow_eventsourcing::StreamId;
use sagaflow_eventsourcing::Timestamp;
use sagaflow_kafka::admin::ensure_topics;
use sagaflow_kafka::{event_record, EventPublisher, KafkaConfig, Topics};
use sagaflow_orders::domain::{Money, PaymentEvent};

fn config(prefix: &str) -> KafkaConfig {
    let bootstrap = std::env::var("SAGAFLOW_KAFKA_BOOTSTRAP").unwrap_or_default();
    assert!(
        !bootstrap.is_empty(),
        "SAGAFLOW_KAFKA_BOOTSTRAP is not set: start the local servers with `make up` (or run `make test`)"
    );
    KafkaConfig {
        bootstrap_servers: bootstrap,
        topics: Topics::new(format!("{prefix}-{}", std::process::id())),
        ..KafkaConfig::default()
    }
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test(flavor = "multi_thread")]
async fn published_events_arrive_in_order_with_their_key_and_headers() {
    let config = config("it-publish");
    let topic = config.topics.events("payment");
    ensure_topics(&config, std::slice::from_ref(&topic), 1)
        .await
        .unwrap();
    // Creating again is not an error.
    ensure_topics(&config, std::slice::from_ref(&topic), 1)
        .await
        .unwrap();

    let publisher = EventPublisher::new(&config).unwrap();
    publisher.warm().await.unwrap();
    let stream = StreamId::new("payment", "ord-77");
    let events: Vec<StoredEvent> = (0..20)
        .map(|i| {
            envelope_events(
                &stream,
                i,
                &[PaymentEvent::Processed {
                    order_id: "ord-77".into(),
                    amount: Money::eur(100 + i as i64),
                }],
                &CommandMeta::new("ord-77", format!("cmd-{i}"), Timestamp(i as i64)),
            )
            .remove(0)
        })
        .collect();
    let records: Vec<_> = events
        .iter()
        .map(|e| event_record(&config.topics, e))
        .collect();
    publisher.publish(&records).await.unwrap();

    let received = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config
            .client_config()
            .set("group.id", "it-publish-reader")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "50")
            .create()
            .unwrap();
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&topic, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&assignment).unwrap();
        let mut received = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while received.len() < 20 && std::time::Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                let headers: Vec<(String, String)> = message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                received.push((
                    message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    message.payload().map(<[u8]>::to_vec),
                    headers,
                ));
            }
        }
        received
    })
    .await
    .unwrap();
    assert_eq!(received.len(), 20, "every event arrived");
    for (i, (key, value, headers)) in received.iter().enumerate() {
        assert_eq!(key.as_deref(), Some("ord-77"));
        let event = StoredEvent::from_json(value.as_deref().unwrap()).unwrap();
        assert_eq!(event, events[i], "in publish order");
        assert!(headers.contains(&("event_type".into(), "payment.processed".into())));
        assert!(headers.contains(&("correlation_id".into(), "ord-77".into())));
        assert!(headers
            .iter()
            .any(|(k, v)| k == "traceparent" && v.starts_with("00-")));
    }
}
