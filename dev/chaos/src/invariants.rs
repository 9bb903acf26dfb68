//! What must hold after a chaos run, checked from every event in the events table (read
//! without faults) and the dead-letter topic.

use std::collections::{BTreeMap, HashMap};

use sagaflow_eventsourcing::Aggregate;
use sagaflow_eventsourcing::StoredEvent;
use sagaflow_local_trigger::DeadLetterRecord;
use sagaflow_orders::domain::{InventoryEvent, OrderEvent, PaymentEvent, Stock, StockEvent};
use sagaflow_orders::projection::{AnalyticsProjection, AnalyticsSummary};
use sagaflow_saga::{InstanceStatus, SagaEvent, SagaInstance};

/// One checked invariant: its name, the count it was checked over, and what broke.
#[derive(Debug)]
pub struct Check {
    /// What must hold.
    pub name: &'static str,
    /// What was counted, for the report.
    pub counted: String,
    /// Each violation found (empty when the invariant holds).
    pub broken: Vec<String>,
}

/// What the run placed, to check against.
pub struct Expected<'a> {
    /// Every order id placed.
    pub orders: &'a [String],
    /// The orchestrated ones (they have sagas).
    pub orchestrated: &'a [String],
    /// The ones whose customer cancelled them while they ran.
    pub cancelled: &'a [String],
    /// Units restocked per SKU before the run.
    pub initial_stock: &'a BTreeMap<String, u64>,
    /// Bad records mixed in.
    pub bad_records: usize,
}

fn decode<E: sagaflow_eventsourcing::DomainEvent>(
    events: &[&StoredEvent],
) -> Result<Vec<E>, String> {
    events
        .iter()
        .map(|e| {
            e.decode::<E>()
                .map(|d| d.payload)
                .map_err(|err| format!("{}: {err}", e.event_id))
        })
        .collect()
}

/// Checks every invariant.
pub fn check_all(
    events: &[StoredEvent],
    expected: &Expected<'_>,
    analytics: &AnalyticsSummary,
    dead_letters: &[DeadLetterRecord],
) -> Vec<Check> {
    let mut streams: BTreeMap<(String, String), Vec<&StoredEvent>> = BTreeMap::new();
    for event in events {
        streams
            .entry((event.aggregate_type.clone(), event.aggregate_id.clone()))
            .or_default()
            .push(event);
    }
    for stream in streams.values_mut() {
        stream.sort_by_key(|e| e.sequence);
    }
    let stream = |kind: &str, id: &str| {
        streams
            .get(&(kind.to_string(), id.to_string()))
            .cloned()
            .unwrap_or_default()
    };
    vec![
        orders_terminal(expected, &stream),
        sagas_finished(expected, &stream),
        cancels_once(expected, &stream),
        money(expected, &stream),
        stock(expected, &stream),
        no_duplicates(&streams),
        effects_once(&streams),
        analytics_matches(events, analytics),
        dead_letters_have_reasons(expected, dead_letters),
    ]
}

type StreamOf<'s, 'e> = dyn Fn(&str, &str) -> Vec<&'e StoredEvent> + 's;

/// A customer's cancel takes effect at most once, and only on an order it was sent for (a
/// `saga.cancelled` of an orchestrated order's saga, an `order.cancel_requested` of a
/// choreographed order); an order it reached in time ends cancelled for that reason, one it
/// reached too late ended as it would have.
fn cancels_once(expected: &Expected<'_>, stream: &StreamOf<'_, '_>) -> Check {
    let (mut in_time, mut too_late, mut broken) = (0, 0, Vec::new());
    for id in expected.orders {
        let order_events = stream("order", id);
        let taken = stream("saga", id)
            .iter()
            .chain(order_events.iter())
            .filter(|e| {
                e.event_type == "saga.cancelled" || e.event_type == "order.cancel_requested"
            })
            .count();
        let asked = expected.cancelled.contains(id);
        let order = decode::<OrderEvent>(&order_events).map(|e| e.last().cloned());
        match (asked, taken, order) {
            (false, 0, _) => {}
            (true, 1, Ok(Some(OrderEvent::Cancelled { reason, .. })))
                if reason.code == "customer_cancelled" =>
            {
                in_time += 1
            }
            (true, 0, Ok(Some(OrderEvent::Completed { .. } | OrderEvent::Cancelled { .. }))) => {
                too_late += 1
            }
            (asked, taken, order) => broken.push(format!(
                "order {id}: cancel asked {asked}, taken {taken} times, order ends {order:?}"
            )),
        }
    }
    Check {
        name: "a customer's cancel takes effect once, or is refused when too late",
        counted: format!(
            "{} cancelled orders: {in_time} cancelled by their customer, {too_late} finished first",
            expected.cancelled.len()
        ),
        broken,
    }
}

