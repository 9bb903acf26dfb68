//! Reading the JSON a Kafka trigger invokes a function with into a [`KafkaEvent`], without a
//! panic whatever the JSON holds.
//!
//! aws_lambda_events 1.2 reads a record's millisecond `timestamp` through an `f64` and asserts
//! that it has no fraction: `"timestamp": 1.5` panics inside `serde` instead of failing to
//! parse (found by the `kafka_batch` fuzz target). A function that let the Lambda runtime
//! deserialize its payload would crash on such a batch, and Lambda would redeliver it forever.
//! Functions therefore take the payload as JSON and parse it here.

use std::panic::{catch_unwind, AssertUnwindSafe};

use aws_lambda_events::event::kafka::KafkaEvent;
use serde_json::Value;

/// Why an invocation payload is not a Kafka trigger batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The JSON does not have the shape of a `KafkaEvent`.
    #[error("payload is not a Kafka trigger batch: {0}")]
    Shape(String),
    /// Parsing panicked inside a dependency; the panic was contained.
    #[error("payload is not a Kafka trigger batch: its parser panicked: {0}")]
    ParserPanicked(String),
}

/// Parses `payload` as a Kafka trigger batch, truncating fractional record timestamps to whole
/// milliseconds first; any other panic of the parser comes back as an error.
pub fn parse_kafka_event(mut payload: Value) -> Result<KafkaEvent, PayloadError> {
    truncate_fractional_timestamps(&mut payload);
    match catch_unwind(AssertUnwindSafe(|| {
        serde_json::from_value::<KafkaEvent>(payload)
    })) {
        Ok(parsed) => parsed.map_err(|e| PayloadError::Shape(e.to_string())),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "no message".into());
            Err(PayloadError::ParserPanicked(message))
        }
    }
}

/// Replaces every record `timestamp` that is a non-negative number (or numeric string) with a
/// fraction by its whole part; Kafka timestamps are whole milliseconds, so nothing is lost.
fn truncate_fractional_timestamps(payload: &mut Value) {
    let Some(Value::Object(partitions)) = payload.get_mut("records") else {
        return;
    };
    for records in partitions.values_mut() {
        let Value::Array(records) = records else {
            continue;
        };
        for record in records {
            let Some(timestamp) = record.get_mut("timestamp") else {
                continue;
            };
            let millis = match timestamp {
                Value::Number(number) => number.as_f64(),
                Value::String(text) => text.trim().parse::<f64>().ok(),
                _ => None,
            };
            if let Some(millis) = millis
                .filter(|m| m.is_finite() && *m >= 0.0 && m.fract() != 0.0 && *m < u64::MAX as f64)
            {
                // In range and non-negative, so the cast is exact on the whole part.
                *timestamp = Value::from(millis.trunc() as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn batch(timestamp: Value) -> Value {
        json!({
            "eventSource": "aws:kafka",
            "records": { "orders-0": [{
                "topic": "orders", "partition": 0, "offset": 7,
                "timestamp": timestamp, "timestampType": "CREATE_TIME",
                "key": null, "value": "e30=", "headers": []
            }]}
        })
    }

    fn timestamp_of(event: &KafkaEvent) -> i64 {
        event.records["orders-0"][0].timestamp.timestamp_millis()
    }

    #[test]
    fn a_fractional_timestamp_reads_as_its_whole_part_instead_of_panicking() {
        let whole = parse_kafka_event(batch(json!(1_700_000_000_123_i64))).unwrap();
        for fractional in [json!(1_700_000_000_123.75), json!("1700000000123.75")] {
            let event = parse_kafka_event(batch(fractional)).unwrap();
            assert_eq!(timestamp_of(&event), timestamp_of(&whole));
        }
    }

    #[test]
    fn timestamps_that_cannot_be_read_fail_to_parse_with_a_reason() {
        for bad in [json!(-0.5), json!("soon"), json!(1e300), json!(true)] {
            let error = parse_kafka_event(batch(bad.clone())).unwrap_err();
            assert!(matches!(error, PayloadError::Shape(_)), "{bad}: {error:?}");
        }
    }

    #[test]
    fn the_record_the_fuzzer_found_fails_to_parse_without_a_panic() {
        // The record of dev/fuzz/artifacts/kafka_batch/crash-a9cb413d…, whose timestamp panicked
        // in aws_lambda_events before this parser truncated it.
        let found = json!({"records": {"": [{"33": [], "timestamp": 33333333.333}]}});
        let outcome = parse_kafka_event(found);
        assert!(
            matches!(outcome, Err(PayloadError::Shape(_))),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_payload_of_another_shape_is_refused_with_a_reason() {
        for other in [json!([1, 2]), json!({"records": 5})] {
            let error = parse_kafka_event(other.clone()).unwrap_err();
            assert!(
                matches!(error, PayloadError::Shape(_)),
                "{other}: {error:?}"
            );
            assert!(error
                .to_string()
                .starts_with("payload is not a Kafka trigger batch: "));
        }
    }
}
