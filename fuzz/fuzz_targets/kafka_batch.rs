//! Any bytes as the payload a Kafka trigger sends: parsing may fail, but decoding a parsed
//! batch must never panic, must yield one decoded record per input record, and every record
//! it refuses must carry a reason.
#![no_main]

use aws_lambda_events::event::kafka::KafkaEvent;
use libfuzzer_sys::fuzz_target;
use sagaflow_lambda_kafka::decode_batch;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<KafkaEvent>(data) else {
        return;
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
