//! Builders for test events, written as JSON so tests exercise the same path as real payloads.

use std::collections::BTreeMap;

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

pub(crate) fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

/// A record JSON object with `key` and `value` given as plain text.
pub(crate) fn record(
    topic: &str,
    partition: i64,
    offset: i64,
    key: Option<&str>,
    value: Option<&str>,
) -> Value {
    json!({
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": 1_700_000_000_000_i64 + offset,
        "timestampType": "CREATE_TIME",
        "key": key.map(b64),
        "value": value.map(b64),
        "headers": []
    })
}

/// An MSK event listing each record under the batch key built from its own fields, in the given order.
pub(crate) fn event(records: Vec<Value>) -> KafkaEvent {
    let mut batches: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for rec in records {
        let key = format!(
            "{}-{}",
            rec["topic"].as_str().expect("topic"),
            rec["partition"]
        );
        batches.entry(key).or_default().push(rec);
    }
    parse(batches.into_iter().collect())
}

/// An MSK event with records listed under explicit batch keys.
pub(crate) fn event_under(batches: Vec<(&str, Vec<Value>)>) -> KafkaEvent {
    parse(
        batches
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn parse(batches: Vec<(String, Vec<Value>)>) -> KafkaEvent {
    let records: serde_json::Map<String, Value> = batches
        .into_iter()
        .map(|(k, v)| (k, Value::Array(v)))
        .collect();
    serde_json::from_value(json!({
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/test/abc",
        "bootstrapServers": "b-1.test:9092",
        "records": records
    }))
    .expect("test event parses as KafkaEvent")
}
