//! Section 5: orders through every function on the local servers (dynoxide and tansu), no faults:
//! orders per second, latency from placed to terminal, and what each order cost in Lambda
//! invocations, DynamoDB requests and Kafka records.
//!
//! Latency is read from the events afterwards (the order's terminal event's time against the
//! time the bench placed it), so measuring puts no polling load on the endpoint it measures.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use sagaflow_handlers::clock;
use sagaflow_local_trigger::{LocalSystem, LocalSystemConfig, OperationCount, RequestCounter};
use sagaflow_orders::domain::{Address, CreateOrder, Flow, Money, OrderLine};

use crate::settings::Settings;
use crate::stats::quantile;

/// Orders placed but not yet finished, at most (a front door's admission limit).
const IN_FLIGHT: usize = 20;

/// The demo catalogue's SKUs and prices the orders take turns with: each SKU's stock is its own
/// stream, so orders in flight for different SKUs never contend.
const SKUS: [(&str, i64); 5] = [
    ("MUG", 1_250),
    ("TEE", 2_400),
    ("CAP", 1_800),
    ("BAG", 900),
    ("LAMP", 7_900),
];

/// What the run measured, per order where it says so.
#[derive(Clone, Debug, Default)]
pub struct EndToEndFigures {
    /// Orders placed (all reached a terminal state, or the section fails).
    pub orders: usize,
    /// Orders finished per second of wall time.
    pub orders_per_second: f64,
    /// Latency from placed to terminal, median, in milliseconds.
    pub p50_ms: f64,
    /// The same, 99th percentile.
    pub p99_ms: f64,
    /// Lambda invocations per order (every function's trigger together).
    pub invocations_per_order: f64,
    /// Kafka records consumed by the functions per order.
    pub records_consumed_per_order: f64,
    /// Kafka records produced per order (the relay's events and the front door's commands).
    pub records_produced_per_order: f64,
    /// DynamoDB requests by the functions, by operation, per order.
    pub requests_per_order: BTreeMap<String, f64>,
    /// Read request units per order, as the endpoint reported them.
    pub read_units_per_order: f64,
    /// Write request units per order, as the endpoint reported them.
    pub write_units_per_order: f64,
    /// Responses per order that reported no units (failed conditions, cancelled
    /// transactions), whose units are estimated from the request.
    pub estimated_responses_per_order: f64,
    /// The same, of the events table (the services, the orchestrator, the timer).
    pub event_write_units_per_order: f64,
    /// The same, of the analytics table (the analytics function).
    pub analytics_write_units_per_order: f64,
    /// Transaction items per order by what they write: how many, and their write units.
    pub transaction_items_per_order: Vec<(String, f64, f64)>,
    /// Share of the wall time the functions spent waiting on DynamoDB, summed over requests:
    /// near or above 1, the serialized local endpoint is the ceiling.
    pub endpoint_busy: f64,
    /// Completed orders.
    pub completed: usize,
}

fn order(run: &str, n: usize) -> CreateOrder {
    CreateOrder {
        order_id: format!("ord-{run}-{n}"),
        customer_id: format!("cust-{}", n % 97),
        lines: vec![OrderLine {
            sku: SKUS[n % SKUS.len()].0.into(),
            quantity: 1 + (n % 3) as u32,
            unit_price: Money::eur(SKUS[n % SKUS.len()].1),
        }],
        // One in ten declined, so compensation is part of the mix as it is in production.
        payment_method: if n % 10 == 9 {
            "card-declined".into()
        } else {
            "card-ok".into()
        },
        shipping_address: Address {
            name: "Ada Lovelace".into(),
            line1: "1 Loop Road".into(),
            city: "Paris".into(),
            country: "FR".into(),
        },
        flow: if n.is_multiple_of(2) {
            Flow::Orchestrated
        } else {
            Flow::Choreographed
        },
    }
}

