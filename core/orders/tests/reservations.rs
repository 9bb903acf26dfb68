//! Reservations across SKU streams: an order's reservation and the stock of each of its SKUs
//! decided together and appended in one atomic write (`Repository::execute_joint`), over the
//! in-memory store. The DynamoDB store runs the same append (`appends_to_streams_together`
//! in the event store scenarios).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use sagaflow_eventsourcing::testkit::CountingStore;
use sagaflow_eventsourcing::{
    AppendOutcome, AppendRequest, CommandMeta, CommandOutcome, DueStream, EventStore,
    InMemoryEventStore, Repository, RepositoryError, Snapshot, StoreError, StoredEvent, StreamId,
    Timestamp, Wake,
};
use sagaflow_orders::domain::{
    decide_with_stock, InventoryCommand, InventoryError, Reservation, Stock, StockCommand,
    StockEvent, StockLevel, StockLine,
};

fn line(sku: &str, quantity: u32) -> StockLine {
    StockLine {
        sku: sku.into(),
        quantity,
    }
}

/// The two repositories the inventory service runs reservations through.
struct Inventory<S> {
    reservations: Repository<Reservation, S>,
    stock: Repository<Stock, S>,
}

impl<S: EventStore> Inventory<S> {
    fn new(store: Arc<S>, cache: usize) -> Self {
        Self {
            reservations: Repository::new(store.clone()).with_state_cache(cache),
            stock: Repository::new(store)
                .with_snapshots_every(4)
                .with_state_cache(cache),
        }
    }

    async fn restock(&self, sku: &str, quantity: u32) {
        let meta = CommandMeta::new("restock", format!("restock-{sku}-{quantity}"), Timestamp(1));
        self.stock
            .execute(sku, &StockCommand::Restock { quantity }, &meta)
            .await
            .expect("restock");
    }

    async fn run(
        &self,
        command: InventoryCommand,
        key: &str,
    ) -> Result<CommandOutcome<Reservation>, RepositoryError<InventoryError>> {
        let meta = CommandMeta::new("corr", key, Timestamp(5)).with_idempotency_key(key);
        self.reservations
            .execute_joint(
                &self.stock,
                command.order_id(),
                &meta,
                |reservation| reservation.skus_for(&command),
                |reservation, stock| decide_with_stock(reservation, stock, &command),
            )
            .await
    }

    /// Runs `commands` (each with its key) as one group, as the inventory service runs a
    /// SKU's commands of one batch.
    async fn run_all(
        &self,
        commands: &[(InventoryCommand, &str)],
    ) -> Vec<Result<CommandOutcome<Reservation>, RepositoryError<InventoryError>>> {
        let metas: Vec<CommandMeta> = commands
            .iter()
            .map(|(_, key)| CommandMeta::new("corr", *key, Timestamp(5)).with_idempotency_key(*key))
            .collect();
        let group: Vec<(&str, &CommandMeta, &InventoryCommand)> = commands
            .iter()
            .zip(&metas)
            .map(|((command, _), meta)| (command.order_id(), meta, command))
            .collect();
        self.reservations
            .execute_joint_all(
                &self.stock,
                &group,
                |reservation, command| reservation.skus_for(command),
                decide_with_stock,
            )
            .await
    }

    async fn level(&self, sku: &str) -> StockLevel {
        self.stock.load(sku).await.expect("load stock").state.level
    }
}

fn reserve(order: &str, lines: Vec<StockLine>) -> InventoryCommand {
    InventoryCommand::Reserve {
        order_id: order.into(),
        lines,
    }
}

fn event_types(outcome: &CommandOutcome<Reservation>) -> Vec<(String, String)> {
    outcome
        .events
        .iter()
        .map(|e| (e.stream_id().to_string(), e.event_type.clone()))
        .collect()
}

#[tokio::test]
async fn given_stock_when_an_order_reserves_two_skus_then_each_stream_records_its_part_at_once() {
    let store = Arc::new(InMemoryEventStore::new());
    let inventory = Inventory::new(store.clone(), 0);
    inventory.restock("MUG", 5).await;
    inventory.restock("TEE", 2).await;
    let outcome = inventory
        .run(reserve("ord-1", vec![line("MUG", 3), line("TEE", 2)]), "r1")
        .await
        .expect("reserve");
    assert_eq!(
        event_types(&outcome),
        vec![
            ("inventory#ord-1".into(), "inventory.reserved".into()),
            ("stock#MUG".into(), "stock.held".into()),
            ("stock#TEE".into(), "stock.held".into()),
        ]
    );
    assert!(outcome.events.iter().all(|e| e.causation_id == "r1"));
    assert_eq!(inventory.level("MUG").await.available, 2);
    assert_eq!(inventory.level("TEE").await.reserved, 2);

    // Shipping moves exactly the held units, on the same streams.
    let shipped = inventory
        .run(
            InventoryCommand::Ship {
                order_id: "ord-1".into(),
            },
            "s1",
        )
        .await
        .expect("ship");
    assert_eq!(shipped.events.len(), 3);
    assert_eq!(
        inventory.level("MUG").await,
        StockLevel {
            available: 2,
            reserved: 0,
            shipped: 3
        }
    );
}

