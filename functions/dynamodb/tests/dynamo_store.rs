//! The event store scenarios of the core, run against DynamoDB (dynoxide or LocalStack started by
//! `make test` / `make up`), plus what only DynamoDB can get wrong: paging, transaction limits.

mod common;

use std::sync::Arc;

use sagaflow_dynamodb::dynamo_store::MAX_TRANSACTION_ITEMS;
use sagaflow_dynamodb::tables::ensure_events_table;
use sagaflow_dynamodb::{DynamoEventStore, PushBack, PushBackCounts};
use sagaflow_eventsourcing::event::{event_id_for, EventEnvelope};
use sagaflow_eventsourcing::AppendRequest;
use sagaflow_eventsourcing::CommandMeta;
use sagaflow_eventsourcing::EventStore;
use sagaflow_eventsourcing::Repository;
use sagaflow_eventsourcing::StoreError;
use sagaflow_eventsourcing::StreamId;
use sagaflow_eventsourcing::Timestamp;
use sagaflow_eventsourcing::Wake;
use sagaflow_orders::domain::{
    decide_with_stock, InventoryCommand, Reservation, Stock, StockCommand, StockLine,
};

/// A store on a fresh table.
async fn store(name: &str) -> DynamoEventStore {
    let client = common::local_client().await;
    let table = common::table_name("test", name);
    ensure_events_table(&client, &table).await.unwrap();
    DynamoEventStore::new(client, table)
}

/// The event store scenarios on DynamoDB, one test each.
mod scenarios {
    use super::*;

