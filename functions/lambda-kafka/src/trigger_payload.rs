//! The other way round from [`crate::payload`]: the JSON payload a Kafka trigger sends for a
//! set of records, as AWS builds it. The local triggers (records from a real broker) and the
//! in-process broker of `make run` both invoke functions with it, so every runtime hands the
//! handlers the same bytes.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

/// Which AWS event source the payloads imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventSource {
    /// Amazon MSK (`aws:kafka`).
    Msk,
    /// Self-managed Apache Kafka (`SelfManagedKafka`).
    SelfManaged,
}

/// One record as it came off the broker, detached from the consumer.
#[derive(Clone, Debug)]
pub struct ConsumedRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Broker or producer timestamp.
    pub timestamp_ms: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl ConsumedRecord {
    /// The header `name` as text, if present and UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The key as text, if present and UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }
}

/// The payload AWS sends for `records`: grouped by `topic-partition`, base64 key and value,
/// headers as arrays of (signed) bytes.
pub fn kafka_event(records: &[ConsumedRecord], source: EventSource, bootstrap: &str) -> Value {
    let mut grouped: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in records {
        let headers: Vec<Value> = r
            .headers
            .iter()
            .map(|(name, value)| {
                let bytes: Vec<i8> = value.iter().map(|b| *b as i8).collect();
                json!({ name: bytes })
            })
            .collect();
        grouped
            .entry(format!("{}-{}", r.topic, r.partition))
            .or_default()
            .push(json!({
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "timestamp": r.timestamp_ms,
                "timestampType": "CREATE_TIME",
                "key": r.key.as_ref().map(|k| STANDARD.encode(k)),
                "value": r.value.as_ref().map(|v| STANDARD.encode(v)),
                "headers": headers,
            }));
    }
    let mut event = Map::new();
    match source {
        EventSource::Msk => {
            event.insert("eventSource".into(), json!("aws:kafka"));
            event.insert(
                "eventSourceArn".into(),
                json!("arn:aws:kafka:us-east-1:000000000000:cluster/sagaflow-local/local"),
            );
        }
        EventSource::SelfManaged => {
            event.insert("eventSource".into(), json!("SelfManagedKafka"));
        }
    }
    event.insert("bootstrapServers".into(), json!(bootstrap));
    event.insert("records".into(), json!(grouped));
    Value::Object(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_kafka_event;

    #[test]
    fn builds_the_payload_aws_sends() {
        let records = vec![
            ConsumedRecord {
                topic: "t".into(),
                partition: 1,
                offset: 7,
                timestamp_ms: 1_764_547_200_000,
                key: Some(b"ord-1".to_vec()),
                value: Some(b"{}".to_vec()),
                headers: vec![("event_type".into(), vec![0xff, b'a'])],
            },
            ConsumedRecord {
                topic: "t".into(),
                partition: 1,
                offset: 8,
                timestamp_ms: 1_764_547_200_001,
                key: None,
                value: None,
                headers: vec![],
            },
        ];
        let payload = kafka_event(&records, EventSource::Msk, "127.0.0.1:9092");
        assert_eq!(payload["eventSource"], "aws:kafka");
        assert_eq!(payload["records"]["t-1"][0]["key"], "b3JkLTE=");
        assert_eq!(
            payload["records"]["t-1"][0]["headers"][0]["event_type"],
            json!([-1, 97])
        );
        let event = parse_kafka_event(payload).unwrap();
        let decoded = crate::decode_batch(&event);
        assert_eq!(decoded.len(), 2);
        let first = decoded[0].result.as_ref().unwrap();
        assert_eq!(first.key_str(), Some("ord-1"));
        assert_eq!(first.header("event_type"), Some(&[0xff, b'a'][..]));
        assert_eq!(decoded[1].result.as_ref().unwrap().value, None);
        let self_managed = kafka_event(&records, EventSource::SelfManaged, "b");
        assert_eq!(self_managed["eventSource"], "SelfManagedKafka");
        assert!(self_managed.get("eventSourceArn").is_none());
    }
}
