//! Section 7, scale: how throughput grows with partitions.
//!
//! The whole flow in one process: the deployed handlers (the four services, the orchestrator,
//! analytics) and the relay, on the in-memory store and the in-process broker, at 1, 2, 4, 8
//! and 16 partitions per topic. Each function has one poller per partition, as an event source
//! mapping runs one invocation per partition at a time, and the relay one shard per partition,
//! as DynamoDB Streams has a shard per table partition. What AWS adds in time is modelled: a
//! wait per DynamoDB request and per Lambda invocation (stated in the output). The orders spread
//! over a catalogue of many SKUs, so no two orders share a stream but by chance: with no hot
//! aggregate, orders per second should grow with the partitions until this machine's CPU, which
//! runs everything, is the limit.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sagaflow_embedded::{BrokerConfig, InProcessBroker};
use sagaflow_eventsourcing::{
    AppendOutcome, AppendRequest, DueStream, EventStore, InMemoryEventStore, Snapshot, StoreError,
    StoredEvent, StreamId, Timestamp,
};
use sagaflow_handlers::clock::{self, WallClock};
use sagaflow_handlers::dead_letter::DeadLetterTopic;
use sagaflow_handlers::orchestrator::place_command;
use sagaflow_handlers::relay::{relay_changes, Change};
use sagaflow_handlers::{
    AnalyticsHandler, Intake, KafkaFunction, OrchestratorHandler, ServiceHandler, SERVICE_NAMES,
};
use sagaflow_lambda_kafka::{BatchConfig, DeadLetterSink, RecordHandler};
use sagaflow_orders::domain::{fixtures, CreateOrder, Flow, Money, OrderLine};
use sagaflow_orders::flow::intake::{Catalog, CatalogItem};
use sagaflow_orders::flow::FlowEnvelope;
use sagaflow_orders::flow::FlowServices;
use sagaflow_orders::projection::analytics::{
    AnalyticsStore, AnalyticsSummary, Applied, InMemoryAnalyticsStore, ReadModelError,
};
use sagaflow_records::{command_record, Publisher, Topics};
use serde_json::json;

use crate::end_to_end::EndToEndFigures;
use crate::settings::Settings;

/// What AWS adds in time, modelled as a wait.
#[derive(Clone, Copy)]
struct Model {
    /// A DynamoDB read (Query, GetItem, BatchGetItem).
    read: Duration,
    /// A DynamoDB write (TransactWriteItems, PutItem): a transaction is two phases.
    write: Duration,
    /// What a Lambda invocation adds to its batch's work: the mapping's poll and the invoke.
    invocation: Duration,
}

/// The model of the curve.
const AWS: Model = Model {
    read: Duration::from_millis(4),
    write: Duration::from_millis(10),
    invocation: Duration::from_millis(15),
};

/// No waiting at all: the flow runs as fast as this machine's CPUs do, its ceiling.
const NO_WAIT: Model = Model {
    read: Duration::ZERO,
    write: Duration::ZERO,
    invocation: Duration::ZERO,
};

/// Waits `time`, when there is any to wait.
async fn wait(time: Duration) {
    if !time.is_zero() {
        tokio::time::sleep(time).await;
    }
}
/// Records a batch holds at most (the template's `BatchSize`).
const BATCH_SIZE: usize = 100;
/// Partitions per topic, one point of the curve each.
const PARTITIONS: [usize; 5] = [1, 2, 4, 8, 16];
/// SKUs in the catalogue the orders spread over.
const SKUS: usize = 2_000;
/// Partitions of the hot-SKU curve, where every order holds the same SKU.
const HOT_PARTITIONS: [usize; 3] = [1, 4, 16];
/// Doubling the partitions must give at least this much more throughput to count as linear.
const LINEAR: f64 = 1.6;
/// The share of the machine's ceiling (the flow with no waiting, at the most partitions) at
/// which the CPU, not the model's waiting, is the limit.
const CPU_BOUND: f64 = 0.8;

/// One point of the curve.
struct Point {
    partitions: usize,
    orders_per_second: f64,
    /// CPU seconds the process used per wall second, over the run.
    cores_busy: f64,
    /// CPU seconds the process used per order.
    cpu_per_order: f64,
    invocations_per_order: f64,
    requests_per_order: f64,
    conflicts_per_order: f64,
}

