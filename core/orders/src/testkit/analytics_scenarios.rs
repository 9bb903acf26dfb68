//! Analytics read model behaviour every backend must show; call each scenario with a fresh,
//! empty read model (the summary spans the whole model, so scenarios cannot share one).

use serde_json::json;

use crate::domain::fixtures::address;
use crate::domain::{CancelReason, Flow, Money, OrderEvent, PaymentEvent, RefundStatus};
use crate::flow::{FlowEnvelope, FlowEvent};
use crate::projection::{
    AnalyticsProjection, AnalyticsStore, Applied, DurationMetric, DurationSample,
};
use sagaflow_eventsourcing::event::{
    envelope_events, event_id_for, CommandMeta, DecodeError, EventEnvelope, StreamId, Timestamp,
};
use sagaflow_eventsourcing::StoredEvent;

const START: i64 = 1_764_547_200_000;

fn saga_event(order_id: &str, sequence: u64, event_type: &str, at: i64) -> StoredEvent {
    let stream = StreamId::new("saga", order_id);
    EventEnvelope {
        trace_context: None,
        event_id: event_id_for(&stream, sequence),
        aggregate_type: "saga".into(),
        aggregate_id: order_id.into(),
        sequence,
        event_type: event_type.into(),
        schema_version: 1,
        occurred_at: Timestamp(at),
        correlation_id: order_id.into(),
        causation_id: format!("cause-{order_id}-{sequence}"),
        payload: match event_type {
            "saga.started" => json!({
                "saga_type": "order-processing", "saga_id": order_id, "correlation_id": order_id,
                "input": {}, "started_at": at
            }),
            "saga.completed" => json!({ "completion_commands": [], "finished_at": at }),
            _ => json!({ "reason": "out of stock", "compensation_failed": [], "finished_at": at }),
        },
    }
}

fn at(ms: i64) -> CommandMeta {
    CommandMeta::new("corr", "cause", Timestamp(START + ms))
}

/// The events of `orders` orders named `<prefix>-<n>`, each stream in sequence order: every
/// third order is cancelled after a refund, the others complete; all run a saga.
pub fn order_history(prefix: &str, orders: u32) -> Vec<StoredEvent> {
    let mut events = Vec::new();
    for n in 0..orders {
        let order_id = format!("{prefix}-{n}");
        let total = Money::eur(1_000 + i64::from(n) * 125);
        let took = 40 + i64::from(n) * 13;
        let order = StreamId::new("order", &order_id);
        let payment = StreamId::new("payment", &order_id);
        let flow = if n % 2 == 0 {
            Flow::Orchestrated
        } else {
            Flow::Choreographed
        };
        events.push(saga_event(&order_id, 1, "saga.started", START));
        events.extend(envelope_events(
            &order,
            0,
            &[OrderEvent::Created {
                order_id: order_id.clone(),
                customer_id: "cust-1".into(),
                lines: Vec::new(),
                total: total.clone(),
                payment_method: "card-ok".into(),
                shipping_address: address(),
                flow,
            }],
            &at(1),
        ));
        events.extend(envelope_events(
            &payment,
            0,
            &[PaymentEvent::Processed {
                order_id: order_id.clone(),
                amount: total.clone(),
            }],
            &at(2),
        ));
        if n % 3 == 2 {
            events.extend(envelope_events(
                &payment,
                1,
                &[PaymentEvent::Refunded {
                    order_id: order_id.clone(),
                    amount: total.clone(),
                    reason: "out of stock".into(),
                }],
                &at(took),
            ));
            events.extend(envelope_events(
                &order,
                1,
                &[OrderEvent::Cancelled {
                    order_id: order_id.clone(),
                    reason: CancelReason::new("out_of_stock", "no MUG left"),
                    refund_status: RefundStatus::Refunded,
                }],
                &at(took + 1),
            ));
            events.push(saga_event(&order_id, 2, "saga.aborted", START + took + 2));
        } else {
            events.extend(envelope_events(
                &order,
                1,
                &[OrderEvent::Completed {
                    order_id: order_id.clone(),
                }],
                &at(took),
            ));
            events.push(saga_event(&order_id, 2, "saga.completed", START + took + 1));
        }
    }
    events
}

/// Each stored event of `history` decoded, as the edge hands them on.
pub fn typed(history: &[StoredEvent]) -> Vec<FlowEnvelope> {
    history
        .iter()
        .map(|e| FlowEvent::decode(e).expect("history decodes"))
        .collect()
}

fn replayed(events: &[StoredEvent]) -> AnalyticsProjection {
    AnalyticsProjection::replay(events).expect("history decodes")
}

/// How many order durations a newly applied `event` completed, checked: one if it ends its
/// order, none otherwise.
fn checked_order_durations(event: &FlowEnvelope, durations: &[DurationSample]) -> usize {
    // Only an order's or a saga's last event completes a duration.
    let ends = ["order.completed", "order.cancelled"].contains(&event.event_type.as_str());
    let orders = durations
        .iter()
        .filter(|d| d.metric == DurationMetric::Order)
        .count();
    assert_eq!(orders, usize::from(ends), "{}", event.event_type);
    orders
}

