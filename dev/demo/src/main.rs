//! `make run`: the whole order flow in one process on embedded defaults, through the deployed
//! handlers: places a seeded mix of orders through the orchestrated, choreographed and
//! in-process flows, prints what happened to each, the analytics summary and the stock, and
//! checks the invariants.

mod args;
mod report;
mod scenario;
mod trace;

use std::process::ExitCode;

use sagaflow_embedded::world::slow_provider;
use sagaflow_embedded::Topics;
use sagaflow_embedded::{
    front_door, BrokerConfig, CancelOrderCommand, EmbeddedConfig, EmbeddedSystem,
    PlaceOrderCommand, Placement,
};
use sagaflow_eventsourcing::mediator::Mediator;
use sagaflow_orders::domain::Flow;

use crate::args::Args;
use crate::report::{print_report, OrderRow};
use crate::scenario::{initial_stock, orders_for, Scenario};

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

/// After how many completed saga steps each customer cancels, by the order of the cancels: at
/// every step of the order saga in turn, so each compensation path runs.
const CANCEL_AFTER_STEPS: [usize; 4] = [0, 1, 2, 3];

/// Runs the batch just placed: its customers cancel `cancels` (an orchestrated order once its
/// saga completed that many steps, the others at once) while their orders run, and once everything is idle cancel them again,
/// which must be refused.
async fn run_batch(
    system: &EmbeddedSystem,
    door: &Mediator,
    mut cancels: Vec<(Option<usize>, String, Flow)>,
) -> Result<(), String> {
    let cancel = |order_id: &String, flow: Flow, attempt: u32, reason: &str| {
        door.send(CancelOrderCommand {
            order_id: order_id.clone(),
            flow,
            reason: reason.into(),
            attempt,
        })
    };
    let mut sent = Vec::new();
    while !cancels.is_empty() {
        let mut waiting = Vec::new();
        for (steps, order_id, flow) in cancels {
            let saga = system
                .sagas()
                .repository()
                .load(&order_id)
                .await
                .map_err(|e| e.to_string())?;
            let due = match steps {
                None => true,
                Some(steps) => saga.version > 0 && saga.state.completed_steps().len() >= steps,
            };
            if due {
                cancel(&order_id, flow, 1, "changed my mind")
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                sent.push((order_id, flow));
            } else {
                waiting.push((steps, order_id, flow));
            }
        }
        cancels = waiting;
        if !cancels.is_empty() {
            // One invocation's worth of simulated time: the next step can happen.
            let next = system.clock().now().plus_millis(1);
            system.run_until(next).await.map_err(|e| e.to_string())?;
        }
    }
    system.run_until_idle().await.map_err(|e| e.to_string())?;
    for (order_id, flow) in &sent {
        cancel(order_id, *flow, 2, "still want it cancelled")
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Runs the demo; returns whether every invariant held.
async fn run(args: &Args) -> Result<bool, String> {
    let trace = args
        .trace
        .as_deref()
        .map(trace::OrderTrace::install)
        .transpose()?;
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
    let last = planned.len().saturating_sub(1);
    let mut rows = Vec::with_capacity(planned.len());
    let (mut cancels, mut cancelled) = (Vec::new(), 0usize);
    for (i, order) in planned.into_iter().enumerate() {
        let placement = door
            .send(PlaceOrderCommand(order.request.clone()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if order.scenario == Scenario::CustomerCancel
            && matches!(placement, Placement::Accepted { .. })
        {
            // Only an orchestrated order has a saga to watch; the others are cancelled at once
            // (a choreographed one while it runs, an in-process one after it ran).
            let steps = (order.request.flow == Flow::Orchestrated).then(|| {
                cancelled += 1;
                CANCEL_AFTER_STEPS[cancelled % CANCEL_AFTER_STEPS.len()]
            });
            cancels.push((steps, order.request.order_id.clone(), order.request.flow));
        }
        rows.push(OrderRow {
            order_id: order.request.order_id.clone(),
            flow: order.request.flow,
            scenario: order.scenario,
            placement,
        });
        // Let the system work while orders keep arriving, so flows interleave on the broker.
        if i % args.batch == args.batch - 1 || i == last {
            run_batch(&system, &door, std::mem::take(&mut cancels)).await?;
        }
    }
    let stats = system.run_until_idle().await.map_err(|e| e.to_string())?;
    let held = print_report(&system, &door, &rows, &stock, stats, args).await;
    if let Some(trace) = trace {
        trace.print();
    }
    held
}
