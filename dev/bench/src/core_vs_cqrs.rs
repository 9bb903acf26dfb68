//! Section 1, core against cqrs-es: sagaflow's warehouse aggregate handled by
//! `sagaflow_eventsourcing::Repository` over `InMemoryEventStore`, and the same aggregate
//! (`cqrs_stock.rs`) handled by cqrs-es's `CqrsFramework`, in the same process run: commands
//! per second over a mix of many warehouses, and events applied per second when loading
//! streams of 10, 100 and 10,000 events.
//!
//! cqrs-es runs on two stores. Its `MemStore` (copied without its printing) keeps typed events,
//! so a load decodes nothing; its `PersistedEventStore`, which dynamo-es and postgres-es build
//! on, keeps JSON as sagaflow's in-memory store does. The target is judged against `MemStore`,
//! the faster of the two and the one cqrs-es ships for memory.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateError, CqrsFramework, EventStore as CqrsEventStore};
use sagaflow_eventsourcing::event::envelope_events;
use sagaflow_eventsourcing::Aggregate as _;
use sagaflow_eventsourcing::AppendRequest;
use sagaflow_eventsourcing::CommandMeta;
use sagaflow_eventsourcing::EventStore as _;
use sagaflow_eventsourcing::InMemoryEventStore;
use sagaflow_eventsourcing::Repository;
use sagaflow_eventsourcing::RepositoryError;
use sagaflow_eventsourcing::Timestamp;
use sagaflow_eventsourcing::Wake;
use sagaflow_orders::domain::types::StockLine;
use sagaflow_orders::testkit::warehouse::{Warehouse, WarehouseCommand, WarehouseEvent};

use crate::cqrs_stock::{CqrsWarehouse, JsonMemRepository, QuietMemStore, StockEvent};
use crate::settings::Settings;
use crate::stats::median;

/// The cqrs-es release measured (what dev/bench/Cargo.toml resolves `cqrs-es = "0.5"` to).
const CQRS_ES: &str = "cqrs-es 0.5.0";

/// The target issue 6 sets: sagaflow handles at least this many times cqrs-es's commands/s.
const TARGET: f64 = 2.0;
/// Rehydration must be at least as fast as cqrs-es's typed in-memory store (issue 18).
const REHYDRATION_TARGET: f64 = 1.0;

/// Commands each warehouse receives in the mix: its stream ends a few dozen events long.
const COMMANDS_PER_WAREHOUSE: usize = 40;

/// Stream lengths loaded for the rehydration figures.
const STREAM_LENGTHS: [usize; 3] = [10, 100, 10_000];

/// SKUs a warehouse stocks; the last ones are only restocked later, so early orders for
/// them fail as unknown, as a saga would see.
const SKUS: [&str; 6] = [
    "MUG-001", "TEE-002", "HAT-003", "BAG-004", "CAP-005", "PIN-006",
];

/// Loads in every rehydration sample however long they take, so a 10,000-event stream on a
/// slow machine is still timed over more than one load.
const MIN_LOADS: usize = 3;

/// How much to measure.
struct Plan {
    samples: usize,
    warehouses: usize,
    /// How long each rehydration sample keeps loading: a time, not a count, so the section
    /// stays within its budget on a slow or busy machine.
    load_for: Duration,
}

impl Plan {
    fn new(settings: &Settings) -> Self {
        if settings.quick {
            Self {
                samples: 3,
                warehouses: 120,
                load_for: Duration::from_millis(120),
            }
        } else {
            Self {
                samples: 7,
                warehouses: 300,
                load_for: Duration::from_millis(250),
            }
        }
    }
}