/// Runs the section and prints its curve.
pub async fn run(settings: &Settings, measured: Option<&EndToEndFigures>) -> Result<(), String> {
    let orders = if settings.quick { 400 } else { 1_500 };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("\n7. Scale: orders/s against partitions per topic, the whole flow in one process");
    println!(
        "   model: DynamoDB {} ms a read, {} ms a write; Lambda {} ms an invocation; {BATCH_SIZE} records \
         a batch, {} key groups at once; {orders} orders over {SKUS} SKUs, half orchestrated, \
         one in ten declined; {cores} CPU(s) run every function",
        AWS.read.as_millis(),
        AWS.write.as_millis(),
        AWS.invocation.as_millis(),
        BatchConfig::default().max_concurrency,
    );
    let mut points: Vec<Point> = Vec::new();
    for partitions in PARTITIONS {
        let point = run_at(AWS, partitions, orders, SKUS).await?;
        let speedup = points.first().map_or(1.0, |first| {
            point.orders_per_second / first.orders_per_second
        });
        print_point(&point, &format!("x{speedup:<5.2}"), cores);
        points.push(point);
    }
    let ceiling = run_at(NO_WAIT, PARTITIONS[PARTITIONS.len() - 1], orders, SKUS).await?;
    print_point(&ceiling, "no wait", cores);
    print_bend(&points, &ceiling);
    let hot_orders = orders / 5;
    println!(
        "   one SKU in every order ({hot_orders} orders): every reservation, release and shipment \
         writes that SKU's one stream"
    );
    let mut hot: Vec<Point> = Vec::new();
    for partitions in HOT_PARTITIONS {
        let point = run_at(AWS, partitions, hot_orders, 1).await?;
        print_point(&point, "one SKU", cores);
        hot.push(point);
    }
    if let Some(best) = hot
        .iter()
        .max_by(|a, b| a.orders_per_second.total_cmp(&b.orders_per_second))
    {
        println!(
            "   a hot SKU caps the flow: at most {:.1} orders/s at any partition count, its stream \
             taking one reservation, release or shipment at a time ({:.2} conflicts an order at \
             {} partitions)",
            best.orders_per_second,
            hot.last().map_or(0.0, |p| p.conflicts_per_order),
            hot.last().map_or(0, |p| p.partitions),
        );
    }
    if let (Some(last), Some(measured)) = (points.last(), measured) {
        let requests: f64 = measured.requests_per_order.values().sum();
        println!(
            "   check against section 5 (the local servers): {:.1} requests and {:.1} invocations \
             an order measured there, {:.1} and {:.1} in this model",
            requests,
            measured.invocations_per_order,
            last.requests_per_order,
            last.invocations_per_order,
        );
    }
    Ok(())
}

fn print_point(point: &Point, label: &str, cores: usize) {
    println!(
        "   {:>2} partitions  {:>7.1} orders/s  {label:<7} CPU {:>4.0}% of {cores}, {:.2} ms an \
         order  {:.1} invocations, {:.1} requests, {:.2} conflicts an order",
        point.partitions,
        point.orders_per_second,
        100.0 * point.cores_busy / cores as f64,
        point.cpu_per_order * 1000.0,
        point.invocations_per_order,
        point.requests_per_order,
        point.conflicts_per_order,
    );
}