    sagaflow_eventsourcing::event_store_scenarios! {
        #[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
        store: store("scenarios").await
    }
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn a_long_stream_loads_across_query_pages() {
    let store = store("paging").await;
    // Large payloads make DynamoDB cut query pages at 1 MB, so the load must follow them.
    let stream = StreamId::new("scenario", "big");
    let blob = "x".repeat(40_000);
    let mut version = 0;
    while version < 60 {
        let events = (1..=10)
            .map(|i| EventEnvelope {
                trace_context: None,
                event_id: event_id_for(&stream, version + i),
                aggregate_type: "scenario".into(),
                aggregate_id: "big".into(),
                sequence: version + i,
                event_type: "scenario.happened".into(),
                schema_version: 1,
                occurred_at: Timestamp(1),
                correlation_id: "c".into(),
                causation_id: "c".into(),
                payload: serde_json::json!({ "blob": blob }),
            })
            .collect();
        store
            .append(AppendRequest {
                stream: stream.clone(),
                expected_version: version,
                expected_from_store: false,
                events,
                idempotency_keys: Vec::new(),
                wake: Wake::Unchanged,
                snapshot: None,
            })
            .await
            .unwrap();
        version += 10;
    }
    let loaded = store.load(&stream, 0).await.unwrap();
    assert_eq!(loaded.len(), 60);
    assert_eq!(loaded.last().map(|e| e.sequence), Some(60));
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn a_batch_over_the_transaction_limit_is_refused_with_a_clear_error() {
    let store = store("limit").await;
    let stream = StreamId::new("scenario", "huge");
    let events = (1..=MAX_TRANSACTION_ITEMS as u64)
        .map(|seq| EventEnvelope {
            trace_context: None,
            event_id: event_id_for(&stream, seq),
            aggregate_type: "scenario".into(),
            aggregate_id: "huge".into(),
            sequence: seq,
            event_type: "scenario.happened".into(),
            schema_version: 1,
            occurred_at: Timestamp(1),
            correlation_id: "c".into(),
            causation_id: "c".into(),
            payload: serde_json::json!({}),
        })
        .collect();
    let err = store
        .append(AppendRequest {
            stream: stream.clone(),
            expected_version: 0,
            expected_from_store: false,
            events,
            idempotency_keys: vec!["k-huge".into()],
            wake: Wake::Unchanged,
            snapshot: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidAppend { reason, .. } if reason.contains("DynamoDB allows 100")),
        "{err}"
    );
    assert!(store.load(&stream, 0).await.unwrap().is_empty());
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn the_repository_snapshots_and_reloads_through_dynamodb() {
    let store = Arc::new(store("repository").await);
    let repo = Repository::<Stock, _>::new(store.clone()).with_snapshots_every(4);
    let restock = StockCommand::Restock { quantity: 2 };
    for i in 0..10 {
        let meta = CommandMeta::new("c", format!("c{i}"), Timestamp(5))
            .with_idempotency_key(format!("restock-{i}"));
        repo.execute("MUG", &restock, &meta).await.unwrap();
    }
    let loaded = repo.load("MUG").await.unwrap();
    assert_eq!(loaded.version, 10);
    assert_eq!(loaded.replayed, 2, "loaded from the snapshot at version 8");
    assert_eq!(loaded.state.level.available, 20);
    let again = CommandMeta::new("c", "c3", Timestamp(5)).with_idempotency_key("restock-3");
    let duplicate = repo.execute("MUG", &restock, &again).await.unwrap();
    assert!(duplicate.duplicate);
    assert_eq!(repo.load("MUG").await.unwrap().state.level.available, 20);
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn a_reservation_holds_every_sku_in_one_transaction_or_none() {
    let store = Arc::new(store("joint").await);
    let reservations = Repository::<Reservation, _>::new(store.clone());
    let stock = Repository::<Stock, _>::new(store.clone()).with_snapshots_every(4);
    for (sku, quantity) in [("MUG", 3), ("TEE", 1)] {
        let meta = CommandMeta::new("c", format!("restock-{sku}"), Timestamp(5));
        stock
            .execute(sku, &StockCommand::Restock { quantity }, &meta)
            .await
            .unwrap();
    }
    let reserve = |order: &str, tees: u32| InventoryCommand::Reserve {
        order_id: order.into(),
        lines: vec![
            StockLine {
                sku: "MUG".into(),
                quantity: 2,
            },
            StockLine {
                sku: "TEE".into(),
                quantity: tees,
            },
        ],
    };
    let run = |command: InventoryCommand| {
        let (reservations, stock) = (&reservations, &stock);
        async move {
            let meta = CommandMeta::new("c", command.order_id(), Timestamp(6))
                .with_idempotency_key(command.order_id());
            reservations
                .execute_joint(
                    stock,
                    command.order_id(),
                    &meta,
                    |r| r.skus_for(&command),
                    |r, s| decide_with_stock(r, s, &command),
                )
                .await
                .unwrap()
        }
    };
    let short = run(reserve("ord-short", 2)).await;
    let types: Vec<&str> = short.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["inventory.reservation_failed"]);
    let held = run(reserve("ord-held", 1)).await;
    let streams: Vec<String> = held
        .events
        .iter()
        .map(|e| e.stream_id().to_string())
        .collect();
    assert_eq!(streams, ["inventory#ord-held", "stock#MUG", "stock#TEE"]);
    assert!(run(reserve("ord-held", 1)).await.duplicate);
    let mug = stock.load("MUG").await.unwrap();
    assert_eq!((mug.version, mug.state.level.available), (2, 1));
    let tee = stock.load("TEE").await.unwrap();
    assert_eq!((tee.version, tee.state.level.reserved), (2, 1));
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn one_skus_reservations_are_written_in_one_transaction_and_redelivered_as_duplicates() {
    let store = Arc::new(store("joint-all").await);
    let reservations = Repository::<Reservation, _>::new(store.clone()).with_state_cache(16);
    let stock = Repository::<Stock, _>::new(store.clone())
        .with_snapshots_every(4)
        .with_state_cache(16);
    let meta = CommandMeta::new("c", "restock-MUG", Timestamp(5));
    stock
        .execute("MUG", &StockCommand::Restock { quantity: 5 }, &meta)
        .await
        .unwrap();
    let commands: Vec<InventoryCommand> = (1..=6)
        .map(|n| InventoryCommand::Reserve {
            order_id: format!("ord-{n}"),
            lines: vec![StockLine {
                sku: "MUG".into(),
                quantity: 1,
            }],
        })
        .collect();
    let metas: Vec<CommandMeta> = commands
        .iter()
        .map(|c| {
            CommandMeta::new("c", c.order_id(), Timestamp(6)).with_idempotency_key(c.order_id())
        })
        .collect();
    let group: Vec<(&str, &CommandMeta, &InventoryCommand)> = commands
        .iter()
        .zip(&metas)
        .map(|(c, m)| (c.order_id(), m, c))
        .collect();
    let run =
        || reservations.execute_joint_all(&stock, &group, |r, c| r.skus_for(c), decide_with_stock);
    let outcomes: Vec<_> = run().await.into_iter().map(Result::unwrap).collect();
    let types: Vec<&str> = outcomes
        .iter()
        .map(|o| o.events[0].event_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "inventory.reserved",
            "inventory.reserved",
            "inventory.reserved",
            "inventory.reserved",
            "inventory.reserved",
            "inventory.reservation_failed"
        ]
    );
    // The five holds went into the one transaction: the stream's events number on from 2,
    // snapshots included where the group crossed the interval.
    let mug = stock.load("MUG").await.unwrap();
    assert_eq!((mug.version, mug.state.level.reserved), (6, 5));
    assert!(store
        .load_snapshot(&StreamId::new("stock", "MUG"))
        .await
        .unwrap()
        .is_some_and(|snapshot| snapshot.version == 6));
    // Redelivered, every command is a duplicate and nothing is held twice.
    let again: Vec<_> = run().await.into_iter().map(Result::unwrap).collect();
    assert!(again.iter().all(|o| o.duplicate), "{again:?}");
    assert_eq!(stock.load("MUG").await.unwrap().state.level.reserved, 5);
}

fn one_event(stream: &StreamId, sequence: u64, key: &str) -> AppendRequest {
    AppendRequest {
        stream: stream.clone(),
        expected_version: sequence - 1,
        expected_from_store: false,
        events: vec![EventEnvelope {
            trace_context: None,
            event_id: event_id_for(stream, sequence),
            aggregate_type: stream.aggregate_type.clone(),
            aggregate_id: stream.aggregate_id.clone(),
            sequence,
            event_type: "scenario.happened".into(),
            schema_version: 1,
            occurred_at: Timestamp(1),
            correlation_id: "c".into(),
            causation_id: key.into(),
            payload: serde_json::json!({}),
        }],
        idempotency_keys: vec![key.into()],
        wake: Wake::Unchanged,
        snapshot: None,
    }
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn an_append_that_lost_a_race_is_counted_as_a_conflict_and_a_duplicate_is_not() {
    let push_back = Arc::new(PushBack::default());
    let store = store("push-back").await.with_push_back(push_back.clone());
    let stream = StreamId::new("scenario", format!("race-{}", std::process::id()));
    store.append(one_event(&stream, 1, "first")).await.unwrap();
    let late = store.append(one_event(&stream, 1, "second")).await;
    assert!(matches!(late, Err(StoreError::Conflict { .. })), "{late:?}");
    let again = store.append(one_event(&stream, 2, "first")).await.unwrap();
    assert_eq!(again, sagaflow_eventsourcing::AppendOutcome::Duplicate);
    assert_eq!(
        push_back.take(),
        PushBackCounts {
            throttled: 0,
            conflicts: 1
        }
    );
}
