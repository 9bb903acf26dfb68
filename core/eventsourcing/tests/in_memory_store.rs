//! The shared event store scenarios, run against the in-memory store: one test each.

use sagaflow_eventsourcing::InMemoryEventStore;

sagaflow_eventsourcing::event_store_scenarios! {
    store: InMemoryEventStore::new()
}
