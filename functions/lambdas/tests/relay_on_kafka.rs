//! The relay's entry point on the committed DynamoDB stream payload (`fixtures/relay/`), against
//! the local Kafka broker: every event published keyed by its aggregate, the commands saga events
//! carry, and the unreadable item dead-lettered.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use lambda_runtime::Context;
use lambda_runtime::LambdaEvent;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sagaflow_handlers::dead_letter::DeadLetterTopic;
use sagaflow_kafka::admin::ensure_topics;
use sagaflow_kafka::EventPublisher;
use sagaflow_lambdas::{stream_batch as handler, Relay};
use std::time::Duration;

/// Every (key, value) on partition 0 of `topic`.
fn read(config: &sagaflow_kafka::KafkaConfig, topic: &str) -> Vec<(String, String)> {
    let consumer: BaseConsumer = config
        .client_config()
        .set("group.id", format!("{topic}-reader"))
        .set("fetch.wait.max.ms", "50")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(300)) {
            Some(Ok(m)) => out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )),
            // Once records came, a quiet poll means the partition is drained.
            _ if !out.is_empty() => break,
            _ => {}
        }
    }
    out
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test(flavor = "multi_thread")]
async fn relays_events_and_saga_commands_and_dead_letters_a_bad_item() {
    let bootstrap = std::env::var("SAGAFLOW_KAFKA_BOOTSTRAP").unwrap_or_default();
    assert!(
        !bootstrap.is_empty(),
        "SAGAFLOW_KAFKA_BOOTSTRAP is not set: run `make up` or `make test`"
    );
    let kafka = sagaflow_kafka::KafkaConfig {
        bootstrap_servers: bootstrap,
        topics: sagaflow_kafka::Topics::new(format!("relay{}", std::process::id())),
        ..Default::default()
    };
    // One partition per topic, so reading partition 0 sees everything.
    ensure_topics(&kafka, &kafka.topics.all(), 1).await.unwrap();
    let publisher = EventPublisher::new(&kafka).unwrap();
    let relay = Relay {
        dead_letters: DeadLetterTopic::new(Arc::new(publisher.clone()), kafka.topics.clone()),
        publisher: Arc::new(publisher),
        topics: kafka.topics.clone(),
    };
    let payload: StreamEvent = serde_json::from_str(
        &std::fs::read_to_string("fixtures/relay/dynamodb-stream-event.json").unwrap(),
    )
    .unwrap();
    let response = handler(
        &relay,
        LambdaEvent {
            payload,
            context: Context::default(),
        },
    )
    .await
    .unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let topics = kafka.topics.clone();
    let (payments, commands, letters) = tokio::task::spawn_blocking(move || {
        (
            read(&kafka, &topics.events("payment")),
            read(&kafka, &topics.commands("payment")),
            read(&kafka, &topics.dead_letter()),
        )
    })
    .await
    .unwrap();
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].0, "ord-6001", "keyed by aggregate id");
    assert_eq!(commands.len(), 1);
    let command: serde_json::Value = serde_json::from_str(&commands[0].1).unwrap();
    assert_eq!(command["command_type"], "payment.charge");
    assert_eq!(letters.len(), 1);
    assert!(letters[0].1.contains("invalid event envelope"));
}
