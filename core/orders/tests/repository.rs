//! The repository over the in-memory store: snapshots, upcasting on load, conflicts retried,
//! and idempotency keys that make a redelivered command a no-op.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sagaflow_eventsourcing::event::envelope_events;
use sagaflow_eventsourcing::store::Snapshot;
use sagaflow_eventsourcing::Aggregate;
use sagaflow_eventsourcing::AppendOutcome;
use sagaflow_eventsourcing::AppendRequest;
use sagaflow_eventsourcing::Classified;
use sagaflow_eventsourcing::CommandMeta;
use sagaflow_eventsourcing::ConflictRetry;
use sagaflow_eventsourcing::DueStream;
use sagaflow_eventsourcing::EventStore;
use sagaflow_eventsourcing::InMemoryEventStore;
use sagaflow_eventsourcing::Repository;
use sagaflow_eventsourcing::RepositoryError;
use sagaflow_eventsourcing::StoreError;
use sagaflow_eventsourcing::StoredEvent;
use sagaflow_eventsourcing::StreamId;
use sagaflow_eventsourcing::Timestamp;
use sagaflow_eventsourcing::Wake;
use sagaflow_orders::domain::StockLine;
use sagaflow_orders::testkit::warehouse::{Warehouse, WarehouseCommand, WarehouseEvent};

fn meta(cause: &str) -> CommandMeta {
    CommandMeta::new("corr", cause, Timestamp(10))
}

fn restock(quantity: u32) -> WarehouseCommand {
    WarehouseCommand::Restock {
        sku: "MUG".into(),
        quantity,
    }
}