/// Says where doubling the partitions stops nearly doubling the throughput, and why: near the
/// rate of the flow with no waiting (`ceiling`), it is the CPU that the next partitions wait for.
fn print_bend(points: &[Point], ceiling: &Point) {
    let bend = points
        .windows(2)
        .find(|w| w[1].orders_per_second < LINEAR * w[0].orders_per_second);
    let linear_until = points
        .windows(2)
        .take_while(|w| w[1].orders_per_second >= LINEAR * w[0].orders_per_second)
        .count();
    let Some([before, after]) = bend else {
        println!(
            "   target: close to linear until the CPU is the limit: met, every doubling of the \
             partitions gave at least x{LINEAR} (no bend up to {} partitions)",
            points.last().map_or(0, |p| p.partitions)
        );
        return;
    };
    let share = after.orders_per_second / ceiling.orders_per_second;
    let why = if share >= CPU_BOUND {
        format!(
            "{:.0} orders/s is {:.0}% of the {:.0} the same flow ends with no waiting at all: \
             this machine's CPU, which runs every function, is the limit",
            after.orders_per_second,
            100.0 * share,
            ceiling.orders_per_second,
        )
    } else if after.conflicts_per_order > 0.5 {
        format!(
            "{:.2} conflicts an order: orders contend on shared streams",
            after.conflicts_per_order
        )
    } else {
        format!(
            "{:.0} orders/s is only {:.0}% of the {:.0} the flow ends with no waiting: the limit \
             is waiting the partitions do not hide, not the machine",
            after.orders_per_second,
            100.0 * share,
            ceiling.orders_per_second,
        )
    };
    println!(
        "   the curve bends from {} to {} partitions ({:.1} to {:.1} orders/s, x{:.2} for x2): \
         {why}",
        before.partitions,
        after.partitions,
        before.orders_per_second,
        after.orders_per_second,
        after.orders_per_second / before.orders_per_second,
    );
    println!(
        "   target: close to linear until the CPU is the limit: {} (linear up to {} partitions)",
        if share >= CPU_BOUND {
            "met"
        } else {
            "missed: the bend is not the CPU"
        },
        points[linear_until].partitions
    );
}

