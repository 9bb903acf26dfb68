//! The orders of the events table, each folded through the order aggregate from its own
//! stream: status, flow, total, age and, for a cancelled one, why. One `Scan` that returns only
//! the order streams' events (a few per order): a tool for a person, not a hot path.

use std::collections::BTreeMap;

use sagaflow_dynamodb::DynamoEventStore;
use sagaflow_eventsourcing::aggregate::Aggregate;
use sagaflow_eventsourcing::StoredEvent;
use sagaflow_orders::domain::order::{Order, OrderEvent, OrderStatus};
use serde::Serialize;

use crate::error::OperatorError;
use crate::time::iso;

/// One order, as its stream leaves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrderRow {
    /// The order.
    pub order_id: String,
    /// `created` (still running), `completed` or `cancelled`.
    pub status: String,
    /// `orchestrated`, `choreographed` or `in-process`.
    pub flow: String,
    /// The total of its lines, as `12.50 EUR`.
    pub total: String,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When, as ISO time.
    pub created: String,
    /// When its last event was written, in milliseconds since the Unix epoch.
    pub updated_ms: i64,
    /// Why it was cancelled (the reason's code), if it was.
    pub cancel_reason: Option<String>,
}

/// Which orders a list keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only orders with this status (`created`, `completed`, `cancelled`).
    pub status: Option<String>,
    /// Only orders of this flow.
    pub flow: Option<String>,
    /// Only orders created longer ago than this many milliseconds.
    pub older_than_ms: Option<i64>,
}

impl OrderFilter {
    /// Whether `row` passes, at `now_ms`.
    pub fn keeps(&self, row: &OrderRow, now_ms: i64) -> bool {
        self.status.as_ref().is_none_or(|s| *s == row.status)
            && self.flow.as_ref().is_none_or(|f| *f == row.flow)
            && self
                .older_than_ms
                .is_none_or(|age| now_ms - row.created_ms >= age)
    }
}

/// Every order in `store`, newest first.
pub async fn list(store: &DynamoEventStore) -> Result<Vec<OrderRow>, OperatorError> {
    Ok(rows(&store.events_of_type("order").await?))
}

/// The orders of `events` (order streams' events, each stream in sequence order), newest
/// first. An event that cannot be read leaves its order out rather than guessing its state.
pub fn rows(events: &[StoredEvent]) -> Vec<OrderRow> {
    let mut streams: BTreeMap<&str, Vec<&StoredEvent>> = BTreeMap::new();
    for event in events.iter().filter(|e| e.aggregate_type == "order") {
        streams.entry(&event.aggregate_id).or_default().push(event);
    }
    let mut rows: Vec<OrderRow> = streams
        .into_iter()
        .filter_map(|(id, events)| row(id, &events))
        .collect();
    rows.sort_by(|a, b| (b.created_ms, &b.order_id).cmp(&(a.created_ms, &a.order_id)));
    rows
}

fn row(id: &str, events: &[&StoredEvent]) -> Option<OrderRow> {
    let mut order = Order::default();
    for event in events {
        order.apply(&event.decode::<OrderEvent>().ok()?.payload);
    }
    let details = order.details.as_ref()?;
    let created_ms = events.first()?.occurred_at.as_millis();
    Some(OrderRow {
        order_id: id.to_string(),
        status: match order.status {
            OrderStatus::Completed => "completed",
            OrderStatus::Cancelled => "cancelled",
            _ => "created",
        }
        .into(),
        flow: details.flow.to_string(),
        total: order.total.map(|t| t.to_string()).unwrap_or_default(),
        created_ms,
        created: iso(created_ms),
        updated_ms: events.last()?.occurred_at.as_millis(),
        cancel_reason: order.cancel_reason.map(|r| r.code),
    })
}
