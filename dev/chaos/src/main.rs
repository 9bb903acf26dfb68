//! `make chaos`: places many orders through the Lambda handlers and local triggers on the local
//! servers while a seeded schedule injects faults (redelivered and raced batches, crashes after
//! commit, relay crashes before checkpoint, DynamoDB throttling and lost answers, DynamoDB
//! endpoint outages, silent services), then checks from the events table that nothing was lost
//! or doubled.

mod args;
mod invariants;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::process::{Command, ExitCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sagaflow_handlers::clock;
use sagaflow_handlers::orchestrator::cancel_command;
use sagaflow_handlers::testkit::bad_input::{bad_records, BadValue};
use sagaflow_kafka::{command_record, EventPublisher, OutboundRecord};
use sagaflow_local_trigger::faults::roll;
use sagaflow_local_trigger::{FaultPlan, LocalSystem, LocalSystemConfig};
use sagaflow_orders::domain::{Address, CreateOrder, Flow, Money, OrderLine};
use sagaflow_orders::flow::sagas::StepTiming;
use sagaflow_orders::projection::AnalyticsStore;

use crate::args::{Args, ArgsError, HELP};
use crate::invariants::{check_all, Expected};

/// The order `n` of a run seeded `seed`: a seeded mix of flows, payment methods, destinations
/// and a limited SKU, so every outcome and compensation path is exercised.
fn order(seed: u64, n: usize) -> CreateOrder {
    let r = |what: &str| roll(seed, &[what.as_bytes(), &n.to_le_bytes()]);
    let mut lines = vec![OrderLine {
        sku: "MUG".into(),
        quantity: 1 + (r("mugs") * 3.0) as u32,
        unit_price: Money::eur(1_250),
    }];
    if r("lamp") < 0.1 {
        lines.push(OrderLine {
            sku: "LAMP".into(),
            quantity: 1,
            unit_price: Money::eur(7_900),
        });
    }
    CreateOrder {
        order_id: format!("ord-{seed}-{n}"),
        customer_id: format!("cust-{}", n % 97),
        lines,
        payment_method: if r("declined") < 0.1 {
            "card-declined".into()
        } else {
            "card-ok".into()
        },
        shipping_address: Address {
            name: "Ada Lovelace".into(),
            line1: "1 Loop Road".into(),
            city: "Paris".into(),
            country: if r("antarctica") < 0.08 { "AQ" } else { "FR" }.into(),
        },
        flow: if r("flow") < 0.5 {
            Flow::Orchestrated
        } else {
            Flow::Choreographed
        },
    }
}

/// Runs `attempt` until it succeeds, or until it has failed for `limit`: the harness rides out
/// an endpoint outage as the functions do. The harness's own calls cannot tell a transient
/// error from a lasting one, so a lasting one ends the run after `limit`, with its reason.
async fn patiently<T, F, Fut>(what: &str, limit: Duration, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    let mut failures = 0u32;
    loop {
        match attempt().await {
            Ok(value) => {
                if failures > 0 {
                    eprintln!(
                        "  {what}: answered again after {failures} failed attempts ({:.1}s)",
                        started.elapsed().as_secs_f64()
                    );
                }
                return Ok(value);
            }
            Err(e) if started.elapsed() >= limit => {
                return Err(format!(
                    "{what}: still failing after {}s: {e}",
                    limit.as_secs()
                ))
            }
            Err(e) => {
                if failures == 0 {
                    eprintln!("  {what} failed, retrying: {e}");
                }
                failures += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// The script that started the local servers, which also stops and restarts the DynamoDB
/// endpoint for an outage.
const SERVERS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/servers.sh");

/// Stops the DynamoDB endpoint for `length`, then starts it again on its database file, on a
/// thread of its own so orders keep being placed meanwhile; true when the outage happened.
fn outage(length: Duration) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        eprintln!(
            "  outage: stopping the DynamoDB endpoint for {}s",
            length.as_secs()
        );
        match Command::new(SERVERS_SCRIPT)
            .args(["outage", "dynamodb", &length.as_secs().to_string()])
            .output()
        {
            Ok(out) if out.status.success() => {
                eprintln!("  outage: the DynamoDB endpoint is back");
                true
            }
            Ok(out) => {
                eprintln!(
                    "  outage: not injected ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                false
            }
            Err(e) => {
                eprintln!("  outage: cannot run {SERVERS_SCRIPT}: {e}");
                false
            }
        }
    })
}

/// Waits until the analytics read model counts every order as finished, printing progress;
/// gives up when nothing finishes for `stall`.
async fn wait_for_orders(
    system: &LocalSystem,
    orders: usize,
    stall: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let (mut last_done, mut last_change) = (0u64, Instant::now());
    loop {
        let done = patiently("reading the analytics summary", stall, || {
            system.finished_orders()
        })
        .await? as u64;
        if done != last_done {
            eprintln!(
                "  {done}/{orders} orders finished after {:.0}s",
                started.elapsed().as_secs_f64()
            );
            (last_done, last_change) = (done, Instant::now());
        }
        if done as usize >= orders {
            return Ok(());
        }
        if last_change.elapsed() > stall {
            return Err(format!(
                "{done}/{orders} orders finished; nothing finished for {}s",
                stall.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let orders: Vec<CreateOrder> = (0..args.orders).map(|n| order(args.seed, n)).collect();
    let orchestrated: Vec<String> = orders
        .iter()
        .filter(|o| o.flow == Flow::Orchestrated)
        .map(|o| o.order_id.clone())
        .collect();
    let silent: HashSet<String> = orders
        .iter()
        .filter(|o| o.flow == Flow::Orchestrated)
        .filter(|o| roll(args.seed, &[b"silent", o.order_id.as_bytes()]) < args.silent)
        .map(|o| o.order_id.clone())
        .collect();
    // Customers who cancel while their order runs: each after a seeded wait of up to 4 s, half
    // of them with the cancel delivered twice and a second cancel of their own a little later
    // (refused, or a no-op when the first was too late).
    let cancels: Vec<(String, Flow, Duration, bool)> = orders
        .iter()
        .filter(|o| !silent.contains(&o.order_id))
        .filter(|o| roll(args.seed, &[b"cancel", o.order_id.as_bytes()]) < args.cancels)
        .map(|o| {
            let wait = roll(args.seed, &[b"cancel-at", o.order_id.as_bytes()]) * 4_000.0;
            let twice = roll(args.seed, &[b"cancel-twice", o.order_id.as_bytes()]) < 0.5;
            let wait = Duration::from_millis(wait as u64);
            (o.order_id.clone(), o.flow, wait, twice)
        })
        .collect();
    let plan = Arc::new(FaultPlan::new(
        args.seed,
        args.rates.clone(),
        silent.clone(),
    ));
    let initial_stock = BTreeMap::from([
        ("MUG".to_string(), 3 * args.orders as u64 + 10),
        ("LAMP".to_string(), (args.orders as u64 / 40).max(2)),
    ]);

    let started = Instant::now();
    let system = LocalSystem::start(LocalSystemConfig {
        partitions: args.partitions,
        step_timing: StepTiming {
            timeout_ms: args.step_timeout_ms,
            forward_attempts: args.forward_attempts,
            compensation_attempts: args.step_attempts,
        },
        timer_every: Duration::from_secs(2),
        faults: Some(plan.clone()),
        ..LocalSystemConfig::named(format!("chaos{}x{}", args.seed, std::process::id()))
    })
    .await
    .map_err(|e| format!("cannot start the local system (did `make up` run?): {e}"))?;
    for (sku, units) in &initial_stock {
        patiently("restocking", args.stall, || {
            system.restock(sku, *units as u32)
        })
        .await?;
    }
    println!(
        "chaos: {} orders ({} orchestrated, {} with a silent shipping step), seed {}, {} bad records",
        orders.len(),
        orchestrated.len(),
        silent.len(),
        args.seed,
        args.bad_records
    );
    let bad: Vec<OutboundRecord> = bad_records("chaos")
        .into_iter()
        .filter_map(|case| match case.value {
            BadValue::Bytes(value) => Some(OutboundRecord {
                topic: (case.topic)(&system.topics),
                key: case.key,
                value,
                headers: case
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect(),
            }),
            BadValue::InvalidBase64(_) => None,
        })
        .cycle()
        .take(args.bad_records)
        .collect();
    let publisher = EventPublisher::new(&system.kafka).map_err(|e| e.to_string())?;
    let every = (orders.len() / bad.len().max(1)).max(1);
    // Outages start at evenly spaced orders, so each falls while orders are in flight.
    let outage_at: Vec<usize> = (1..=args.outages)
        .map(|k| k * orders.len() / (args.outages + 1))
        .collect();
    let mut outages = Vec::new();
    let mut cancelling = tokio::task::JoinSet::new();
    let mut done = 0;
    for (n, create) in orders.iter().enumerate() {
        if outage_at.contains(&n) {
            outages.push(outage(args.outage));
        }
        // A front door admits a bounded number of orders at a time; without it the local
        // endpoint's queue, not the faults, would decide which saga steps time out. The count
        // is read sparingly: each read is a request to the same endpoint the functions use.
        while n >= args.in_flight && n - args.in_flight >= done {
            tokio::time::sleep(Duration::from_millis(500)).await;
            done = patiently("reading the analytics summary", args.stall, || {
                system.finished_orders()
            })
            .await?;
        }
        patiently("placing an order", args.stall, || {
            system.place_order(create)
        })
        .await?;
        if let Some((order_id, flow, wait, twice)) = cancels.iter().find(|c| c.0 == create.order_id)
        {
            let (publisher, topics) = (publisher.clone(), system.topics.clone());
            let (order_id, flow, wait, twice) = (order_id.clone(), *flow, *wait, *twice);
            cancelling.spawn(async move {
                tokio::time::sleep(wait).await;
                let cancel = |attempt| {
                    let command =
                        cancel_command(&order_id, flow, "chaos customer", attempt, clock::now());
                    command_record(&topics, &command)
                };
                let mut records = vec![cancel(1)];
                if twice {
                    records.push(cancel(1));
                }
                publisher
                    .publish(&records)
                    .await
                    .map_err(|e| e.to_string())?;
                if twice {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    publisher
                        .publish(&[cancel(2)])
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            });
        }
        if let Some(record) = bad.get(n / every).filter(|_| n % every == 0) {
            publisher
                .publish(std::slice::from_ref(record))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    println!("  placed in {:.1}s", started.elapsed().as_secs_f64());
    while let Some(sent) = cancelling.join_next().await {
        sent.map_err(|e| format!("a cancel task failed: {e}"))??;
    }
    for handle in outages {
        if handle.join().unwrap_or(false) {
            plan.counts.endpoint_outages.fetch_add(1, Ordering::Relaxed);
        }
    }
    let waited = wait_for_orders(&system, orders.len(), args.stall).await;
    let elapsed = started.elapsed();
    // Sagas end a little after their orders (the order's last event is their last reply), and
    // the analytics function trails the events: wait until the read model has matched the
    // events twice, a few seconds apart, so nothing is still in flight.
    for _ in 0..2 {
        if let Err(e) = system.wait_for_analytics(args.stall).await {
            eprintln!("  {e}");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let settled = started.elapsed() - elapsed;
    let letters = system
        .read_dead_letters(bad.len(), Duration::from_secs(20))
        .await;
    let (store, read_model) = (system.store.clone(), system.analytics.clone());
    let stats = system.stop().await;
    let events = store.all_events().await.map_err(|e| e.to_string())?;
    let analytics = read_model.summary().await.map_err(|e| e.to_string())?;

    let order_ids: Vec<String> = orders.iter().map(|o| o.order_id.clone()).collect();
    let checks = check_all(
        &events,
        &Expected {
            orders: &order_ids,
            orchestrated: &orchestrated,
            cancelled: &cancels.iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
            initial_stock: &initial_stock,
            bad_records: bad.len(),
        },
        &analytics,
        &letters,
    );
    println!(
        "\n{} orders, {} events: every order finished in {:.1}s ({:.1} orders/s), the read model settled {:.1}s later; relay published {} records",
        orders.len(),
        events.len(),
        elapsed.as_secs_f64(),
        orders.len() as f64 / elapsed.as_secs_f64(),
        settled.as_secs_f64(),
        stats.relayed
    );
    println!("\nFaults injected");
    for (name, count) in plan.counts.lines() {
        println!("  {count:>7}  {name}");
    }
    println!(
        "  {:>7}  deadline timer ticks that moved a saga on",
        stats.timer.advanced
    );
    println!("\nInvariants");
    let mut held = waited.is_ok();
    if let Err(e) = &waited {
        println!("  BROKEN  the run finished: {e}");
    }
    for check in &checks {
        let ok = check.broken.is_empty();
        held &= ok;
        println!(
            "  {}  {} ({})",
            if ok { "ok    " } else { "BROKEN" },
            check.name,
            check.counted
        );
        for problem in check.broken.iter().take(5) {
            println!("          {problem}");
        }
        if check.broken.len() > 5 {
            println!("          … and {} more", check.broken.len() - 5);
        }
    }
    Ok(held)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(ArgsError::Help) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(ArgsError::Invalid(e)) => {
            eprintln!("error: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let _spans = sagaflow_local_trigger::function_logs::install_and_say("chaos");
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