/// Runs the section and prints its table.
pub async fn run(settings: &Settings) {
    let started = Instant::now();
    let load_at_start = load_average();
    let plan = Plan::new(settings);
    println!(
        "\n1. Core against {CQRS_ES} (in-memory stores, medians of {} samples)",
        plan.samples
    );

    let mix = Mix::new(plan.warehouses, COMMANDS_PER_WAREHOUSE);
    // Also the warm-up: every contender runs the whole mix once before anything is timed.
    let agreement = verify(&mix).await;

    let mut rows = Vec::new();
    let mut sagaflow = Vec::new();
    let mut uncached = Vec::new();
    let mut mem = Vec::new();
    let mut json = Vec::new();
    for _ in 0..plan.samples {
        sagaflow.push(sagaflow_commands(&mix, true).await);
        uncached.push(sagaflow_commands(&mix, false).await);
        mem.push(cqrs_commands(QuietMemStore::<CqrsWarehouse>::default(), &mix).await);
        json.push(cqrs_commands(json_store(JsonMemRepository::default()), &mix).await);
    }
    let commands = Row::new(
        "commands/s (stock mix)",
        sagaflow,
        mem.clone(),
        json.clone(),
    );
    let target = commands.target_line();
    rows.push(commands);
    rows.push(Row::new(
        "  same, sagaflow without state cache",
        uncached,
        mem,
        json,
    ));
    let first_rehydration = rows.len();
    for length in STREAM_LENGTHS {
        rows.push(rehydration(length, &plan).await);
    }
    let rehydration_target = rehydration_target_line(&rows[first_rehydration..]);

    print_table(&rows);
    note(&target);
    note(&rehydration_target);
    match agreement {
        Ok(()) => note(&format!(
            "checked: all three end each of the {} warehouses in the same state, with the same \
             number of events",
            mix.warehouses.len()
        )),
        Err(e) => note(&format!(
            "CHECK FAILED, the figures may compare different work: {e}"
        )),
    }
    for row in &rows {
        let figures = [
            ("sagaflow", &row.sagaflow),
            ("MemStore", &row.mem),
            ("JSON store", &row.json),
        ];
        for (name, figure) in figures {
            if let Err(e) = figure {
                note(&format!("{}: {name} failed: {e}", row.label));
            }
        }
    }
    note(&format!(
        "mix: {} warehouses x {COMMANDS_PER_WAREHOUSE} commands sent round-robin ({} in all), \
         streams end at {:.0} events on average; about 40% reserve (1 to 3 lines, some out of \
         stock or of an unknown SKU), 25% ship, 10% release, 13% restock, 6% a reserve sent \
         again and 3% a ship of an order never reserved (no event), 3% invalid (refused)",
        mix.warehouses.len(),
        thousands(mix.commands.len() as f64),
        mix.events as f64 / mix.warehouses.len() as f64
    ));
    note(&format!(
        "rehydrate: sagaflow Repository::load and cqrs-es EventStore::load_aggregate of seeded \
         streams (64 of 10 and of 100 events, 2 of 10,000), loading for {} ms per sample",
        plan.load_for.as_millis()
    ));
    note(
        "* cqrs-es's MemStore copied without the println! it makes on every load and every \
         commit (dev/bench/src/cqrs_stock.rs); it keeps typed events, so a load decodes no JSON, \
         and it copies the whole stream on each commit",
    );
    note(
        "** cqrs-es's PersistedEventStore, which dynamo-es and postgres-es build on, over an \
         in-memory repository keeping events as JSON, as sagaflow's in-memory store does",
    );
    note(
        "commands/s: sagaflow as its functions run it, with the state cache \
         (Repository::with_state_cache): a command to an aggregate it wrote last is decided on \
         the state it kept, and the append's expected version still guards it; the next row \
         reads and replays the stream on every command, as cqrs-es does",
    );
    note(
        "both stamp correlation id, causation id and time on every event; sagaflow also \
         records and checks an idempotency key per command, checks the expected version and \
         derives a UUIDv5 id per event, none of which MemStore does (cqrs-es has no \
         idempotency key to record)",
    );
    if let Some(load) = load_at_start {
        // Other work on the machine slows both sides, though not always equally.
        note(&format!(
            "load average (1 min) when the section started: {load}"
        ));
    }
    note(&format!(
        "(section took {:.1} s)",
        started.elapsed().as_secs_f64()
    ));
}

/// Prints `text` under the table, wrapped to the report's width.
fn note(text: &str) {
    const WIDTH: usize = 100;
    let mut line = String::from(" ");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > WIDTH && line.trim().len() > 1 {
            println!("{line}");
            line = String::from("   ");
        }
        line.push(' ');
        line.push_str(word);
    }
    println!("{line}");
}

/// The one-minute load average, where /proc has one.
fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|line| line.split_whitespace().next().map(str::to_string))
}

