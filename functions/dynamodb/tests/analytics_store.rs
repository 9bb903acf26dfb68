//! The analytics read model scenarios of the core, run against DynamoDB (dynoxide or LocalStack
//! started by `make test` / `make up`), plus what only a shared table can get wrong: many
//! streams applied concurrently through contended summary shards.

mod common;

use std::sync::Arc;

use sagaflow_dynamodb::tables::ensure_analytics_table;
use sagaflow_dynamodb::DynamoAnalyticsStore;
use sagaflow_orders::projection::{AnalyticsProjection, AnalyticsStore, Applied};
use sagaflow_orders::testkit::analytics_scenarios::{order_history, typed};

/// A read model on a fresh table.
async fn read_model(name: &str) -> DynamoAnalyticsStore {
    let client = common::local_client().await;
    let table = common::table_name("test-analytics", name);
    ensure_analytics_table(&client, &table).await.unwrap();
    DynamoAnalyticsStore::new(client, table)
}

/// The read model scenarios on DynamoDB, one test each.
mod scenarios {
    use super::*;

    sagaflow_orders::analytics_scenarios! {
        #[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
        read_model: read_model("scenarios").await
    }
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn concurrent_streams_each_apply_once_and_add_up() {
    let store = Arc::new(read_model("concurrent").await);
    let history = order_history("par", 24);
    // One task per stream keeps each stream in order, as one Kafka partition key does; the
    // tasks race on the summary shards. Every event is delivered twice.
    let mut streams: std::collections::BTreeMap<String, Vec<_>> = Default::default();
    for event in &typed(&history) {
        streams
            .entry(event.stream_id().to_string())
            .or_default()
            .push(event.clone());
    }
    let tasks: Vec<_> = streams
        .into_values()
        .map(|events| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut new = 0;
                for event in &events {
                    for _ in 0..2 {
                        if matches!(store.apply(event).await.unwrap(), Applied::New(_)) {
                            new += 1;
                        }
                    }
                }
                new
            })
        })
        .collect();
    let mut new = 0;
    for task in tasks {
        new += task.await.unwrap();
    }
    assert_eq!(new, history.len(), "each event applied exactly once");
    let expected = AnalyticsProjection::replay(&history).unwrap();
    assert_eq!(&store.summary().await.unwrap(), expected.summary());
}
