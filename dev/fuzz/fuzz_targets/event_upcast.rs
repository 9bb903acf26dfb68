//! Any bytes as an event envelope read off Kafka: reading it and decoding it as the flow's
//! typed event through its type's upcasters (order.created v1 to v2 among them) may refuse it
//! with a typed error, never panic; an accepted envelope survives a round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sagaflow_eventsourcing::StoredEvent;
use sagaflow_orders::flow::FlowEvent;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = StoredEvent::from_json(data) else {
        return;
    };
    let again = StoredEvent::from_json(&event.to_json()).expect("a read envelope reads back");
    assert_eq!(again, event);
    let _ = FlowEvent::decode(&event);
});
