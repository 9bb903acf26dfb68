//! Any bytes as the payload a Kafka trigger sends, read as the functions read it (JSON, then
//! `parse_kafka_event`): parsing may fail, but never by a panic, and decoding a parsed batch
//! must never panic, must yield one decoded record per input record, and every record it
//! refuses must carry a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sagaflow_lambda_kafka::{decode_batch, parse_kafka_event, PayloadError};

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let event = match parse_kafka_event(payload) {
        Ok(event) => event,
        Err(PayloadError::Shape(reason)) => {
            assert!(!reason.is_empty());
            return;
        }
        Err(PayloadError::ParserPanicked(message)) => panic!("the parser panicked: {message}"),
    };
    let inputs: usize = event.records.values().map(Vec::len).sum();
    let decoded = decode_batch(&event);
    assert_eq!(decoded.len(), inputs);
    for record in &decoded {
        if let Err(e) = &record.result {
            assert!(!e.to_string().is_empty());
        }
    }
});
