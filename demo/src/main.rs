//! `make run`: the whole order flow in one process on embedded defaults: places a seeded mix of
//! orders through the orchestrated, choreographed and in-process flows, prints what happened to
//! each, the analytics summary and the stock, and checks the invariants.

mod args;
mod report;
mod scenario;

use std::process::ExitCode;

use sagaflow_core::flow::system::{InProcessSystem, Placement, SystemConfig};

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
    let system = InProcessSystem::new(SystemConfig {
        seed: args.seed,
        lost_commit_percent: args.lost_commit_percent,
        partitions: args.partitions,
        ..SystemConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let stock = initial_stock(args.orders);
    for (sku, quantity) in &stock {
        system.restock(sku, *quantity).await?;
    }
    let planned = orders_for(args);
    let mut rows = Vec::with_capacity(planned.len());
    for (i, order) in planned.into_iter().enumerate() {
        let placement = system.place_order(order.request.clone()).await?;
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
            system.run_until_idle().await;
        }
    }
    let stats = system.run_until_idle().await;
    print_report(&system, &rows, &stock, stats, args).await
}