/// Every event delivered twice, and each stream's first event again at the end: each applies
/// once, and the summary equals a replay of the history.
pub async fn applies_each_event_once<S: AnalyticsStore>(store: &S, prefix: &str) {
    let stored = order_history(prefix, 9);
    let history = typed(&stored);
    let mut new = 0;
    let mut order_durations = 0;
    for event in &history {
        for delivery in 0..2 {
            let applied = store.apply(event).await.expect("apply");
            match (&applied, delivery) {
                (Applied::New(durations), 0) => {
                    new += 1;
                    order_durations += checked_order_durations(event, durations);
                }
                (Applied::Duplicate, 1) => {}
                _ => panic!("{} delivery {delivery}: {applied:?}", event.event_id),
            }
        }
    }
    assert_eq!(order_durations, 9, "each order's duration, once");
    for stale in history.iter().filter(|e| e.sequence == 1) {
        assert_eq!(store.apply(stale).await, Ok(Applied::Duplicate));
    }
    assert_eq!(new, history.len());
    let summary = store.summary().await.expect("summary");
    let expected = replayed(&stored);
    assert_eq!(&summary, expected.summary());
    assert_eq!(summary.orders_by_status.get("completed"), Some(&6));
    assert_eq!(summary.orders_by_status.get("cancelled"), Some(&3));
    assert_eq!(summary.order_durations["completed"].count, 6);
}

/// Events applied in runs, as a batch brings them: a stream's events in one run (one with a
/// redelivery inside it), then runs mixing the streams of one order, then the whole history
/// again as one run. Each event is new exactly once, the durations come with the events that
/// end them, and the summary equals a replay of the history.
pub async fn applies_runs_as_one<S: AnalyticsStore>(store: &S, prefix: &str) {
    let stored = order_history(prefix, 9);
    let history = typed(&stored);
    let (by_stream, mixed): (Vec<_>, Vec<_>) = history
        .iter()
        .partition(|e| e.aggregate_id.ends_with(['0', '1', '2', '3', '4']));
    let mut streams: Vec<Vec<FlowEnvelope>> = Vec::new();
    for event in by_stream {
        match streams
            .iter_mut()
            .find(|run| crate::projection::same_stream(&run[0], event))
        {
            Some(run) => run.push(event.clone()),
            None => streams.push(vec![event.clone()]),
        }
    }
    let mut new = 0;
    let mut order_durations = 0;
    for mut run in streams {
        // The first event delivered again right behind itself.
        run.insert(1, run[0].clone());
        let applied = store.apply_run(&run).await.expect("apply_run");
        assert_eq!(applied.len(), run.len());
        assert_eq!(applied[1], Applied::Duplicate, "{}", run[0].event_id);
        for (event, applied) in run
            .iter()
            .zip(&applied)
            .filter(|(_, a)| **a != Applied::Duplicate)
        {
            let Applied::New(durations) = applied else {
                unreachable!("duplicates filtered out")
            };
            new += 1;
            order_durations += checked_order_durations(event, durations);
        }
    }
    let mixed: Vec<FlowEnvelope> = mixed.into_iter().cloned().collect();
    for order_run in mixed.chunk_by(|a, b| a.aggregate_id == b.aggregate_id) {
        let applied = store.apply_run(order_run).await.expect("apply_run");
        assert_eq!(applied.len(), order_run.len());
        for applied in applied {
            let Applied::New(durations) = applied else {
                panic!(
                    "{}: a first delivery was a duplicate",
                    order_run[0].aggregate_id
                )
            };
            new += 1;
            order_durations += durations
                .iter()
                .filter(|d| d.metric == DurationMetric::Order)
                .count();
        }
    }
    assert_eq!(new, history.len());
    assert_eq!(order_durations, 9, "each order's duration, once");
    let again = store.apply_run(&history).await.expect("apply_run");
    assert!(again.iter().all(|a| *a == Applied::Duplicate), "{again:?}");
    let summary = store.summary().await.expect("summary");
    assert_eq!(&summary, replayed(&stored).summary());
}

/// An event whose payload cannot be read is refused where it is decoded, before any read
/// model sees it, and changes nothing; the stream's next good event still applies.
pub async fn bad_event_changes_nothing<S: AnalyticsStore>(store: &S, prefix: &str) {
    let history = order_history(prefix, 1);
    let created = history
        .iter()
        .find(|e| e.event_type == "order.created")
        .expect("created")
        .clone();
    let mut broken = created.clone();
    broken.payload = json!({ "order_id": 7 });
    let before = store.summary().await.expect("summary");
    assert!(
        matches!(
            FlowEvent::decode(&broken),
            Err(DecodeError::InvalidPayload { .. })
        ),
        "a broken payload is a decode error"
    );
    assert_eq!(store.summary().await.expect("summary"), before);
    let created = FlowEvent::decode(&created).expect("created decodes");
    assert_eq!(store.apply(&created).await, Ok(Applied::New(vec![])));
    let after = store.summary().await.expect("summary");
    assert_eq!(after.orders_by_status.get("created"), Some(&1));
}

/// One test per read model scenario for a backend, so a failure names its scenario.
///
/// `$read_model` is an expression (it may `.await`) giving a fresh, empty read model,
/// evaluated in each test. Attributes given before `read_model:` go on every test.
#[macro_export]
macro_rules! analytics_scenarios {
    ($(#[$attr:meta])* read_model: $read_model:expr) => {
        $crate::analytics_scenarios!(@each [$(#[$attr])*] $read_model;
            applies_each_event_once,
            applies_runs_as_one,
            bad_event_changes_nothing,
        );
    };
    (@each [$($attrs:tt)*] $read_model:expr;) => {};
    (@each [$($attrs:tt)*] $read_model:expr; $scenario:ident, $($rest:ident,)*) => {
        $($attrs)*
        #[tokio::test]
        async fn $scenario() {
            let read_model = $read_model;
            $crate::testkit::analytics_scenarios::$scenario(&read_model, stringify!($scenario)).await;
        }
        $crate::analytics_scenarios!(@each [$($attrs)*] $read_model; $($rest,)*);
    };
}
