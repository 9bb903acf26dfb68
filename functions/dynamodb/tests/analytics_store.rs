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

/// `history`'s events decoded and put together by stream, each stream's in order.
fn by_stream(
    history: &[sagaflow_eventsourcing::StoredEvent],
) -> std::collections::BTreeMap<String, Vec<sagaflow_orders::flow::FlowEnvelope>> {
    let mut streams: std::collections::BTreeMap<String, Vec<_>> = Default::default();
    for event in typed(history) {
        streams
            .entry(event.stream_id().to_string())
            .or_default()
            .push(event);
    }
    streams
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
    let streams = by_stream(&history);
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

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn counters_written_before_the_families_still_add_up() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let client = common::local_client().await;
    let table = common::table_name("test-analytics", "legacy");
    ensure_analytics_table(&client, &table).await.unwrap();
    let store = DynamoAnalyticsStore::new(client.clone(), table.clone());
    // A shard of the layout before the families: every metric in `summary#<shard>`.
    client
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("summary#7".into()))
        .item(
            "c|orders_by_status|completed",
            AttributeValue::N("5".into()),
        )
        .item(
            "c|events_by_type|order.completed",
            AttributeValue::N("5".into()),
        )
        .send()
        .await
        .unwrap();
    let history = order_history("legacy", 3);
    for event in &typed(&history) {
        store.apply(event).await.unwrap();
    }
    let replayed = AnalyticsProjection::replay(&history).unwrap();
    let mut expected = replayed.summary().clone();
    *expected
        .orders_by_status
        .entry("completed".into())
        .or_default() += 5;
    *expected
        .events_by_type
        .entry("order.completed".into())
        .or_default() += 5;
    assert_eq!(store.summary().await.unwrap(), expected);
    // The new events went to their families' shards, none to the old layout's.
    let old = client
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("summary#7".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(old.item().map(|item| item.len()), Some(3));
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[test]
fn a_store_outliving_the_runtime_of_its_group_commit_writes_on_its_own() {
    let history = order_history("outlived", 2);
    let events = typed(&history);
    let (first, rest) = events.split_at(events.len() / 2);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    // The group commit's task starts on the first runtime and ends with it.
    let store = runtime().block_on(async {
        let store = read_model("outlived").await;
        for event in first {
            assert!(matches!(store.apply(event).await.unwrap(), Applied::New(_)));
        }
        store
    });
    runtime().block_on(async {
        for event in rest {
            assert!(matches!(store.apply(event).await.unwrap(), Applied::New(_)));
        }
        let expected = AnalyticsProjection::replay(&history).unwrap();
        assert_eq!(&store.summary().await.unwrap(), expected.summary());
    });
}
/// Counts the `TransactWriteItems` requests of the client it is installed on.
#[derive(Clone, Debug, Default)]
struct CountsTransactions(Arc<std::sync::atomic::AtomicU64>);

impl aws_sdk_dynamodb::config::Intercept for CountsTransactions {
    fn name(&self) -> &'static str {
        "counts-transactions"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let target = context.request().headers().get("x-amz-target");
        if target.is_some_and(|t| t.ends_with(".TransactWriteItems")) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_applied_at_the_same_time_share_transactions() {
    let counter = CountsTransactions::default();
    let client = common::local_client().await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        client
            .config()
            .to_builder()
            .interceptor(counter.clone())
            .build(),
    );
    let table = common::table_name("test-analytics", "grouped");
    ensure_analytics_table(&client, &table).await.unwrap();
    let store = Arc::new(DynamoAnalyticsStore::new(client, table));
    let history = order_history("grouped", 30);
    // Every stream's events at once, as the key groups of a batch apply them.
    let streams = by_stream(&history);
    let runs = streams.len() as u64;
    let tasks: Vec<_> = streams
        .into_values()
        .map(|events| {
            let store = store.clone();
            tokio::spawn(async move { store.apply_run(&events).await.unwrap() })
        })
        .collect();
    for task in tasks {
        let applied = task.await.unwrap();
        assert!(applied.iter().all(|a| matches!(a, Applied::New(_))));
    }
    let transactions = counter.0.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        transactions < runs,
        "{runs} stream runs took {transactions} transactions"
    );
    let expected = AnalyticsProjection::replay(&history).unwrap();
    assert_eq!(&store.summary().await.unwrap(), expected.summary());
    // Applied again, nothing is new and nothing is added.
    for event in &typed(&history) {
        assert_eq!(store.apply(event).await.unwrap(), Applied::Duplicate);
    }
    assert_eq!(&store.summary().await.unwrap(), expected.summary());
}
