//! The committed sample events parse, round-trip and decode as documented.

use aws_lambda_events::event::kafka::KafkaEvent;

use crate::record::{decode_batch, RecordId};

const MSK: &[u8] = include_bytes!("../fixtures/msk-event.json");
const SELF_MANAGED: &[u8] = include_bytes!("../fixtures/self-managed-event.json");

fn round_trip(data: &[u8]) -> KafkaEvent {
    let parsed: KafkaEvent = serde_json::from_slice(data).unwrap();
    let output: String = serde_json::to_string(&parsed).unwrap();
    let reparsed: KafkaEvent = serde_json::from_slice(output.as_bytes()).unwrap();
    assert_eq!(parsed, reparsed);
    parsed
}

fn assert_sample_record(event: &KafkaEvent) {
    let decoded = decode_batch(event);
    assert_eq!(decoded.len(), 1);
    let record = decoded[0].result.as_ref().unwrap();
    assert_eq!(
        record.id,
        RecordId {
            topic: "mytopic".into(),
            partition: 0,
            offset: 15
        }
    );
    // aws_lambda_events parses milliseconds through f64 and truncates: this one reads ...986.
    assert!(
        (1_545_084_650_986..=1_545_084_650_987).contains(&record.timestamp_ms),
        "timestamp was {}",
        record.timestamp_ms
    );
    assert_eq!(record.key_str(), Some("order-1001"));
    assert_eq!(record.value_str(), Some("Hello, this is a test."));
    assert_eq!(record.header_str("headerKey"), Some("headerValue"));
    assert_eq!(record.headers.len(), 1);
}

#[tokio::test]
async fn msk_event_round_trips_and_decodes() {
    let event = round_trip(MSK);
    assert_eq!(event.event_source.as_deref(), Some("aws:kafka"));
    assert!(event
        .event_source_arn
        .as_deref()
        .is_some_and(|arn| arn.starts_with("arn:aws:kafka:")));
    assert!(event.bootstrap_servers.is_some());
    assert_sample_record(&event);
}

#[tokio::test]
async fn self_managed_event_round_trips_and_decodes() {
    let event = round_trip(SELF_MANAGED);
    assert_eq!(event.event_source.as_deref(), Some("SelfManagedKafka"));
    assert_eq!(event.event_source_arn, None);
    assert!(event.bootstrap_servers.is_some());
    assert_sample_record(&event);
}
