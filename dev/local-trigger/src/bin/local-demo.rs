//! `make run-local`: the order flow through the Lambda handlers on local servers (the DynamoDB
//! endpoint and Kafka broker that `make up` starts), fed by the local triggers. Places orders of
//! every scenario in both distributed flows, waits for each to end, and prints what happened.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use sagaflow_local_trigger::{LocalSystem, LocalSystemConfig};
use sagaflow_orders::domain::{Address, CreateOrder, Flow, Money, OrderLine, OrderStatus};

const HELP: &str = "\
sagaflow local demo: orders through the Lambda handlers on local servers

USAGE: local-demo [--orders N] [--timeout-secs N]   (make run-local ARGS=\"...\")

Needs the servers of `make up` (AWS_ENDPOINT_URL and SAGAFLOW_KAFKA_BOOTSTRAP set).";

fn order(i: usize) -> (CreateOrder, &'static str) {
    let flow = if i.is_multiple_of(2) {
        Flow::Orchestrated
    } else {
        Flow::Choreographed
    };
    let (scenario, method, country, lamps) = match (i / 2) % 4 {
        0 => ("success", "card-ok", "NL", 0),
        1 => ("declined", "card-declined", "NL", 0),
        2 => ("out-of-stock", "card-ok", "NL", 5),
        _ => ("shipment-failure", "card-ok", "AQ", 0),
    };
    let mut lines = vec![OrderLine {
        sku: "MUG".into(),
        quantity: 1 + (i % 3) as u32,
        unit_price: Money::eur(1_250),
    }];
    if lamps > 0 {
        lines.push(OrderLine {
            sku: "LAMP".into(),
            quantity: lamps,
            unit_price: Money::eur(7_900),
        });
    }
    let create = CreateOrder {
        order_id: format!("ord-{:06}", i + 1),
        customer_id: format!("cust-{:04}", i % 97),
        lines,
        payment_method: method.into(),
        shipping_address: Address {
            name: format!("Customer {i}"),
            line1: format!("{} Market Street", i + 1),
            city: "Utrecht".into(),
            country: country.into(),
        },
        flow,
    };
    (create, scenario)
}

fn parse(args: &[String]) -> Result<Option<(usize, u64)>, String> {
    let (mut orders, mut timeout) = (16usize, 120u64);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--orders" => orders = value()?.parse().map_err(|_| "--orders needs a number")?,
            "--timeout-secs" => {
                timeout = value()?
                    .parse()
                    .map_err(|_| "--timeout-secs needs a number")?
            }
            other => return Err(format!("unknown flag `{other}`")),
        }
    }
    Ok(Some((orders, timeout)))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (orders, timeout) = match parse(&args) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let _spans = sagaflow_local_trigger::function_logs::install_and_say("local-demo");
    let name = format!("demo{}", std::process::id());
    let system = match LocalSystem::start(LocalSystemConfig {
        partitions: 3,
        ..LocalSystemConfig::named(name)
    })
    .await
    {
        Ok(system) => system,
        Err(e) => {
            eprintln!("error: cannot start the local system (did `make up` run?): {e}");
            return ExitCode::from(1);
        }
    };
    let started = Instant::now();
    for (sku, quantity) in [("MUG", 10_000), ("LAMP", 2)] {
        if let Err(e) = system.restock(sku, quantity).await {
            eprintln!("error: restock failed: {e}");
            return ExitCode::from(1);
        }
    }
    let planned: Vec<_> = (0..orders).map(order).collect();
    for (create, _) in &planned {
        if let Err(e) = system.place_order(create).await {
            eprintln!("error: placing {} failed: {e}", create.order_id);
            return ExitCode::from(1);
        }
    }
    println!(
        "{:<11} {:<13} {:<17} {:<30}",
        "ORDER", "FLOW", "SCENARIO", "OUTCOME"
    );
    let mut unfinished = 0;
    for (create, scenario) in &planned {
        let outcome = match system
            .wait_for_terminal(&create.order_id, Duration::from_secs(timeout))
            .await
        {
            Ok(order) if order.status == OrderStatus::Completed => "completed".to_string(),
            Ok(order) => format!(
                "cancelled ({})",
                order.cancel_reason.map(|r| r.code).unwrap_or_default()
            ),
            Err(e) => {
                unfinished += 1;
                format!("NOT FINISHED: {e}")
            }
        };
        println!(
            "{:<11} {:<13} {:<17} {outcome}",
            create.order_id,
            create.flow.to_string(),
            scenario
        );
    }
    let elapsed = started.elapsed();
    let analytics = match system
        .wait_for_analytics(Duration::from_secs(timeout))
        .await
    {
        Ok(summary) => {
            println!(
                "\nAnalytics table (query bus), equal to a replay of the events table:\n  orders by status: {:?}\n  captured: {:?}  refunded: {:?}\n  cancellations: {:?}",
                summary.orders_by_status,
                summary.captured_minor,
                summary.refunded_minor,
                summary.cancellations_by_reason
            );
            true
        }
        Err(e) => {
            println!("\nAnalytics: {e}");
            false
        }
    };
    let stats = system.stop().await;
    println!(
        "\n{} orders in {:.1}s; relay published {} records",
        planned.len(),
        elapsed.as_secs_f64(),
        stats.relayed
    );
    for (function, s) in stats.triggers {
        println!(
            "  {function:<24} {} invocations, {} records, {} rewinds",
            s.invocations, s.records, s.rewinds
        );
    }
    if unfinished == 0 && analytics {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
