//! What the demo prints: a row per order, the analytics summary, the stock, and the invariants.

use std::collections::{BTreeMap, HashSet};

use sagaflow_embedded::world::SLOW_PROVIDER_DELAY_MS;
use sagaflow_embedded::{EmbeddedSystem, GetStockLevels, Placement, RunStats};
use sagaflow_eventsourcing::mediator::Mediator;
use sagaflow_eventsourcing::StoredEvent;
use sagaflow_orders::domain::{Flow, InventoryEvent, OrderEvent, PaymentEvent, ShipmentEvent};
use sagaflow_orders::projection::{AnalyticsProjection, GetAnalyticsSummary};

use crate::args::Args;
use crate::scenario::Scenario;

/// One placed order and what the front door said.
#[derive(Clone, Debug)]
pub struct OrderRow {
    /// The order id.
    pub order_id: String,
    /// Its flow.
    pub flow: Flow,
    /// The scenario it was built for.
    pub scenario: Scenario,
    /// Accepted or rejected at intake.
    pub placement: Placement,
}

/// What the event store says happened to one order.
#[derive(Clone, Debug, Default)]
struct OrderHistory {
    total_minor: i64,
    outcome: Option<String>,
    reason_code: Option<String>,
    steps: Vec<&'static str>,
    compensations: Vec<&'static str>,
    captured_minor: i64,
    refunded_minor: i64,
}

fn histories(events: &[StoredEvent]) -> BTreeMap<String, OrderHistory> {
    let mut by_order: BTreeMap<String, OrderHistory> = BTreeMap::new();
    for event in events {
        let h = by_order.entry(event.correlation_id.clone()).or_default();
        match event.aggregate_type.as_str() {
            "order" => match event.decode::<OrderEvent>().map(|e| e.payload) {
                Ok(OrderEvent::Created { total, .. }) => {
                    h.total_minor = total.amount_minor;
                    h.steps.push("order");
                }
                Ok(OrderEvent::Completed { .. }) => h.outcome = Some("completed".into()),
                Ok(OrderEvent::CancelRequested { .. }) => {}
                Ok(OrderEvent::Cancelled { reason, .. }) => {
                    h.outcome = Some(format!("cancelled ({})", reason.code));
                    h.reason_code = Some(reason.code);
                    h.compensations.push("cancel order");
                }
                Err(_) => {}
            },
            "payment" => match event.decode::<PaymentEvent>().map(|e| e.payload) {
                Ok(PaymentEvent::Processed { amount, .. }) => {
                    h.captured_minor += amount.amount_minor;
                    h.steps.push("payment");
                }
                Ok(PaymentEvent::Refunded { amount, .. }) => {
                    h.refunded_minor += amount.amount_minor;
                    h.compensations.push("refund");
                }
                Ok(PaymentEvent::Voided { .. }) => h.compensations.push("void payment"),
                _ => {}
            },
            "inventory" => match event.decode::<InventoryEvent>().map(|e| e.payload) {
                Ok(InventoryEvent::Reserved { .. }) => h.steps.push("stock"),
                Ok(InventoryEvent::Released { lines, .. }) if !lines.is_empty() => {
                    h.compensations.push("release stock")
                }
                _ => {}
            },
            "shipment" => match event.decode::<ShipmentEvent>().map(|e| e.payload) {
                Ok(ShipmentEvent::Scheduled { .. }) => h.steps.push("shipment"),
                Ok(ShipmentEvent::Cancelled {
                    was_scheduled: true,
                    ..
                }) => h.compensations.push("cancel shipment"),
                _ => {}
            },
            _ => {}
        }
    }
    by_order
}

fn money(minor: i64) -> String {
    if minor == 0 {
        "-".into()
    } else {
        format!("{}.{:02}", minor / 100, (minor % 100).abs())
    }
}

fn expected_outcome(scenario: Scenario, flow: Flow) -> Option<&'static str> {
    match (scenario, flow) {
        (Scenario::Success, _) => Some("completed"),
        (Scenario::Declined, _) => Some("cancelled (payment_declined)"),
        (Scenario::OutOfStock, _) => Some("cancelled (out_of_stock)"),
        (Scenario::ShipmentFailure, _) => Some("cancelled (shipment_failed)"),
        // Only the orchestrator has deadlines; the other flows wait for the slow provider.
        (Scenario::Timeout, Flow::Orchestrated) => Some("cancelled (timeout)"),
        (Scenario::Timeout, _) => Some("completed"),
        (Scenario::Invalid, _) => None,
        // An in-process saga runs to its end in one call: nothing outside can stop it.
        (Scenario::CustomerCancel, Flow::InProcess) => Some("completed"),
        (Scenario::CustomerCancel, _) => Some("cancelled (customer_cancelled)"),
    }
}

struct Checks {
    all_ok: bool,
}

impl Checks {
    fn check(&mut self, ok: bool, what: &str, detail: String) {
        let mark = if ok { "ok  " } else { "FAIL" };
        println!("  [{mark}] {what}: {detail}");
        self.all_ok &= ok;
    }
}

