//! Any bytes as an event envelope read off Kafka: reading it, checking it is a known event and
//! decoding it through the upcasters (order.created v1 to v2 among them) may refuse it with a
//! typed error, never panic; an accepted envelope survives a round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sagaflow_orders::domain::order::order_upcasters;
use sagaflow_orders::domain::OrderEvent;
use sagaflow_orders::flow::check_known_event;
use sagaflow_eventsourcing::StoredEvent;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = StoredEvent::from_json(data) else {
        return;
    };
    let again = StoredEvent::from_json(&event.to_json()).expect("a read envelope reads back");
    assert_eq!(again, event);
    let upcasters = order_upcasters();
    let _ = check_known_event(&event, &upcasters);
    if event.aggregate_type == "order" {
        let _ = event.decode::<OrderEvent>(&upcasters);
    }
});