/// One printed figure for the three contenders.
struct Row {
    label: String,
    sagaflow: Result<f64, String>,
    mem: Result<f64, String>,
    json: Result<f64, String>,
}

impl Row {
    fn new(
        label: impl Into<String>,
        sagaflow: Vec<Result<f64, String>>,
        mem: Vec<Result<f64, String>>,
        json: Vec<Result<f64, String>>,
    ) -> Self {
        Self {
            label: label.into(),
            sagaflow: median_of(sagaflow),
            mem: median_of(mem),
            json: median_of(json),
        }
    }

    fn target_line(&self) -> String {
        let (Ok(ours), Ok(theirs)) = (&self.sagaflow, &self.mem) else {
            return format!("target: core >= {TARGET}x cqrs-es commands/s: not measured");
        };
        let ratio = ours / theirs;
        if ratio >= TARGET {
            format!("target: core >= {TARGET}x cqrs-es commands/s: met ({ratio:.2}x)")
        } else {
            format!(
                "target: core >= {TARGET}x cqrs-es commands/s: missed by {:.2}x (sagaflow \
                 handles {ratio:.2}x cqrs-es MemStore's commands/s; it would have to be {:.2}x \
                 faster to reach {TARGET}x)",
                TARGET / ratio,
                TARGET / ratio
            )
        }
    }
}

/// Rehydration against its target: at least cqrs-es `MemStore`'s events per second at every
/// stream length, or by how much the slowest length misses it.
fn rehydration_target_line(rows: &[Row]) -> String {
    let what =
        format!("target: rehydration >= {REHYDRATION_TARGET}x cqrs-es MemStore at every length");
    let mut ratios = Vec::with_capacity(rows.len());
    for row in rows {
        let (Ok(ours), Ok(theirs)) = (&row.sagaflow, &row.mem) else {
            return format!("{what}: not measured ({})", row.label);
        };
        ratios.push((
            row.label.trim_start_matches("rehydrate ").to_string(),
            ours / theirs,
        ));
    }
    let listed: Vec<String> = ratios
        .iter()
        .map(|(label, r)| format!("{} {r:.2}x", label.trim_end_matches(", events/s")))
        .collect();
    let slowest = ratios.iter().map(|(_, r)| *r).fold(f64::INFINITY, f64::min);
    if slowest >= REHYDRATION_TARGET {
        format!("{what}: met ({})", listed.join(", "))
    } else {
        format!(
            "{what}: missed by {:.2}x at the slowest ({})",
            REHYDRATION_TARGET / slowest,
            listed.join(", ")
        )
    }
}

/// The median of the samples, or the first error if any sample failed.
fn median_of(samples: Vec<Result<f64, String>>) -> Result<f64, String> {
    let values = samples.into_iter().collect::<Result<Vec<f64>, String>>()?;
    Ok(median(&values))
}

fn print_table(rows: &[Row]) {
    println!(
        "  {:<34} {:>11} {:>11} {:>11} {:>13} {:>11}",
        "", "sagaflow", "cqrs-es", "sagaflow/", "cqrs-es", "sagaflow/"
    );
    println!(
        "  {:<34} {:>11} {:>11} {:>11} {:>13} {:>11}",
        "", "", "MemStore*", "MemStore", "JSON store**", "JSON store"
    );
    let cell = |figure: &Result<f64, String>| match figure {
        Ok(value) => thousands(*value),
        Err(_) => "error".to_string(),
    };
    let ratio = |ours: &Result<f64, String>, theirs: &Result<f64, String>| match (ours, theirs) {
        (Ok(ours), Ok(theirs)) if *theirs > 0.0 => format!("{:.2}x", ours / theirs),
        _ => "-".to_string(),
    };
    for row in rows {
        println!(
            "  {:<34} {:>11} {:>11} {:>11} {:>13} {:>11}",
            row.label,
            cell(&row.sagaflow),
            cell(&row.mem),
            ratio(&row.sagaflow, &row.mem),
            cell(&row.json),
            ratio(&row.sagaflow, &row.json),
        );
    }
}

/// `1234567.8` as `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A small deterministic generator (SplitMix64): the same mix on every run and every side.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn sku(&mut self) -> String {
        SKUS[self.below(SKUS.len())].to_string()
    }
}