#[tokio::test]
async fn given_one_short_line_when_an_order_reserves_then_no_sku_holds_anything() {
    let store = Arc::new(InMemoryEventStore::new());
    let inventory = Inventory::new(store.clone(), 0);
    inventory.restock("MUG", 5).await;
    inventory.restock("TEE", 1).await;
    let events_before = store.event_count();
    let outcome = inventory
        .run(reserve("ord-1", vec![line("MUG", 1), line("TEE", 2)]), "r1")
        .await
        .expect("reserve");
    assert_eq!(
        event_types(&outcome),
        vec![(
            "inventory#ord-1".into(),
            "inventory.reservation_failed".into()
        )]
    );
    assert_eq!(store.event_count(), events_before + 1);
    assert_eq!(inventory.level("MUG").await.available, 5);
    assert_eq!(inventory.level("TEE").await.available, 1);
}

#[tokio::test]
async fn a_redelivered_reservation_holds_nothing_twice() {
    let store = Arc::new(InMemoryEventStore::new());
    let inventory = Inventory::new(store.clone(), 8);
    inventory.restock("MUG", 5).await;
    let command = reserve("ord-1", vec![line("MUG", 2)]);
    let first = inventory.run(command.clone(), "r1").await.expect("first");
    assert!(!first.duplicate);
    let again = inventory.run(command, "r1").await.expect("again");
    assert!(again.duplicate && again.events.is_empty());
    // Redelivered with its key, a command the current state would refuse is a duplicate too.
    let different = inventory
        .run(reserve("ord-1", vec![line("MUG", 3)]), "r1")
        .await
        .expect("a duplicate, not a refusal");
    assert!(different.duplicate);
    assert!(matches!(
        inventory
            .run(reserve("ord-1", vec![line("MUG", 3)]), "r2")
            .await,
        Err(RepositoryError::Domain(
            InventoryError::ConflictingReservation(_)
        ))
    ));
    assert_eq!(inventory.level("MUG").await.reserved, 2);
}

#[tokio::test]
async fn given_a_stale_cached_stock_when_an_order_reserves_then_it_is_decided_on_the_stored_one() {
    let store = Arc::new(InMemoryEventStore::new());
    let cached = Inventory::new(store.clone(), 8);
    let other = Inventory::new(store.clone(), 0);
    cached.restock("MUG", 1).await;
    // Another function takes the last mug; this one's cache still shows it available.
    other
        .run(reserve("ord-1", vec![line("MUG", 1)]), "r1")
        .await
        .expect("other reserves");
    let outcome = cached
        .run(reserve("ord-2", vec![line("MUG", 1)]), "r2")
        .await
        .expect("decided again");
    assert_eq!(outcome.attempts, 2, "the stale decision conflicted");
    assert_eq!(
        event_types(&outcome),
        vec![(
            "inventory#ord-2".into(),
            "inventory.reservation_failed".into()
        )]
    );
    assert_eq!(cached.level("MUG").await.reserved, 1);
}

/// A store on which a rival restocks MUG just before the first joint append, as a concurrent
/// function would between this one's read and its write.
struct RestockedMeanwhile {
    inner: InMemoryEventStore,
    appends: AtomicU32,
}