fn orders_terminal(expected: &Expected<'_>, stream: &StreamOf<'_, '_>) -> Check {
    let (mut completed, mut cancelled, mut broken) = (0, 0, Vec::new());
    for id in expected.orders {
        match decode::<OrderEvent>(&stream("order", id)).map(|e| e.last().cloned()) {
            Ok(Some(OrderEvent::Completed { .. })) => completed += 1,
            Ok(Some(OrderEvent::Cancelled { .. })) => cancelled += 1,
            Ok(last) => broken.push(format!("{id} is stuck after {last:?}")),
            Err(e) => broken.push(e),
        }
    }
    Check {
        name: "every order is completed or cancelled",
        counted: format!(
            "{completed} completed, {cancelled} cancelled of {}",
            expected.orders.len()
        ),
        broken,
    }
}

fn sagas_finished(expected: &Expected<'_>, stream: &StreamOf<'_, '_>) -> Check {
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut broken = Vec::new();
    let (mut resent, mut confirmed_late) = (0, 0);
    for id in expected.orchestrated {
        match decode::<SagaEvent>(&stream("saga", id)) {
            Ok(events) => {
                let mut given_up = Vec::new();
                for event in &events {
                    match event {
                        SagaEvent::CompensationRequested { attempt, .. } if *attempt > 1 => {
                            resent += 1
                        }
                        SagaEvent::CompensationFailed { step, .. } => given_up.push(step),
                        SagaEvent::StepCompensated { step, .. } if given_up.contains(&step) => {
                            confirmed_late += 1
                        }
                        _ => {}
                    }
                }
                let saga = SagaInstance::from_events(&events);
                *by_status.entry(format!("{:?}", saga.status())).or_default() += 1;
                if !matches!(
                    saga.status(),
                    InstanceStatus::Completed | InstanceStatus::Compensated
                ) {
                    broken.push(format!("saga {id} is {:?}", saga.status()));
                }
            }
            Err(e) => broken.push(e),
        }
    }
    Check {
        name: "every saga is completed or compensated",
        counted: format!(
            "{by_status:?}; {resent} compensations sent again, {confirmed_late} confirmed after \
             they were given up"
        ),
        broken,
    }
}

fn money(expected: &Expected<'_>, stream: &StreamOf<'_, '_>) -> Check {
    let mut broken = Vec::new();
    let mut captured_total = 0i64;
    for id in expected.orders {
        let (order, payment) = match (
            decode::<OrderEvent>(&stream("order", id)),
            decode::<PaymentEvent>(&stream("payment", id)),
        ) {
            (Ok(o), Ok(p)) => (o, p),
            (Err(e), _) | (_, Err(e)) => {
                broken.push(e);
                continue;
            }
        };
        let total = order.iter().find_map(|e| match e {
            OrderEvent::Created { total, .. } => Some(total.amount_minor),
            _ => None,
        });
        let completed = matches!(order.last(), Some(OrderEvent::Completed { .. }));
        let net: i64 = payment
            .iter()
            .map(|e| match e {
                PaymentEvent::Processed { amount, .. } => amount.amount_minor,
                PaymentEvent::Refunded { amount, .. } => -amount.amount_minor,
                _ => 0,
            })
            .sum();
        captured_total += net;
        let want = if completed { total.unwrap_or(0) } else { 0 };
        if net != want {
            broken.push(format!(
                "{id}: captured minus refunded is {net}, expected {want} ({})",
                if completed {
                    "completed"
                } else {
                    "not completed"
                }
            ));
        }
    }
    Check {
        name: "captured minus refunded is the total of completed orders, zero otherwise",
        counted: format!(
            "{} orders, {captured_total} minor units kept",
            expected.orders.len()
        ),
        broken,
    }
}