/// Runs the section and prints its table.
pub async fn run(settings: &Settings) -> Result<EndToEndFigures, String> {
    let orders = if settings.quick { 60 } else { 300 };
    let run_id = format!("bench{}e", std::process::id());
    let counter = RequestCounter::new();
    let system = LocalSystem::start(LocalSystemConfig {
        partitions: 3,
        timer_every: Duration::from_secs(2),
        request_counter: Some(counter.clone()),
        ..LocalSystemConfig::named(run_id.clone())
    })
    .await
    .map_err(|e| format!("cannot start the local system (are the servers up?): {e}"))?;
    for (sku, _) in SKUS {
        system.restock(sku, (orders * 3 + 10) as u32).await?;
    }
    counter.reset();

    let started = Instant::now();
    let mut placed_at = HashMap::with_capacity(orders);
    let mut done = 0;
    for n in 0..orders {
        // The finished count is read sparingly: each read is a request to the endpoint measured.
        while n >= IN_FLIGHT && n - IN_FLIGHT >= done {
            tokio::time::sleep(Duration::from_millis(500)).await;
            done = system.finished_orders().await?;
        }
        let create = order(&run_id, n);
        placed_at.insert(create.order_id.clone(), clock::now().as_millis());
        system.place_order(&create).await?;
    }
    let mut last_change = Instant::now();
    while done < orders {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now_done = system.finished_orders().await?;
        if now_done != done {
            (done, last_change) = (now_done, Instant::now());
        } else if last_change.elapsed() > Duration::from_secs(120) {
            let _ = system.stop().await;
            return Err(format!(
                "{done} of {orders} orders finished; stalled for 2 minutes"
            ));
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let counts = counter.snapshot();
    let by_table = counter.write_units_by_table();
    let mut items = counter.transaction_items().into_iter().collect::<Vec<_>>();
    items.sort_by_key(|(_, (_, units))| std::cmp::Reverse(*units));
    let table_units = |table: &str| by_table.get(table).copied().unwrap_or(0.0);
    let (event_units, analytics_units) = (
        table_units(system.store.table()),
        table_units(system.analytics.table()),
    );
    let store = system.store.clone();
    let stats = system.stop().await;
    let events = store.all_events().await.map_err(|e| e.to_string())?;

    let mut latencies = Vec::with_capacity(orders);
    let mut completed = 0;
    for event in events.iter().filter(|e| e.aggregate_type == "order") {
        let terminal = match event.event_type.as_str() {
            "order.completed" => {
                completed += 1;
                true
            }
            "order.cancelled" => true,
            _ => false,
        };
        if let (true, Some(placed)) = (terminal, placed_at.get(&event.aggregate_id)) {
            latencies.push((event.occurred_at.as_millis() - placed) as f64);
        }
    }
    if latencies.len() != orders {
        return Err(format!(
            "{} of {orders} orders have a terminal event",
            latencies.len()
        ));
    }
    let per_order = |n: u64| n as f64 / orders as f64;
    let per_order_units = |units: f64| units / orders as f64;
    let total = |f: fn(&OperationCount) -> u64| counts.values().map(f).sum::<u64>();
    let total_units = |f: fn(&OperationCount) -> f64| counts.values().map(f).sum::<f64>();
    let figures = EndToEndFigures {
        orders,
        orders_per_second: orders as f64 / wall,
        p50_ms: quantile(&latencies, 0.5).unwrap_or(0.0),
        p99_ms: quantile(&latencies, 0.99).unwrap_or(0.0),
        invocations_per_order: per_order(stats.triggers.iter().map(|(_, t)| t.invocations).sum()),
        records_consumed_per_order: per_order(stats.triggers.iter().map(|(_, t)| t.records).sum()),
        records_produced_per_order: per_order(stats.relayed + orders as u64),
        requests_per_order: counts
            .iter()
            .map(|(op, c)| (op.clone(), per_order(c.requests)))
            .collect(),
        read_units_per_order: per_order_units(total_units(|c| c.read_units)),
        write_units_per_order: per_order_units(total_units(|c| c.write_units)),
        estimated_responses_per_order: per_order(total(|c| c.estimated)),
        event_write_units_per_order: per_order_units(event_units),
        analytics_write_units_per_order: per_order_units(analytics_units),
        transaction_items_per_order: items
            .into_iter()
            .map(|(kind, (n, units))| (kind, per_order(n), per_order(units)))
            .collect(),
        endpoint_busy: total(|c| c.waited_micros) as f64 / 1e6 / wall,
        completed,
    };
    print(&figures);
    Ok(figures)
}

fn print(f: &EndToEndFigures) {
    println!(
        "\n5. End to end: {} orders through every function on dynoxide + tansu, at most {IN_FLIGHT} in flight, no faults",
        f.orders
    );
    println!(
        "  {:.2} orders/s; placed to terminal p50 {:.0} ms, p99 {:.0} ms; {} completed, {} cancelled (declined cards)",
        f.orders_per_second,
        f.p50_ms,
        f.p99_ms,
        f.completed,
        f.orders - f.completed
    );
    println!(
        "  per order: {:.1} Lambda invocations, {:.1} Kafka records produced, {:.1} consumed",
        f.invocations_per_order, f.records_produced_per_order, f.records_consumed_per_order
    );
    let requests: f64 = f.requests_per_order.values().sum();
    let by_op: Vec<String> = f
        .requests_per_order
        .iter()
        .map(|(op, n)| format!("{op} {n:.1}"))
        .collect();
    println!(
        "  DynamoDB per order: {requests:.1} requests ({}), {:.1} read and {:.1} write request units as the endpoint reported them ({:.2} responses an order without them, estimated)",
        by_op.join(", "),
        f.read_units_per_order,
        f.write_units_per_order,
        f.estimated_responses_per_order
    );
    println!(
        "  write units per order by table: events {:.1}, analytics {:.1}",
        f.event_write_units_per_order, f.analytics_write_units_per_order
    );
    let items: Vec<String> = f
        .transaction_items_per_order
        .iter()
        .map(|(kind, n, units)| format!("{kind} {n:.1} (~{units:.1})"))
        .collect();
    println!(
        "  transaction items per order (write units estimated from each item's size in the request; an update is billed for its whole item): {}",
        items.join(", ")
    );
    println!(
        "  the functions waited on DynamoDB {:.1}x the wall time (summed over concurrent requests)",
        f.endpoint_busy
    );
}