/// One warehouse's traffic, decided as it is generated on sagaflow's own `Warehouse`, so the
/// script knows which orders are open and what the stream should end as.
struct Script {
    warehouse: usize,
    rng: Rng,
    state: Warehouse,
    commands: Vec<WarehouseCommand>,
    events: Vec<WarehouseEvent>,
    refusals: usize,
}

impl Script {
    fn new(warehouse: usize) -> Self {
        Self {
            warehouse,
            rng: Rng(0x5a6a_f10e ^ (warehouse as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            state: Warehouse::default(),
            commands: Vec::new(),
            events: Vec::new(),
            refusals: 0,
        }
    }

    fn reserve(&mut self) -> WarehouseCommand {
        let lines = (0..1 + self.rng.below(3))
            .map(|_| StockLine {
                sku: self.rng.sku(),
                quantity: 1 + self.rng.below(4) as u32,
            })
            .collect();
        WarehouseCommand::Reserve {
            order_id: format!("ord-{:04}-{:06}", self.warehouse, self.commands.len()),
            lines,
        }
    }

    /// An open order: the oldest when `oldest`, else one at random.
    fn open_order(&mut self, oldest: bool) -> Option<(String, Vec<StockLine>)> {
        let open = self.state.reservations.len();
        let pick = if oldest { 0 } else { self.rng.below(open) };
        self.state
            .reservations
            .iter()
            .nth(pick)
            .map(|(order, lines)| (order.clone(), lines.clone()))
    }

    fn next_command(&mut self) -> WarehouseCommand {
        let n = self.commands.len();
        if n < 3 {
            return WarehouseCommand::Restock {
                sku: SKUS[n].to_string(),
                quantity: 30 + self.rng.below(31) as u32,
            };
        }
        match self.rng.below(100) {
            0..=39 => self.reserve(),
            40..=64 => match self.open_order(true) {
                Some((order_id, _)) => WarehouseCommand::Ship { order_id },
                None => self.reserve(),
            },
            65..=74 => match self.open_order(false) {
                Some((order_id, _)) => WarehouseCommand::Release {
                    order_id,
                    reason: "payment declined".to_string(),
                },
                None => self.reserve(),
            },
            75..=87 => WarehouseCommand::Restock {
                sku: self.rng.sku(),
                quantity: 10 + self.rng.below(31) as u32,
            },
            88..=93 => match self.open_order(false) {
                Some((order_id, lines)) => WarehouseCommand::Reserve { order_id, lines },
                None => self.reserve(),
            },
            94..=96 => WarehouseCommand::Ship {
                order_id: format!("ord-{:04}-never", self.warehouse),
            },
            _ => WarehouseCommand::Reserve {
                order_id: format!("ord-{:04}-{n:06}", self.warehouse),
                lines: vec![StockLine {
                    sku: self.rng.sku(),
                    quantity: 0,
                }],
            },
        }
    }

    fn step(&mut self) {
        let command = self.next_command();
        match self.state.decide(&command) {
            Ok(events) => {
                for event in &events {
                    self.state.apply(event);
                }
                self.events.extend(events);
            }
            Err(_) => self.refusals += 1,
        }
        self.commands.push(command);
    }

    /// The first `length` events of this warehouse's traffic.
    fn events(warehouse: usize, length: usize) -> Vec<WarehouseEvent> {
        let mut script = Self::new(warehouse);
        while script.events.len() < length {
            script.step();
        }
        script.events.truncate(length);
        script.events
    }
}

/// The command mix: every warehouse's script, sent round-robin so all streams grow together.
struct Mix {
    warehouses: Vec<String>,
    /// Per warehouse, the state and the events the script ends with.
    expected: Vec<(Warehouse, Vec<WarehouseEvent>)>,
    commands: Vec<(String, WarehouseCommand, CommandMeta)>,
    refusals: usize,
    events: usize,
}

impl Mix {
    fn new(warehouses: usize, per_warehouse: usize) -> Self {
        let mut scripts: Vec<Script> = (0..warehouses).map(Script::new).collect();
        for script in &mut scripts {
            for _ in 0..per_warehouse {
                script.step();
            }
        }
        let ids: Vec<String> = (0..warehouses).map(|w| format!("wh-{w:04}")).collect();
        let mut commands = Vec::with_capacity(warehouses * per_warehouse);
        for i in 0..per_warehouse {
            for (w, script) in scripts.iter().enumerate() {
                let (Some(id), Some(command)) = (ids.get(w), script.commands.get(i)) else {
                    continue;
                };
                let message = format!("{:016x}-{w:04}-{i:04}", script.warehouse as u64 * 7919);
                let meta = CommandMeta::new(
                    format!("corr-{w:04}-{:04}", i / 4),
                    format!("msg-{message}"),
                    Timestamp::from_millis(1_750_000_000_000 + i as i64),
                )
                .with_idempotency_key(format!("command:{message}"));
                commands.push((id.clone(), command.clone(), meta));
            }
        }
        Self {
            refusals: scripts.iter().map(|s| s.refusals).sum(),
            events: scripts.iter().map(|s| s.events.len()).sum(),
            expected: scripts.into_iter().map(|s| (s.state, s.events)).collect(),
            warehouses: ids,
            commands,
        }
    }

    /// The commands as cqrs-es takes them: owned, with the same metadata sagaflow stamps on
    /// each event (correlation, causation, time) as cqrs-es's string map.
    fn for_cqrs(&self) -> Vec<(String, WarehouseCommand, HashMap<String, String>)> {
        self.commands
            .iter()
            .map(|(id, command, meta)| (id.clone(), command.clone(), cqrs_metadata(meta)))
            .collect()
    }
}

fn cqrs_metadata(meta: &CommandMeta) -> HashMap<String, String> {
    HashMap::from([
        ("correlation_id".to_string(), meta.correlation_id.clone()),
        ("causation_id".to_string(), meta.causation_id.clone()),
        ("occurred_at".to_string(), meta.now.as_millis().to_string()),
    ])
}

type SagaflowRepository = Repository<Warehouse, InMemoryEventStore>;

/// sagaflow's repository; `cached` as the functions run it (`FlowServices` keeps states
/// between commands), or reading every stream on every command.
fn sagaflow_repository(cached: bool) -> SagaflowRepository {
    let repository = Repository::new(Arc::new(InMemoryEventStore::new()));
    if cached {
        repository.with_state_cache(sagaflow_orders::flow::services::STATE_CACHE_ENTRIES)
    } else {
        repository
    }
}

fn json_store(
    repository: JsonMemRepository,
) -> PersistedEventStore<JsonMemRepository, CqrsWarehouse> {
    PersistedEventStore::new_event_store(repository)
}

/// Sends the whole mix through sagaflow; the time it took.
async fn run_sagaflow(repository: &SagaflowRepository, mix: &Mix) -> Result<Duration, String> {
    let mut refused = 0;
    let started = Instant::now();
    for (id, command, meta) in &mix.commands {
        match repository.execute(id, command, meta).await {
            Ok(outcome) => {
                black_box(outcome);
            }
            Err(RepositoryError::Domain(_)) => refused += 1,
            Err(e) => return Err(format!("{id}: {e}")),
        }
    }
    let took = started.elapsed();
    if refused != mix.refusals {
        return Err(format!(
            "refused {refused} commands, the script refused {}",
            mix.refusals
        ));
    }
    Ok(took)
}

/// Sends the whole mix through cqrs-es on `store`; the time it took.
async fn run_cqrs<S: CqrsEventStore<CqrsWarehouse>>(
    store: S,
    mix: &Mix,
) -> Result<Duration, String> {
    let framework = CqrsFramework::new(store, vec![], ());
    let commands = mix.for_cqrs();
    let mut refused = 0;
    let started = Instant::now();
    for (id, command, metadata) in commands {
        match framework
            .execute_with_metadata(&id, command, metadata)
            .await
        {
            Ok(()) => {}
            Err(AggregateError::UserError(_)) => refused += 1,
            Err(e) => return Err(format!("{id}: {e}")),
        }
    }
    let took = started.elapsed();
    if refused != mix.refusals {
        return Err(format!(
            "refused {refused} commands, the script refused {}",
            mix.refusals
        ));
    }
    Ok(took)
}

fn per_second(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64().max(f64::MIN_POSITIVE)
}

async fn sagaflow_commands(mix: &Mix, cached: bool) -> Result<f64, String> {
    let repository = sagaflow_repository(cached);
    let took = run_sagaflow(&repository, mix).await?;
    Ok(per_second(mix.commands.len(), took))
}

async fn cqrs_commands<S: CqrsEventStore<CqrsWarehouse>>(
    store: S,
    mix: &Mix,
) -> Result<f64, String> {
    let took = run_cqrs(store, mix).await?;
    Ok(per_second(mix.commands.len(), took))
}

/// Runs the mix on all three and checks each warehouse ends in the script's state with the
/// script's number of events, so the figures compare the same work.
async fn verify(mix: &Mix) -> Result<(), String> {
    let sagaflow = sagaflow_repository(true);
    let mem = QuietMemStore::<CqrsWarehouse>::default();
    let json = JsonMemRepository::default();
    run_sagaflow(&sagaflow, mix)
        .await
        .map_err(|e| format!("sagaflow: {e}"))?;
    run_cqrs(mem.clone(), mix)
        .await
        .map_err(|e| format!("MemStore: {e}"))?;
    run_cqrs(json_store(json.clone()), mix)
        .await
        .map_err(|e| format!("JSON store: {e}"))?;
    let json = json_store(json);
    for (id, (state, events)) in mix.warehouses.iter().zip(&mix.expected) {
        let stream = SagaflowRepository::stream_id(id);
        let ours = sagaflow.load(id).await.map_err(|e| e.to_string())?;
        let ours_events = sagaflow
            .store()
            .load(&stream, 0)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|stored| stored.decode::<WarehouseEvent>().map(|e| e.payload))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let theirs = mem.load_aggregate(id).await.map_err(|e| e.to_string())?;
        let theirs_events = mem.load_events(id).await.map_err(|e| e.to_string())?;
        let persisted = json.load_aggregate(id).await.map_err(|e| e.to_string())?;
        let persisted_events = json.load_events(id).await.map_err(|e| e.to_string())?;
        let typed = |envelopes: Vec<cqrs_es::EventEnvelope<CqrsWarehouse>>| -> Vec<WarehouseEvent> {
            envelopes.into_iter().map(|e| e.payload.0).collect()
        };
        let ends = [
            ("sagaflow", &ours.state, ours_events),
            ("MemStore", &theirs.aggregate.0, typed(theirs_events)),
            (
                "JSON store",
                &persisted.aggregate.0,
                typed(persisted_events),
            ),
        ];
        for (name, end, recorded) in ends {
            if end != state {
                return Err(format!("{name} ends {id} in another state than the script"));
            }
            if recorded != *events {
                return Err(format!(
                    "{name} recorded {} events on {id}, the script {}, or other events",
                    recorded.len(),
                    events.len()
                ));
            }
        }
    }
    Ok(())
}

/// The metadata every seeded event carries, on both sides.
fn seed_meta(id: &str) -> CommandMeta {
    CommandMeta::new(
        format!("corr-seed-{id}"),
        format!("msg-seed-{id}"),
        Timestamp::from_millis(1_750_000_000_000),
    )
}

async fn seed_sagaflow(
    repository: &SagaflowRepository,
    id: &str,
    events: &[WarehouseEvent],
) -> Result<(), String> {
    let stream = SagaflowRepository::stream_id(id);
    let stored = envelope_events(&stream, 0, events, &seed_meta(id));
    repository
        .store()
        .append(AppendRequest {
            stream,
            expected_version: 0,
            expected_from_store: false,
            events: stored,
            idempotency_keys: Vec::new(),
            wake: Wake::Unchanged,
            snapshot: None,
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn seed_cqrs<S: CqrsEventStore<CqrsWarehouse>>(
    store: &S,
    id: &str,
    events: &[WarehouseEvent],
) -> Result<(), String> {
    let context = store.load_aggregate(id).await.map_err(|e| e.to_string())?;
    let events = events.iter().cloned().map(StockEvent).collect();
    store
        .commit(events, context, cqrs_metadata(&seed_meta(id)))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Events applied per second loading seeded streams of `length` events, on all three.
async fn rehydration(length: usize, plan: &Plan) -> Row {
    let label = format!("rehydrate {} events, events/s", thousands(length as f64));
    // Enough streams that short ones are not all the same few cache lines.
    let streams = if length >= 10_000 { 2 } else { 64 };
    let ids: Vec<String> = (0..streams).map(|s| format!("wh-r{length}-{s}")).collect();

    let sagaflow = sagaflow_repository(false);
    let mem = QuietMemStore::<CqrsWarehouse>::default();
    let json = json_store(JsonMemRepository::default());
    for (s, id) in ids.iter().enumerate() {
        let events = Script::events(10_000 + s, length);
        let seeded = async {
            seed_sagaflow(&sagaflow, id, &events)
                .await
                .map_err(|e| format!("sagaflow: {e}"))?;
            seed_cqrs(&mem, id, &events)
                .await
                .map_err(|e| format!("MemStore: {e}"))?;
            seed_cqrs(&json, id, &events)
                .await
                .map_err(|e| format!("JSON store: {e}"))
        }
        .await;
        if let Err(e) = seeded {
            let failed = || Err(format!("seeding failed: {e}"));
            return Row {
                label,
                sagaflow: failed(),
                mem: failed(),
                json: failed(),
            };
        }
    }

    let (mut ours, mut theirs, mut persisted) = (Vec::new(), Vec::new(), Vec::new());
    // The first round warms up and is dropped.
    for sample in 0..=plan.samples {
        let a = load_sagaflow(&sagaflow, &ids, plan.load_for, length).await;
        let b = load_cqrs(&mem, &ids, plan.load_for, length).await;
        let c = load_cqrs(&json, &ids, plan.load_for, length).await;
        if sample > 0 {
            ours.push(a);
            theirs.push(b);
            persisted.push(c);
        }
    }
    Row::new(label, ours, theirs, persisted)
}

async fn load_sagaflow(
    repository: &SagaflowRepository,
    ids: &[String],
    load_for: Duration,
    length: usize,
) -> Result<f64, String> {
    let mut loads = 0;
    let started = Instant::now();
    for id in ids.iter().cycle() {
        let loaded = repository.load(id).await.map_err(|e| e.to_string())?;
        if loaded.version as usize != length {
            return Err(format!("{id} loaded at {} events", loaded.version));
        }
        black_box(loaded);
        loads += 1;
        if loads >= MIN_LOADS && started.elapsed() >= load_for {
            break;
        }
    }
    events_per_second(loads, length, started.elapsed())
}

async fn load_cqrs<S: CqrsEventStore<CqrsWarehouse>>(
    store: &S,
    ids: &[String],
    load_for: Duration,
    length: usize,
) -> Result<f64, String> {
    let mut loads = 0;
    let started = Instant::now();
    for id in ids.iter().cycle() {
        let context = store.load_aggregate(id).await.map_err(|e| e.to_string())?;
        black_box(context);
        loads += 1;
        if loads >= MIN_LOADS && started.elapsed() >= load_for {
            break;
        }
    }
    let took = started.elapsed();
    // The context does not tell its version through the trait; check one stream after timing.
    if let Some(id) = ids.first() {
        let events = store.load_events(id).await.map_err(|e| e.to_string())?;
        if events.len() != length {
            return Err(format!("{id} loaded at {} events", events.len()));
        }
    }
    events_per_second(loads, length, took)
}

fn events_per_second(loads: usize, length: usize, took: Duration) -> Result<f64, String> {
    if loads == 0 {
        return Err("no stream to load".to_string());
    }
    Ok(per_second(loads * length, took))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_contender_ends_each_warehouse_where_the_script_does() {
        let mix = Mix::new(6, COMMANDS_PER_WAREHOUSE);
        assert!(mix.refusals > 0, "the mix should include refused commands");
        assert!(
            mix.events > 6 * 30,
            "streams should be a few dozen events long"
        );
        assert_eq!(verify(&mix).await, Ok(()));
    }

    #[tokio::test]
    async fn an_end_other_than_the_script_is_caught() {
        let mut mix = Mix::new(2, COMMANDS_PER_WAREHOUSE);
        if let Some((state, _)) = mix.expected.first_mut() {
            state.stock.clear();
        }
        assert!(verify(&mix).await.is_err());
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(0.0), "0");
    }
}