/// Prints everything and returns whether every invariant held.
pub async fn print_report(
    system: &EmbeddedSystem,
    door: &Mediator,
    rows: &[OrderRow],
    initial: &[(String, u32)],
    stats: RunStats,
    args: &Args,
) -> Result<bool, String> {
    let events = system.store().all_events();
    let histories = histories(&events);

    println!(
        "\nsagaflow — {} orders, seed {}, {} partitions, {}% of commits lost (forced redelivery)\n",
        rows.len(),
        args.seed,
        args.partitions,
        args.lost_commit_percent
    );
    println!(
        "{:<11} {:<13} {:<16} {:<30} {:<34} {:<38} {:>9} {:>9}",
        "ORDER", "FLOW", "SCENARIO", "OUTCOME", "STEPS RUN", "COMPENSATIONS", "CHARGED", "REFUNDED"
    );
    let shown = if args.rows == 0 {
        rows.len()
    } else {
        args.rows
    };
    let mut unexpected = Vec::new();
    let mut rejections = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let empty = OrderHistory::default();
        let history = histories.get(&row.order_id).unwrap_or(&empty);
        let outcome = match &row.placement {
            Placement::Rejected { stage, reason } => {
                // The reason names the field between backticks; the full text is printed below.
                let field = reason.split('`').nth(1).unwrap_or(reason.as_str());
                rejections.push(format!("{}: {reason}", row.order_id));
                format!("rejected at {stage} ({field})")
            }
            Placement::Accepted { .. } => history.outcome.clone().unwrap_or("NOT FINISHED".into()),
        };
        let expected = expected_outcome(row.scenario, row.flow);
        let as_expected = match (expected, &row.placement) {
            (None, Placement::Rejected { .. }) => true,
            (Some(want), Placement::Accepted { .. }) => history.outcome.as_deref() == Some(want),
            _ => false,
        };
        if !as_expected {
            unexpected.push(format!(
                "{} ({} {}): {outcome}",
                row.order_id, row.flow, row.scenario
            ));
        }
        if i < shown {
            let mut outcome_cell = outcome.clone();
            if outcome_cell.len() > 30 {
                outcome_cell.truncate(27);
                outcome_cell.push_str("...");
            }
            println!(
                "{:<11} {:<13} {:<16} {:<30} {:<34} {:<38} {:>9} {:>9}",
                row.order_id,
                row.flow.to_string(),
                row.scenario.to_string(),
                outcome_cell,
                if history.steps.is_empty() {
                    "-".into()
                } else {
                    history.steps.join(" > ")
                },
                if history.compensations.is_empty() {
                    "-".into()
                } else {
                    history.compensations.join(" > ")
                },
                money(history.captured_minor),
                money(history.refunded_minor),
            );
        }
    }
    if shown < rows.len() {
        println!("... {} more rows (--rows 0 prints all)", rows.len() - shown);
    }
    if !rejections.is_empty() {
        println!("\nRefused at intake (nothing was written):");
        for line in rejections.iter().take(shown.max(1)) {
            println!("  {line}");
        }
    }

    let summary = system
        .analytics_queries()
        .query(GetAnalyticsSummary)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    println!("\nAnalytics (the analytics function's read model, through its query bus)");
    println!("  orders by status:   {}", join(&summary.orders_by_status));
    println!("  orders by flow:     {}", join(&summary.orders_by_flow));
    println!(
        "  revenue:            captured {} EUR, refunded {} EUR, net {} EUR",
        money(*summary.captured_minor.get("EUR").unwrap_or(&0)),
        money(*summary.refunded_minor.get("EUR").unwrap_or(&0)),
        money(
            summary.captured_minor.get("EUR").unwrap_or(&0)
                - summary.refunded_minor.get("EUR").unwrap_or(&0)
        ),
    );
    println!(
        "  cancellations:      {}",
        join(&summary.cancellations_by_reason)
    );
    for (label, stats) in [
        ("order durations", &summary.order_durations),
        ("saga durations", &summary.saga_durations),
    ] {
        let parts: Vec<String> = stats
            .iter()
            .map(|(outcome, d)| {
                format!(
                    "{outcome} n={} mean={}ms max={}ms",
                    d.count,
                    d.mean_ms(),
                    d.max_ms
                )
            })
            .collect();
        println!("  {label:<19} {}", parts.join("; "));
    }

    let stock = door
        .query(GetStockLevels(
            initial.iter().map(|(sku, _)| sku.clone()).collect(),
        ))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    println!("\nStock (compensation puts reserved units back)");
    println!(
        "  {:<6} {:>8} {:>10} {:>9} {:>8}",
        "SKU", "INITIAL", "AVAILABLE", "RESERVED", "SHIPPED"
    );
    let mut stock_ok = true;
    for (sku, initial_qty) in initial {
        let level = stock.get(sku).copied().unwrap_or_default();
        stock_ok &= level.total() == u64::from(*initial_qty) && level.reserved == 0;
        println!(
            "  {:<6} {:>8} {:>10} {:>9} {:>8}",
            sku, initial_qty, level.available, level.reserved, level.shipped
        );
    }

    let broker = system.broker_stats();
    println!(
        "\nDelivery: {} records published ({} by the relay), {} function invocations handled {} records, {} of them redelivered ({} commits lost); {} records retried, {} dead-lettered; {} timer runs moved {} sagas on (slow provider holds charges {}s)",
        broker.published,
        stats.relayed,
        stats.invocations,
        stats.records,
        broker.redelivered,
        broker.lost_commits,
        stats.retried,
        stats.dead_lettered,
        stats.timer_runs,
        stats.deadlines_fired,
        SLOW_PROVIDER_DELAY_MS / 1000
    );

    println!("\nInvariants");
    let mut checks = Checks { all_ok: true };
    let accepted: Vec<&OrderRow> = rows
        .iter()
        .filter(|r| matches!(r.placement, Placement::Accepted { .. }))
        .collect();
    let unfinished = accepted
        .iter()
        .filter(|r| {
            histories
                .get(&r.order_id)
                .and_then(|h| h.outcome.as_ref())
                .is_none()
        })
        .count();
    checks.check(
        unfinished == 0,
        "every accepted order is completed or cancelled",
        format!("{} accepted, {unfinished} unfinished", accepted.len()),
    );
    checks.check(
        unexpected.is_empty(),
        "every order ended as its scenario says",
        if unexpected.is_empty() {
            format!("{} orders", rows.len())
        } else {
            unexpected.join("; ")
        },
    );
    let money_broken: Vec<&String> = histories
        .iter()
        .filter(|(_, h)| match h.outcome.as_deref() {
            Some("completed") => h.captured_minor - h.refunded_minor != h.total_minor,
            Some(_) => h.captured_minor != h.refunded_minor,
            None => false,
        })
        .map(|(id, _)| id)
        .collect();
    checks.check(
        money_broken.is_empty(),
        "captured - refunded = total if completed, 0 if cancelled",
        format!("{} orders broken", money_broken.len()),
    );
    checks.check(
        stock_ok,
        "available + reserved + shipped = initial stock, nothing left reserved",
        format!("{} SKUs", initial.len()),
    );
    let mut ids = HashSet::new();
    let duplicated = events
        .iter()
        .filter(|e| !ids.insert(e.event_id.clone()))
        .count();
    checks.check(
        duplicated == 0,
        "no event stored twice",
        format!("{} events, {duplicated} duplicated", events.len()),
    );
    let sagas = unfinished_sagas(&events);
    checks.check(
        sagas == 0,
        "every saga completed or compensated",
        format!("{sagas} still running"),
    );
    let rebuilt = AnalyticsProjection::replay(&events).map_err(|e| e.to_string())?;
    checks.check(
        rebuilt.summary() == &summary,
        "analytics read model equals a fresh replay of the store",
        format!(
            "{} duplicate deliveries ignored by the live model",
            system.analytics().duplicates_ignored()
        ),
    );
    let dead = system.dead_letters();
    checks.check(
        dead.iter().all(|d| !d.reason.is_empty()),
        "every dead letter carries its reason",
        format!("{} dead letters", dead.len()),
    );
    // Each customer cancels twice: the second cancel comes after the rollback, and an
    // in-process order has nothing running to cancel at all.
    let cancels_refused: usize = rows
        .iter()
        .filter(|r| {
            r.scenario == Scenario::CustomerCancel
                && matches!(r.placement, Placement::Accepted { .. })
        })
        .map(|r| if r.flow == Flow::InProcess { 2 } else { 1 })
        .sum();
    // A redelivered record is dead-lettered again (the dead-letter path is at-least-once too):
    // letters are counted by the record they came from.
    let refused = dead
        .iter()
        .filter(|d| {
            d.reason.starts_with("saga.cancel: ") || d.reason.contains("order.request_cancel")
        })
        .map(|d| d.key.as_str())
        .collect::<HashSet<_>>()
        .len();
    checks.check(
        refused == cancels_refused,
        "every cancel that cannot apply is refused with its reason, and no other",
        format!("{refused} refused, {cancels_refused} expected"),
    );
    for letter in dead.iter().take(5) {
        println!("         dead letter {}: {}", letter.key, letter.reason);
    }
    Ok(checks.all_ok)
}

fn unfinished_sagas(events: &[StoredEvent]) -> usize {
    let mut running = HashSet::new();
    for event in events.iter().filter(|e| e.aggregate_type == "saga") {
        match event.event_type.as_str() {
            "saga.started" => {
                running.insert(event.aggregate_id.clone());
            }
            "saga.completed" | "saga.aborted" => {
                running.remove(&event.aggregate_id);
            }
            _ => {}
        }
    }
    running.len()
}

fn join<V: std::fmt::Display>(map: &BTreeMap<String, V>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