impl EventStore for RestockedMeanwhile {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.inner.append(request).await
    }
    async fn append_together(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<AppendOutcome, StoreError> {
        if self.appends.fetch_add(1, Ordering::SeqCst) == 0 {
            let mug = StreamId::new("stock", "MUG");
            let version = self.inner.load(&mug, 0).await?.len() as u64;
            let meta = CommandMeta::new("rival", "rival", Timestamp(2));
            let events = sagaflow_eventsourcing::event::envelope_events(
                &mug,
                version,
                &[StockEvent::Restocked { quantity: 4 }],
                &meta,
            );
            self.inner
                .append(AppendRequest {
                    stream: mug,
                    expected_version: version,
                    expected_from_store: false,
                    events,
                    idempotency_keys: Vec::new(),
                    wake: Wake::Unchanged,
                    snapshot: None,
                })
                .await?;
        }
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

#[tokio::test]
async fn a_shortage_is_decided_again_when_the_stock_it_read_moved_before_the_write() {
    let store = Arc::new(RestockedMeanwhile {
        inner: InMemoryEventStore::new(),
        appends: AtomicU32::new(0),
    });
    let inventory = Inventory::new(store.clone(), 0);
    inventory.restock("MUG", 1).await;
    // Decided on 1 available, the reservation of 3 would fail; the stock read is held to its
    // version, so the rival's restock makes the append conflict and the retry sees 5.
    let outcome = inventory
        .run(reserve("ord-1", vec![line("MUG", 3)]), "r1")
        .await
        .expect("reserve");
    assert_eq!(outcome.attempts, 2);
    assert_eq!(outcome.events[0].event_type, "inventory.reserved");
    assert_eq!(inventory.level("MUG").await.available, 2);
}

// Threads, so that one order's read and write can interleave with another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_for_different_skus_never_contend() {
    let store = Arc::new(InMemoryEventStore::new());
    let inventory = Arc::new(Inventory::new(store.clone(), 64));
    let skus: Vec<String> = (0..16).map(|i| format!("SKU-{i}")).collect();
    for sku in &skus {
        inventory.restock(sku, 100).await;
    }
    let mut tasks = Vec::new();
    for (i, sku) in skus.iter().enumerate() {
        let inventory = inventory.clone();
        let sku = sku.clone();
        tasks.push(tokio::spawn(async move {
            let mut attempts = Vec::new();
            for n in 0..10 {
                let order = format!("ord-{i}-{n}");
                let outcome = inventory
                    .run(reserve(&order, vec![line(&sku, 1)]), &order)
                    .await
                    .expect("reserve");
                attempts.push(outcome.attempts);
            }
            attempts
        }));
    }
    for task in tasks {
        assert!(task.await.expect("task").iter().all(|&a| a == 1));
    }
    for sku in &skus {
        let stream = StreamId::new("stock", sku.as_str());
        assert_eq!(store.load(&stream, 0).await.expect("load").len(), 11);
        assert_eq!(inventory.level(sku).await.reserved, 10);
    }
}

#[tokio::test]
async fn one_skus_reservations_in_a_batch_share_one_write_each_deciding_on_the_last() {
    let store = Arc::new(CountingStore::new(InMemoryEventStore::new()));
    let inventory = Inventory::new(store.clone(), 8);
    inventory.restock("MUG", 3).await;
    inventory.restock("TEE", 5).await;
    let writes_before = store.appends();
    let group = [
        (reserve("ord-1", vec![line("MUG", 2)]), "r1"),
        (reserve("ord-2", vec![line("MUG", 2)]), "r2"),
        (reserve("ord-3", vec![line("MUG", 1), line("TEE", 1)]), "r3"),
    ];
    let outcomes = inventory.run_all(&group).await;
    assert_eq!(
        store.appends(),
        writes_before + 1,
        "one write for the group"
    );
    let outcomes: Vec<_> = outcomes.into_iter().map(|o| o.expect("accepted")).collect();
    assert_eq!(
        event_types(&outcomes[0]),
        vec![
            ("inventory#ord-1".into(), "inventory.reserved".into()),
            ("stock#MUG".into(), "stock.held".into()),
        ]
    );
    // Decided on the stock the first left: one mug, not two.
    assert_eq!(
        event_types(&outcomes[1]),
        vec![(
            "inventory#ord-2".into(),
            "inventory.reservation_failed".into()
        )]
    );
    assert_eq!(outcomes[2].events.len(), 3);
    for (outcome, (_, key)) in outcomes.iter().zip(&group) {
        assert!(outcome.events.iter().all(|e| e.causation_id == *key));
    }
    let mug = store
        .inner()
        .load(&StreamId::new("stock", "MUG"), 0)
        .await
        .unwrap();
    assert_eq!(
        mug.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "the stream's events numbered on across the group"
    );
    assert_eq!(inventory.level("MUG").await.reserved, 3);
    assert_eq!(inventory.level("TEE").await.reserved, 1);

    // Redelivered, the group goes one by one and every command is a duplicate.
    let again = inventory.run_all(&group).await;
    assert!(again.iter().all(|o| o.as_ref().is_ok_and(|o| o.duplicate)));
    assert_eq!(inventory.level("MUG").await.reserved, 3);
    assert_eq!(inventory.level("TEE").await.reserved, 1);
}

#[tokio::test]
async fn a_refusal_in_a_group_sends_its_commands_one_by_one() {
    let store = Arc::new(CountingStore::new(InMemoryEventStore::new()));
    let inventory = Inventory::new(store.clone(), 8);
    inventory.restock("MUG", 5).await;
    inventory
        .run(reserve("ord-9", vec![line("MUG", 1)]), "r9")
        .await
        .expect("reserve ord-9");
    let group = [
        (reserve("ord-1", vec![line("MUG", 1)]), "r1"),
        // ord-9 holds one mug already: two is another reservation, refused.
        (reserve("ord-9", vec![line("MUG", 2)]), "r9-again"),
        (reserve("ord-2", vec![line("MUG", 1)]), "r2"),
    ];
    let writes_before = store.appends();
    let outcomes = inventory.run_all(&group).await;
    assert!(outcomes[0].as_ref().is_ok_and(|o| !o.duplicate));
    assert!(matches!(outcomes[1], Err(RepositoryError::Domain(_))));
    assert!(outcomes[2].as_ref().is_ok_and(|o| !o.duplicate));
    assert_eq!(
        store.appends(),
        writes_before + 2,
        "the two accepted, one by one"
    );
    assert_eq!(inventory.level("MUG").await.reserved, 3);
}