/// The whole flow at `partitions` partitions per topic: `orders` placed at once, timed until the
/// last one ended.
async fn run_at(
    model: Model,
    partitions: usize,
    orders: usize,
    skus: usize,
) -> Result<Point, String> {
    let store = Arc::new(ModelledStore::new(model));
    let analytics = Arc::new(ModelledAnalytics {
        inner: InMemoryAnalyticsStore::new(),
        requests: store.clone(),
    });
    let topics = Topics::new(format!("scale{partitions}"));
    let broker = Arc::new(InProcessBroker::new(
        BrokerConfig {
            partitions,
            batch_size: BATCH_SIZE,
            lost_commit_percent: 0,
            seed: 1,
        },
        Arc::new(WallClock),
        None,
    ));
    broker.create_topics(&topics.all());
    let publisher: Arc<dyn Publisher> = broker.clone();
    let dead_letters = DeadLetterTopic::new(publisher.clone(), topics.clone());
    let functions = functions(&store, &analytics, &broker, &topics, &dead_letters)?;
    // Stock is put in before the clock starts and without the modelled wait.
    let stockroom = FlowServices::new(store.inner.clone(), 50);
    for sku in 0..skus {
        stockroom
            .restock(&sku_name(sku), 1_000_000, Timestamp(1))
            .await
            .map_err(|e| e.to_string())?;
    }
    let restocked = store.inner.event_count();

    let stop = Arc::new(AtomicBool::new(false));
    let invocations = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (name, function) in functions {
        for partition in 0..partitions {
            tasks.spawn(poller(
                broker.clone(),
                name.clone(),
                partition,
                function.clone(),
                (model.invocation, stop.clone(), invocations.clone()),
            ));
        }
    }
    let shards = relay_shards(
        &mut tasks,
        partitions,
        (publisher.clone(), dead_letters, topics.clone()),
        (model.invocation, invocations.clone()),
    );
    tasks.spawn(change_feed(
        store.inner.clone(),
        restocked,
        shards,
        (stop.clone(), finished.clone()),
    ));

    let started = Instant::now();
    for n in 0..orders {
        let command = place_command(&order(partitions, n, skus), "scale", clock::now())
            .map_err(|e| e.to_string())?;
        publisher
            .publish(&[command_record(&topics, &command)])
            .await
            .map_err(|e| e.to_string())?;
    }
    // Measured between a tenth and nine tenths of the orders ended: the flow's steady state,
    // without the pipeline filling at the start and draining at the end, which would weigh
    // more in the shorter runs of more partitions.
    let (from, to) = (orders / 10, orders - orders / 10);
    let mut window: [Option<Sample>; 2] = [None, None];
    let mut last = (0, Instant::now());
    while window[1].is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let done = finished.load(Ordering::SeqCst);
        for (slot, mark) in window.iter_mut().zip([from, to]) {
            if slot.is_none() && done >= mark {
                *slot = Some(Sample::now(done, &store, &invocations));
            }
        }
        if done != last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            stop.store(true, Ordering::SeqCst);
            return Err(format!(
                "{partitions} partitions: {done} of {orders} orders ended; stalled for a minute"
            ));
        }
    }
    while finished.load(Ordering::SeqCst) < orders {
        if started.elapsed() > Duration::from_secs(600) {
            stop.store(true, Ordering::SeqCst);
            return Err(format!(
                "{partitions} partitions: the last orders never ended"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    while tasks.join_next().await.is_some() {}
    let [Some(first), Some(last)] = window else {
        return Err("the measuring window never closed".into());
    };
    let ended = (last.ended - first.ended) as f64;
    let wall = last
        .at
        .duration_since(first.at)
        .as_secs_f64()
        .max(f64::EPSILON);
    let cpu = last.cpu - first.cpu;
    let per_order = |n: u64| n as f64 / ended;
    Ok(Point {
        partitions,
        orders_per_second: ended / wall,
        cores_busy: cpu / wall,
        cpu_per_order: cpu / ended,
        invocations_per_order: per_order(last.invocations - first.invocations),
        requests_per_order: per_order(last.requests - first.requests),
        conflicts_per_order: per_order(last.conflicts - first.conflicts),
    })
}

/// The counters at one moment of a run.
struct Sample {
    at: Instant,
    ended: usize,
    cpu: f64,
    invocations: u64,
    requests: u64,
    conflicts: u64,
}

impl Sample {
    fn now(ended: usize, store: &ModelledStore, invocations: &AtomicU64) -> Self {
        let (reads, writes, conflicts) = store.counts();
        Self {
            at: Instant::now(),
            ended,
            cpu: cpu_seconds(),
            invocations: invocations.load(Ordering::SeqCst),
            requests: reads + writes,
            conflicts,
        }
    }
}

type Function = (String, Arc<KafkaFunction>);

/// Every Kafka-triggered function over the modelled stores, each subscribed to its topics.
fn functions(
    store: &Arc<ModelledStore>,
    analytics: &Arc<ModelledAnalytics>,
    broker: &InProcessBroker,
    topics: &Topics,
    dead_letters: &DeadLetterTopic,
) -> Result<Vec<Function>, String> {
    let intake = Intake::new(Arc::new(catalog())).map_err(|e| e.to_string())?;
    let sink: Arc<dyn DeadLetterSink> = Arc::new(dead_letters.clone());
    let mut handlers: Vec<(String, Vec<String>, Arc<dyn RecordHandler>)> = Vec::new();
    for service in SERVICE_NAMES {
        let handler = ServiceHandler::new(service, store.clone(), topics.clone())
            .map_err(|e| e.to_string())?
            .with_intake(intake.clone());
        handlers.push((service.into(), handler.subscriptions(), Arc::new(handler)));
    }
    let orchestrator = OrchestratorHandler::new(store.clone(), topics.clone())
        .map_err(|e| e.to_string())?
        .with_intake(intake);
    handlers.push((
        "orchestrator".into(),
        orchestrator.subscriptions(),
        Arc::new(orchestrator),
    ));
    let analytics = AnalyticsHandler::new(analytics.clone(), topics.clone());
    handlers.push((
        "analytics".into(),
        analytics.subscriptions(),
        Arc::new(analytics),
    ));
    let mut functions = Vec::new();
    for (name, subscriptions, handler) in handlers {
        broker
            .subscribe(&name, &subscriptions)
            .map_err(|e| e.to_string())?;
        let function = KafkaFunction::new(handler, sink.clone(), BatchConfig::default());
        functions.push((name, Arc::new(function)));
    }
    Ok(functions)
}

/// One partition's poller of one function: takes a batch, waits an invocation's overhead,
/// runs the function on it and commits what it answered.
async fn poller(
    broker: Arc<InProcessBroker>,
    group: String,
    partition: usize,
    function: Arc<KafkaFunction>,
    (invocation, stop, invocations): (Duration, Arc<AtomicBool>, Arc<AtomicU64>),
) {
    // An idle poller backs off, so a hundred of them waiting do not take the CPU they measure.
    let mut idle = Duration::from_millis(1);
    while !stop.load(Ordering::SeqCst) {
        match broker.poll_partition(&group, partition) {
            Ok(Some(polled)) => {
                idle = Duration::from_millis(1);
                wait(invocation).await;
                let result = function.handle_batch(&polled.event).await;
                broker.complete(&polled, &result.response);
                invocations.fetch_add(1, Ordering::SeqCst);
            }
            Ok(None) => {
                tokio::time::sleep(idle).await;
                idle = (idle * 2).min(Duration::from_millis(20));
            }
            Err(e) => {
                eprintln!("scale: {group} cannot poll: {e}");
                return;
            }
        }
    }
}

type RelayOutput = (Arc<dyn Publisher>, DeadLetterTopic, Topics);

/// The relay's shards, one task each: a shard relays the changes of its streams in batches,
/// each an invocation. Returns the senders the change feed hands them their changes on.
fn relay_shards(
    tasks: &mut tokio::task::JoinSet<()>,
    shards: usize,
    (publisher, dead_letters, topics): RelayOutput,
    (invocation, invocations): (Duration, Arc<AtomicU64>),
) -> Vec<tokio::sync::mpsc::UnboundedSender<Change>> {
    (0..shards)
        .map(|_| {
            let (send, mut receive) = tokio::sync::mpsc::unbounded_channel::<Change>();
            let (publisher, dead_letters, topics) =
                (publisher.clone(), dead_letters.clone(), topics.clone());
            let invocations = invocations.clone();
            tasks.spawn(async move {
                while let Some(first) = receive.recv().await {
                    let mut changes = vec![first];
                    while changes.len() < BATCH_SIZE {
                        match receive.try_recv() {
                            Ok(change) => changes.push(change),
                            Err(_) => break,
                        }
                    }
                    wait(invocation).await;
                    let outcome =
                        relay_changes(publisher.as_ref(), &dead_letters, &topics, changes).await;
                    invocations.fetch_add(1, Ordering::SeqCst);
                    if let Some(position) = outcome.failed_at {
                        eprintln!("scale: the relay stopped at {position}");
                        return;
                    }
                }
            });
            send
        })
        .collect()
}

/// The store's change feed split by stream over the relay's shards, as DynamoDB Streams splits
/// a table's changes; counts the orders that ended on the way.
async fn change_feed(
    store: Arc<InMemoryEventStore>,
    from: usize,
    shards: Vec<tokio::sync::mpsc::UnboundedSender<Change>>,
    (stop, finished): (Arc<AtomicBool>, Arc<AtomicUsize>),
) {
    let mut position = from;
    while !stop.load(Ordering::SeqCst) {
        let events = store.events_since(position);
        if events.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        for event in events {
            if event.aggregate_type == "order"
                && matches!(
                    event.event_type.as_str(),
                    "order.completed" | "order.cancelled"
                )
            {
                finished.fetch_add(1, Ordering::SeqCst);
            }
            let mut hash = DefaultHasher::new();
            event.stream_id().hash(&mut hash);
            let shard = (hash.finish() % shards.len() as u64) as usize;
            let change = Change {
                position: position.to_string(),
                origin: json!({ "source": "scale", "position": position }),
                event: Ok(Some(event)),
            };
            position += 1;
            if shards[shard].send(change).is_err() {
                return;
            }
        }
    }
}

fn sku_name(n: usize) -> String {
    format!("SKU-{n:05}")
}

/// Every SKU at one price, so intake accepts the orders' quotes.
fn catalog() -> Catalog {
    Catalog {
        items: (0..SKUS)
            .map(|n| {
                let item = CatalogItem {
                    name: format!("Product {n}"),
                    unit_price: Money::eur(1_000),
                };
                (sku_name(n), item)
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Order `n` of the run: one or two of the first `skus` SKUs picked by a hash of `n`, half
/// orchestrated, half choreographed, one in ten declined.
fn order(run: usize, n: usize, skus: usize) -> CreateOrder {
    let pick = |salt: usize| {
        let mut hash = DefaultHasher::new();
        (n, salt).hash(&mut hash);
        sku_name((hash.finish() % skus as u64) as usize)
    };
    let mut lines = vec![OrderLine {
        sku: pick(0),
        quantity: 1 + (n % 3) as u32,
        unit_price: Money::eur(1_000),
    }];
    if n.is_multiple_of(4) {
        lines.push(OrderLine {
            sku: pick(1),
            quantity: 1,
            unit_price: Money::eur(1_000),
        });
    }
    lines.dedup_by(|a, b| a.sku == b.sku);
    CreateOrder {
        order_id: format!("scale{run}-{n:06}"),
        customer_id: format!("cust-{}", n % 97),
        lines,
        payment_method: if n % 10 == 9 {
            "card-declined".into()
        } else {
            "card-ok".into()
        },
        shipping_address: fixtures::address(),
        flow: if n.is_multiple_of(2) {
            Flow::Orchestrated
        } else {
            Flow::Choreographed
        },
    }
}

/// CPU seconds (user and system) this process has used, from `/proc/self/stat` (at the
/// kernel's usual 100 ticks a second); 0 where there is none.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are the 14th and 15th fields: the 12th and 13th after the name.
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => 0.0,
    }
}

/// The in-memory event store with each request taking DynamoDB's modelled time.
struct ModelledStore {
    inner: Arc<InMemoryEventStore>,
    model: Model,
    reads: AtomicU64,
    writes: AtomicU64,
    conflicts: AtomicU64,
}

impl ModelledStore {
    fn new(model: Model) -> Self {
        Self {
            inner: Arc::new(InMemoryEventStore::new()),
            model,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
        }
    }

    async fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        wait(self.model.read).await;
    }

    async fn write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        wait(self.model.write).await;
    }

    fn counts(&self) -> (u64, u64, u64) {
        (
            self.reads.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
            self.conflicts.load(Ordering::Relaxed),
        )
    }

    fn noted(
        &self,
        outcome: Result<AppendOutcome, StoreError>,
    ) -> Result<AppendOutcome, StoreError> {
        if let Err(StoreError::Conflict { .. }) = outcome {
            self.conflicts.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }
}

impl EventStore for ModelledStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.write().await;
        let outcome = self.inner.append(request).await;
        self.noted(outcome)
    }

    async fn append_together(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<AppendOutcome, StoreError> {
        self.write().await;
        let outcome = self.inner.append_together(requests).await;
        self.noted(outcome)
    }

    async fn load(&self, stream: &StreamId, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        self.read().await;
        self.inner.load(stream, after).await
    }

    async fn visit<E, F>(
        &self,
        stream: &StreamId,
        after_version: u64,
        visit: F,
    ) -> Result<Result<(), E>, StoreError>
    where
        E: Send,
        F: FnMut(&StoredEvent) -> Result<(), E> + Send,
    {
        self.read().await;
        self.inner.visit(stream, after_version, visit).await
    }

    async fn is_processed(&self, key: &str) -> Result<bool, StoreError> {
        self.read().await;
        self.inner.is_processed(key).await
    }

    // One Query on DynamoDB reads the snapshot and the events after it.
    async fn load_latest(
        &self,
        stream: &StreamId,
        tail_hint: u64,
    ) -> Result<(Option<Snapshot>, Vec<StoredEvent>), StoreError> {
        self.read().await;
        self.inner.load_latest(stream, tail_hint).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.read().await;
        self.inner.load_snapshot(stream).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.write().await;
        self.inner.save_snapshot(snapshot).await
    }

    async fn due(
        &self,
        aggregate_type: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueStream>, StoreError> {
        self.read().await;
        self.inner.due(aggregate_type, now, limit).await
    }
}

/// The in-memory analytics read model with DynamoDB's requests modelled as the DynamoDB read
/// model makes them: per stream's run of events, a read (the summary shard) and a transaction.
struct ModelledAnalytics {
    inner: InMemoryAnalyticsStore,
    requests: Arc<ModelledStore>,
}

impl ModelledAnalytics {
    async fn stream_runs(&self, runs: usize) {
        for _ in 0..runs {
            self.requests.read().await;
            self.requests.write().await;
        }
    }
}

impl AnalyticsStore for ModelledAnalytics {
    async fn apply(&self, event: &FlowEnvelope) -> Result<Applied, ReadModelError> {
        self.stream_runs(1).await;
        self.inner.apply(event).await
    }

    async fn apply_run(&self, run: &[FlowEnvelope]) -> Result<Vec<Applied>, ReadModelError> {
        let streams = run.chunk_by(|a, b| a.stream_id() == b.stream_id()).count();
        self.stream_runs(streams).await;
        self.inner.apply_run(run).await
    }

    async fn summary(&self) -> Result<AnalyticsSummary, ReadModelError> {
        self.requests.read().await;
        self.inner.summary().await
    }
}
