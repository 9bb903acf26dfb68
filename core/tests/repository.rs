//! The repository over the in-memory store: snapshots, upcasting on load, conflicts retried,
//! and idempotency keys that make a redelivered command a no-op.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sagaflow_core::domain::inventory::InventoryCommand;
use sagaflow_core::domain::{Inventory, InventoryEvent, StockLine};
use sagaflow_core::event::envelope_events;
use sagaflow_core::store::Snapshot;
use sagaflow_core::{
    Aggregate, AppendOutcome, AppendRequest, CommandMeta, ConflictRetry, DueStream, EventStore,
    InMemoryEventStore, Repository, RepositoryError, StoreError, StoredEvent, StreamId, Timestamp,
    Upcasters, Wake,
};

fn meta(cause: &str) -> CommandMeta {
    CommandMeta::new("corr", cause, Timestamp(10))
}

fn restock(quantity: u32) -> InventoryCommand {
    InventoryCommand::Restock {
        sku: "MUG".into(),
        quantity,
    }
}

#[tokio::test]
async fn snapshots_shorten_loading_and_give_the_same_state() {
    let store = Arc::new(InMemoryEventStore::new());
    let with_snapshots = Repository::<Inventory, _>::new(store.clone()).with_snapshots_every(10);
    for i in 0..25 {
        with_snapshots
            .execute("main", &restock(1), &meta(&format!("c{i}")))
            .await
            .unwrap();
    }
    let snapshot = store
        .load_snapshot(&StreamId::new("inventory", "main"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.version, 20);
    let fast = with_snapshots.load("main").await.unwrap();
    assert_eq!(fast.version, 25);
    assert_eq!(fast.replayed, 5);
    let stored = store
        .load(&StreamId::new("inventory", "main"), 0)
        .await
        .unwrap();
    assert_eq!(stored.len(), 25);
    let events: Vec<InventoryEvent> = stored
        .iter()
        .map(|e| {
            e.decode::<InventoryEvent>(&Upcasters::default())
                .unwrap()
                .payload
        })
        .collect();
    assert_eq!(fast.state, Inventory::from_events(&events));
    assert_eq!(fast.state.level("MUG").available, 25);
}

#[tokio::test]
async fn a_snapshot_of_another_state_version_is_ignored() {
    let store = Arc::new(InMemoryEventStore::new());
    let repo = Repository::<Inventory, _>::new(store.clone());
    repo.execute("main", &restock(3), &meta("c1"))
        .await
        .unwrap();
    store
        .save_snapshot(Snapshot {
            stream: StreamId::new("inventory", "main"),
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
    let repo = Repository::<Inventory, _>::new(store.clone());
    repo.execute("main", &restock(2), &meta("r")).await.unwrap();
    let reserve = InventoryCommand::Reserve {
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
    let other = InventoryCommand::Reserve {
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
    let repo = Repository::<Inventory, _>::new(store.clone());
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
                &[sagaflow_core::domain::InventoryEvent::Restocked {
                    sku: "TEE".into(),
                    quantity: 1,
                }],
                &meta(&format!("rival-{n}")),
            );
            self.inner
                .append(AppendRequest {
                    stream: request.stream.clone(),
                    expected_version: request.expected_version,
                    events: rival,
                    idempotency_key: None,
                    wake: Wake::Unchanged,
                })
                .await?;
        }
        self.inner.append(request).await
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
    let repo = Repository::<Inventory, _>::new(store.clone());
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
    let repo = Repository::<Inventory, _>::new(store.clone())
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
