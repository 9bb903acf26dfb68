//! `make run`: the whole order flow in one process on embedded defaults, through the deployed
//! handlers: places a seeded mix of orders through the orchestrated, choreographed and
//! in-process flows, prints what happened to each, the analytics summary and the stock, and
//! checks the invariants.

mod args;
mod report;
mod scenario;

use std::process::ExitCode;

use sagaflow_embedded::world::slow_provider;
use sagaflow_embedded::Topics;
use sagaflow_embedded::{
    front_door, BrokerConfig, EmbeddedConfig, EmbeddedSystem, PlaceOrderCommand, Placement,
};

use crate::args::Args;
use crate::report::{print_report, OrderRow};
use crate::scenario::{initial_stock, orders_for};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{}", args::HELP);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{}", args::HELP);
            return ExitCode::from(2);
        }
    };
    match run(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs the demo; returns whether every invariant held.
async fn run(args: &Args) -> Result<bool, String> {
    let defaults = EmbeddedConfig::default();
    let system = EmbeddedSystem::new(EmbeddedConfig {
        broker: BrokerConfig {
            partitions: args.partitions,
            lost_commit_percent: args.lost_commit_percent,
            seed: args.seed,
            ..BrokerConfig::default()
        },
        latency: Some(slow_provider(&Topics::new(defaults.name.clone()))),
        ..defaults
    })
    .map_err(|e| e.to_string())?;
    let door = front_door(&system).map_err(|e| e.to_string())?;
    let stock = initial_stock(args.orders);
    for (sku, quantity) in &stock {
        system
            .services()
            .restock(sku, *quantity, system.clock().now())
            .await
            .map_err(|e| e.to_string())?;
    }
    let planned = orders_for(args);
    let mut rows = Vec::with_capacity(planned.len());
    for (i, order) in planned.into_iter().enumerate() {
        let placement = door
            .send(PlaceOrderCommand(order.request.clone()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        rows.push(OrderRow {
            order_id: order.request.order_id.clone(),
            flow: order.request.flow,
            scenario: order.scenario,
            placement: placement.clone(),
        });
        if let Placement::Rejected { .. } = placement {
            continue;
        }
        // Let the system work while orders keep arriving, so flows interleave on the bus.
        if i % args.batch == args.batch - 1 {
            system.run_until_idle().await.map_err(|e| e.to_string())?;
        }
    }
    let stats = system.run_until_idle().await.map_err(|e| e.to_string())?;
    print_report(&system, &door, &rows, &stock, stats, args).await
}
