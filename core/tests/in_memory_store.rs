//! The shared event store scenarios, run against the in-memory store.

use sagaflow_core::testing::store_scenarios;
use sagaflow_core::InMemoryEventStore;

#[tokio::test]
async fn in_memory_store_passes_every_scenario() {
    let store = InMemoryEventStore::new();
    store_scenarios::run_all(&store, "mem").await;
}