fn stock(expected: &Expected<'_>, stream: &StreamOf<'_, '_>) -> Check {
    let mut broken = Vec::new();
    let mut counted = Vec::new();
    let mut held: BTreeMap<(String, String), u32> = BTreeMap::new();
    for (sku, initial) in expected.initial_stock {
        let events = match decode::<StockEvent>(&stream("stock", sku)) {
            Ok(events) => events,
            Err(e) => {
                broken.push(e);
                Vec::new()
            }
        };
        for event in &events {
            if let StockEvent::Held { order_id, quantity } = event {
                held.insert((order_id.clone(), sku.clone()), *quantity);
            }
        }
        let level = Stock::from_events(&events).level;
        counted.push(format!(
            "{sku} {}+{}+{}",
            level.available, level.reserved, level.shipped
        ));
        if level.total() != *initial {
            broken.push(format!(
                "{sku}: available {} + reserved {} + shipped {} = {}, initial {initial}",
                level.available,
                level.reserved,
                level.shipped,
                level.total()
            ));
        }
        if level.reserved != 0 {
            broken.push(format!(
                "{sku}: {} units still reserved after every order ended",
                level.reserved
            ));
        }
    }
    // All or nothing: an order's reservation and its SKUs' holds were written together, so
    // each names exactly the other's lines.
    let mut reserved: BTreeMap<(String, String), u32> = BTreeMap::new();
    for order in expected.orders {
        match decode::<InventoryEvent>(&stream("inventory", order)) {
            Ok(events) => {
                for event in events {
                    if let InventoryEvent::Reserved { order_id, lines } = event {
                        for line in lines {
                            reserved.insert((order_id.clone(), line.sku), line.quantity);
                        }
                    }
                }
            }
            Err(e) => broken.push(e),
        }
    }
    if held != reserved {
        let differ = held
            .keys()
            .chain(reserved.keys())
            .find(|k| held.get(*k) != reserved.get(*k));
        if let Some((order, sku)) = differ {
            broken.push(format!(
                "{order} {sku}: the stock held {:?}, the reservation says {:?}",
                held.get(&(order.clone(), sku.clone())),
                reserved.get(&(order.clone(), sku.clone()))
            ));
        }
    }
    counted.push(format!(
        "{} lines held, each in its reservation",
        held.len()
    ));
    Check {
        name: "per SKU available + reserved + shipped equals the initial stock, and every hold is a reserved line",
        counted: counted.join(", "),
        broken,
    }
}

fn no_duplicates(streams: &BTreeMap<(String, String), Vec<&StoredEvent>>) -> Check {
    let mut broken = Vec::new();
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut total = 0;
    for ((kind, id), events) in streams {
        for (i, event) in events.iter().enumerate() {
            total += 1;
            *ids.entry(event.event_id.as_str()).or_default() += 1;
            if event.sequence != i as u64 + 1 {
                broken.push(format!(
                    "{kind}#{id}: event {} at position {}",
                    event.sequence,
                    i + 1
                ));
                break;
            }
        }
    }
    broken.extend(
        ids.into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(id, n)| format!("event {id} stored {n} times")),
    );
    Check {
        name: "no event appears twice in any stream, no gaps",
        counted: format!("{total} events in {} streams", streams.len()),
        broken,
    }
}

fn effects_once(streams: &BTreeMap<(String, String), Vec<&StoredEvent>>) -> Check {
    // One command (or reply, tick, start) is one atomic append: all its events carry its id as
    // causation and sit next to each other. The same causation in two places of a stream would
    // be the same effect applied twice.
    let mut broken = Vec::new();
    let mut effects = 0;
    for ((kind, id), events) in streams {
        let mut seen: HashMap<&str, u64> = HashMap::new();
        let mut previous: Option<&str> = None;
        for event in events {
            let cause = event.causation_id.as_str();
            if previous != Some(cause) {
                effects += 1;
                if let Some(first) = seen.insert(cause, event.sequence) {
                    broken.push(format!(
                        "{kind}#{id}: effect of `{cause}` applied at {first} and again at {}",
                        event.sequence
                    ));
                }
            }
            previous = Some(cause);
        }
    }
    Check {
        name: "no effect applied twice (one append per causing message)",
        counted: format!("{effects} effects"),
        broken,
    }
}

fn analytics_matches(events: &[StoredEvent], live: &AnalyticsSummary) -> Check {
    let mut broken = Vec::new();
    match AnalyticsProjection::replay(events) {
        Ok(replayed) if replayed.summary() == live => {}
        Ok(replayed) => broken.push(format!("table {live:?}\nreplay {:?}", replayed.summary())),
        Err(e) => broken.push(e.to_string()),
    }
    Check {
        name: "the analytics table equals a fresh replay of the events",
        counted: format!(
            "{} events by type",
            live.events_by_type.values().sum::<u64>()
        ),
        broken,
    }
}

fn dead_letters_have_reasons(expected: &Expected<'_>, letters: &[DeadLetterRecord]) -> Check {
    let mut broken: Vec<String> = letters
        .iter()
        .filter(|l| l.reason.trim().is_empty())
        .map(|l| format!("dead letter {} has no reason", l.key))
        .collect();
    if expected.bad_records > 0 && letters.is_empty() {
        broken.push(format!(
            "{} bad records were sent and none reached the dead-letter topic",
            expected.bad_records
        ));
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for letter in letters {
        let head: String = letter.reason.chars().take(40).collect();
        *reasons.entry(head).or_default() += 1;
    }
    Check {
        name: "every dead letter carries its reason",
        counted: format!(
            "{} dead letters from {} bad records, {} distinct reasons",
            letters.len(),
            expected.bad_records,
            reasons.len()
        ),
        broken,
    }
}