#[tokio::test]
async fn snapshots_shorten_loading_and_give_the_same_state() {
    let store = Arc::new(InMemoryEventStore::new());
    let with_snapshots = Repository::<Warehouse, _>::new(store.clone()).with_snapshots_every(10);
    for i in 0..25 {
        with_snapshots
            .execute("main", &restock(1), &meta(&format!("c{i}")))
            .await
            .unwrap();
    }
    let snapshot = store
        .load_snapshot(&StreamId::new("warehouse", "main"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.version, 20);
    let fast = with_snapshots.load("main").await.unwrap();
    assert_eq!(fast.version, 25);
    assert_eq!(fast.replayed, 5);
    let stored = store
        .load(&StreamId::new("warehouse", "main"), 0)
        .await
        .unwrap();
    assert_eq!(stored.len(), 25);
    let events: Vec<WarehouseEvent> = stored
        .iter()
        .map(|e| e.decode::<WarehouseEvent>().unwrap().payload)
        .collect();
    assert_eq!(fast.state, Warehouse::from_events(&events));
    assert_eq!(fast.state.level("MUG").available, 25);
}

#[tokio::test]
async fn a_snapshot_of_another_state_version_is_ignored() {
    let store = Arc::new(InMemoryEventStore::new());
    let repo = Repository::<Warehouse, _>::new(store.clone());
    repo.execute("main", &restock(3), &meta("c1"))
        .await
        .unwrap();
    store
        .save_snapshot(Snapshot {
            stream: StreamId::new("warehouse", "main"),
            version: 1,
            state_version: 99,
            state: serde_json::json!({"not": "an inventory"}),
            taken_at: Timestamp(1),
        })
        .await
        .unwrap();
    let loaded = repo.with_snapshots_every(1).load("main").await.unwrap();
    assert_eq!(loaded.replayed, 1);
    assert_eq!(loaded.state.level("MUG").available, 3);
}

#[tokio::test]
async fn a_redelivered_command_appends_nothing_even_when_it_would_now_be_refused() {
    let store = Arc::new(InMemoryEventStore::new());
    let repo = Repository::<Warehouse, _>::new(store.clone());
    repo.execute("main", &restock(2), &meta("r")).await.unwrap();
    let reserve = WarehouseCommand::Reserve {
        order_id: "ord-1".into(),
        lines: vec![StockLine {
            sku: "MUG".into(),
            quantity: 2,
        }],
    };
    let keyed = meta("cmd-1").with_idempotency_key("command:cmd-1");
    let first = repo.execute("main", &reserve, &keyed).await.unwrap();
    assert_eq!(first.events.len(), 1);
    assert!(!first.duplicate);
    let again = repo.execute("main", &reserve, &keyed).await.unwrap();
    assert!(again.duplicate);
    assert!(again.events.is_empty());
    // The same key on a command that the new state refuses is still only a duplicate.
    let other = WarehouseCommand::Reserve {
        order_id: "ord-1".into(),
        lines: vec![StockLine {
            sku: "MUG".into(),
            quantity: 1,
        }],
    };
    let refused_but_known = repo.execute("main", &other, &keyed).await.unwrap();
    assert!(refused_but_known.duplicate);
    assert_eq!(store.event_count(), 2);
    let unknown_key = meta("cmd-2").with_idempotency_key("command:cmd-2");
    assert!(matches!(
        repo.execute("main", &other, &unknown_key).await,
        Err(RepositoryError::Domain(_))
    ));
}

#[tokio::test]
async fn invalid_commands_append_nothing() {
    let store = Arc::new(InMemoryEventStore::new());
    let repo = Repository::<Warehouse, _>::new(store.clone());
    let err = repo
        .execute("main", &restock(0), &meta("c"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("quantity"), "{err}");
    assert_eq!(store.event_count(), 0);
}

/// A store that lets a competing writer win the first append, as a concurrent Lambda would.
struct RacingStore {
    inner: InMemoryEventStore,
    raced: AtomicBool,
    races: u32,
    appends: std::sync::atomic::AtomicU32,
}

impl EventStore for RacingStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        let n = self.appends.fetch_add(1, Ordering::SeqCst);
        if n < self.races {
            self.raced.store(true, Ordering::SeqCst);
            let rival: Vec<StoredEvent> = envelope_events(
                &request.stream,
                request.expected_version,
                &[WarehouseEvent::Restocked {
                    sku: "TEE".into(),
                    quantity: 1,
                }],
                &meta(&format!("rival-{n}")),
            );
            self.inner
                .append(AppendRequest {
                    stream: request.stream.clone(),
                    expected_version: request.expected_version,
                    expected_from_store: false,
                    events: rival,
                    idempotency_keys: Vec::new(),
                    wake: Wake::Unchanged,
                    snapshot: None,
                })
                .await?;
        }
        self.inner.append(request).await
    }
    async fn append_together(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<AppendOutcome, StoreError> {
        self.inner.append_together(requests).await
    }
    async fn load(&self, s: &StreamId, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.load(s, after).await
    }
    async fn is_processed(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.is_processed(key).await
    }
    async fn load_snapshot(&self, s: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.inner.load_snapshot(s).await
    }
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn due(
        &self,
        kind: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueStream>, StoreError> {
        self.inner.due(kind, now, limit).await
    }
}

fn racing(races: u32) -> Arc<RacingStore> {
    Arc::new(RacingStore {
        inner: InMemoryEventStore::new(),
        raced: AtomicBool::new(false),
        races,
        appends: Default::default(),
    })
}

#[tokio::test]
async fn a_conflict_is_retried_on_fresh_state_and_no_write_is_lost() {
    let store = racing(2);
    let repo = Repository::<Warehouse, _>::new(store.clone());
    let outcome = repo.execute("main", &restock(5), &meta("c")).await.unwrap();
    assert!(store.raced.load(Ordering::SeqCst));
    assert_eq!(outcome.attempts, 3);
    assert_eq!(outcome.version, 3);
    let state = repo.load("main").await.unwrap().state;
    assert_eq!(state.level("MUG").available, 5);
    assert_eq!(state.level("TEE").available, 2, "both rival writes kept");
}

#[tokio::test]
async fn endless_contention_gives_up_with_a_typed_error() {
    let store = racing(100);
    let repo = Repository::<Warehouse, _>::new(store.clone())
        .with_conflict_retry(ConflictRetry { max_attempts: 3 });
    let err = repo
        .execute("main", &restock(5), &meta("c"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepositoryError::Contended { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(
        repo.load("main")
            .await
            .unwrap()
            .state
            .level("MUG")
            .available,
        0
    );
}

fn reserve(order: &str, quantity: u32) -> WarehouseCommand {
    WarehouseCommand::Reserve {
        order_id: order.into(),
        lines: vec![StockLine {
            sku: "MUG".into(),
            quantity,
        }],
    }
}

#[tokio::test]
async fn given_stock_when_a_batch_of_reservations_runs_then_one_append_records_every_effect() {
    let store = racing(0);
    let repo = Repository::<Warehouse, _>::new(store.clone());
    repo.execute("main", &restock(5), &meta("stock"))
        .await
        .unwrap();
    let commands = [
        (reserve("ord-1", 2), meta("r1").with_idempotency_key("k1")),
        (reserve("ord-2", 0), meta("r2").with_idempotency_key("k2")),
        (reserve("ord-3", 3), meta("r3").with_idempotency_key("k3")),
        (reserve("ord-4", 1), meta("r4").with_idempotency_key("k4")),
    ];
    let batch: Vec<_> = commands.iter().map(|(c, m)| (c, m)).collect();
    let appends_before = store.appends.load(Ordering::SeqCst);
    let outcomes = repo.execute_all("main", &batch).await;
    assert_eq!(store.appends.load(Ordering::SeqCst), appends_before + 1);
    assert_eq!(outcomes.len(), 4);
    let first = outcomes[0].as_ref().unwrap();
    assert_eq!((first.version, first.state.level("MUG").available), (2, 3));
    assert!(matches!(outcomes[1], Err(RepositoryError::Domain(_))));
    let third = outcomes[2].as_ref().unwrap();
    assert_eq!((third.version, third.state.level("MUG").available), (3, 0));
    let fourth = outcomes[3].as_ref().unwrap();
    assert_eq!(fourth.events[0].event_type, "warehouse.reservation_failed");
    assert_eq!(fourth.events[0].causation_id, "r4");
    for key in ["k1", "k3", "k4"] {
        assert!(store.is_processed(key).await.unwrap(), "{key}");
    }
    assert!(!store.is_processed("k2").await.unwrap());

    // Redelivered: every accepted command is a duplicate, the refused one is refused again.
    let again = repo.execute_all("main", &batch).await;
    assert_eq!(repo.load("main").await.unwrap().version, 4);
    assert!(again[0].as_ref().unwrap().duplicate);
    assert!(matches!(again[1], Err(RepositoryError::Domain(_))));
    assert!(again[2].as_ref().unwrap().duplicate);
    assert!(again[3].as_ref().unwrap().duplicate);
}

#[tokio::test]
async fn a_batch_that_loses_a_race_is_decided_again_on_fresh_state() {
    let store = racing(1);
    let repo = Repository::<Warehouse, _>::new(store.clone()).with_snapshots_every(2);
    let commands = [
        (restock(4), meta("a").with_idempotency_key("a")),
        (reserve("ord-1", 3), meta("b").with_idempotency_key("b")),
    ];
    let batch: Vec<_> = commands.iter().map(|(c, m)| (c, m)).collect();
    let outcomes = repo.execute_all("main", &batch).await;
    assert_eq!(outcomes[1].as_ref().unwrap().attempts, 2);
    assert_eq!(
        outcomes[1].as_ref().unwrap().version,
        3,
        "after the rival's event"
    );
    let snapshot = store
        .load_snapshot(&StreamId::new("warehouse", "main"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.version, 3, "taken in the append that crossed 2");
    let loaded = repo.load("main").await.unwrap();
    assert_eq!(loaded.replayed, 0);
    assert_eq!(loaded.state.level("MUG").available, 1);
    assert_eq!(loaded.state.level("TEE").available, 1);
}

#[tokio::test]
async fn a_command_costs_one_read_and_one_write_with_or_without_snapshots() {
    use sagaflow_eventsourcing::testkit::CountingStore;
    for snapshots in [None, Some(3)] {
        let store = Arc::new(CountingStore::new(InMemoryEventStore::new()));
        let mut repo = Repository::<Warehouse, _>::new(store.clone());
        if let Some(every) = snapshots {
            repo = repo.with_snapshots_every(every);
        }
        for i in 0..10 {
            let key = format!("c{i}");
            repo.execute(
                "main",
                &restock(1),
                &meta(&key).with_idempotency_key(key.clone()),
            )
            .await
            .unwrap();
        }
        assert_eq!((store.reads(), store.appends()), (10, 10), "{snapshots:?}");
        let loaded = repo.load("main").await.unwrap();
        assert_eq!(loaded.state.level("MUG").available, 10);
        assert_eq!(loaded.replayed, if snapshots.is_some() { 1 } else { 10 });
    }
}

#[tokio::test]
async fn with_a_state_cache_a_command_costs_one_write_and_no_read() {
    use sagaflow_eventsourcing::testkit::CountingStore;
    let store = Arc::new(CountingStore::new(InMemoryEventStore::new()));
    let repo = Repository::<Warehouse, _>::new(store.clone()).with_state_cache(8);
    for i in 0..10 {
        let key = format!("c{i}");
        repo.execute(
            "main",
            &restock(1),
            &meta(&key).with_idempotency_key(key.clone()),
        )
        .await
        .unwrap();
    }
    assert_eq!((store.reads(), store.appends()), (1, 10));
    assert_eq!(
        repo.load("main")
            .await
            .unwrap()
            .state
            .level("MUG")
            .available,
        10
    );
}

#[tokio::test]
async fn given_a_stale_cached_state_when_a_command_runs_then_it_is_decided_on_the_stored_one() {
    let store = Arc::new(InMemoryEventStore::new());
    let cached = Repository::<Warehouse, _>::new(store.clone()).with_state_cache(8);
    let other = Repository::<Warehouse, _>::new(store.clone());
    cached
        .execute("main", &restock(1), &meta("s"))
        .await
        .unwrap();
    // Another writer takes the last mug; the cache still shows it available.
    other
        .execute("main", &reserve("ord-1", 1), &meta("r1"))
        .await
        .unwrap();
    let outcome = cached
        .execute("main", &reserve("ord-2", 1), &meta("r2"))
        .await
        .unwrap();
    assert_eq!(outcome.attempts, 2, "the stale decision conflicted");
    assert_eq!(outcome.events[0].event_type, "warehouse.reservation_failed");

    // A command that changes nothing must not be recorded on a stale state either: shipping
    // an order the cache has never seen reserved would be a no-op there.
    other
        .execute("main", &restock(1), &meta("s2"))
        .await
        .unwrap();
    other
        .execute("main", &reserve("ord-3", 1), &meta("r3"))
        .await
        .unwrap();
    let ship = WarehouseCommand::Ship {
        order_id: "ord-3".into(),
    };
    let shipped = cached
        .execute(
            "main",
            &ship,
            &meta("ship-3").with_idempotency_key("ship-3"),
        )
        .await
        .unwrap();
    assert_eq!(shipped.events[0].event_type, "warehouse.shipped");

    // A refusal decided on a cached state is checked against the stored one first.
    cached
        .execute("main", &reserve("ord-9", 1), &meta("r9"))
        .await
        .unwrap();
    other
        .execute(
            "main",
            &WarehouseCommand::Release {
                order_id: "ord-1".into(),
                reason: "cancelled".into(),
            },
            &meta("rel-1"),
        )
        .await
        .unwrap();
    other
        .execute("main", &restock(2), &meta("s3"))
        .await
        .unwrap();
    let different = WarehouseCommand::Reserve {
        order_id: "ord-9".into(),
        lines: vec![StockLine {
            sku: "MUG".into(),
            quantity: 2,
        }],
    };
    let again = cached
        .execute("main", &different, &meta("r9b"))
        .await
        .unwrap();
    assert_eq!(again.events[0].event_type, "warehouse.reserved");
}

#[tokio::test]
async fn a_command_repeated_within_a_batch_takes_effect_once() {
    let store = Arc::new(InMemoryEventStore::new());
    let repo = Repository::<Warehouse, _>::new(store.clone()).with_state_cache(8);
    repo.execute("main", &restock(5), &meta("s")).await.unwrap();
    let command = reserve("ord-1", 2);
    let keyed = meta("r1").with_idempotency_key("r1");
    let outcomes = repo
        .execute_all("main", &[(&command, &keyed), (&command, &keyed)])
        .await;
    let (first, second) = (outcomes[0].as_ref().unwrap(), outcomes[1].as_ref().unwrap());
    assert_eq!((first.events.len(), first.duplicate), (1, false));
    assert_eq!((second.events.len(), second.duplicate), (0, true));
    assert_eq!(second.state.level("MUG").reserved, 2);
    assert_eq!(store.event_count(), 2);
}
