//! The analytics read model: orders by status, revenue captured and refunded, cancellations by
//! reason, and how long flows take; fed by every event and rebuildable by replaying them all.
//!
//! Delivery is at least once, so the projection remembers each stream's last applied sequence
//! and ignores anything at or below it: a replay and a live feed with duplicates agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{OrderEvent, PaymentEvent};
use crate::event::{DecodeError, StoredEvent, Timestamp};
use crate::mediator::Query;
use crate::upcast::Upcasters;

/// Count, sum, minimum and maximum of durations in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurationStats {
    /// How many.
    pub count: u64,
    /// Sum of all durations.
    pub total_ms: i64,
    /// Shortest.
    pub min_ms: i64,
    /// Longest.
    pub max_ms: i64,
}

impl DurationStats {
    fn record(&mut self, ms: i64) {
        self.min_ms = if self.count == 0 {
            ms
        } else {
            self.min_ms.min(ms)
        };
        self.max_ms = self.max_ms.max(ms);
        self.total_ms = self.total_ms.saturating_add(ms);
        self.count += 1;
    }

    /// The mean, or zero when empty.
    pub fn mean_ms(&self) -> i64 {
        if self.count == 0 {
            0
        } else {
            self.total_ms / self.count as i64
        }
    }
}

/// What the analytics query returns: everything the read model knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyticsSummary {
    /// Orders per status (`created`, `completed`, `cancelled`).
    pub orders_by_status: BTreeMap<String, u64>,
    /// Orders per flow (`orchestrated`, `choreographed`, `in-process`).
    pub orders_by_flow: BTreeMap<String, u64>,
    /// Money captured per currency, in minor units.
    pub captured_minor: BTreeMap<String, i64>,
    /// Money refunded per currency, in minor units.
    pub refunded_minor: BTreeMap<String, i64>,
    /// Cancelled orders per reason code.
    pub cancellations_by_reason: BTreeMap<String, u64>,
    /// From order created to completed or cancelled, per outcome.
    pub order_durations: BTreeMap<String, DurationStats>,
    /// From saga started to completed or aborted, per outcome.
    pub saga_durations: BTreeMap<String, DurationStats>,
    /// Events applied per event type.
    pub events_by_type: BTreeMap<String, u64>,
}

/// The analytics projection's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyticsProjection {
    summary: AnalyticsSummary,
    positions: BTreeMap<String, u64>,
    order_status: BTreeMap<String, String>,
    order_created_at: BTreeMap<String, Timestamp>,
    saga_started_at: BTreeMap<String, Timestamp>,
    duplicates_ignored: u64,
}

/// What applying one event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The event changed the read model.
    New,
    /// The event was seen before (at or below its stream's position) and was ignored.
    Duplicate,
}

/// The query for the analytics summary, answered through the mediator's query bus.
#[derive(Clone, Copy, Debug, Default)]
pub struct GetAnalyticsSummary;

impl Query for GetAnalyticsSummary {
    type Output = AnalyticsSummary;
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, by: i64) {
    let entry = map.entry(key.to_string()).or_default();
    *entry = entry.saturating_add_signed(by);
    if *entry == 0 {
        map.remove(key);
    }
}

impl AnalyticsProjection {
    /// An empty read model.
    pub fn new() -> Self {
        Self::default()
    }

    /// The read model rebuilt from every event, in commit order.
    pub fn replay<'a>(
        events: impl IntoIterator<Item = &'a StoredEvent>,
        upcasters: &Upcasters,
    ) -> Result<Self, DecodeError> {
        let mut projection = Self::new();
        for event in events {
            projection.apply(event, upcasters)?;
        }
        Ok(projection)
    }

    /// The summary the query returns.
    pub fn summary(&self) -> &AnalyticsSummary {
        &self.summary
    }

    /// How many redelivered events were ignored.
    pub fn duplicates_ignored(&self) -> u64 {
        self.duplicates_ignored
    }

    /// Applies one event, ignoring it if its stream has already passed its sequence.
    pub fn apply(
        &mut self,
        event: &StoredEvent,
        upcasters: &Upcasters,
    ) -> Result<Applied, DecodeError> {
        let stream = event.stream_id().to_string();
        if self
            .positions
            .get(&stream)
            .is_some_and(|&at| at >= event.sequence)
        {
            self.duplicates_ignored += 1;
            return Ok(Applied::Duplicate);
        }
        // Decode before touching any state, so a bad event leaves the model as it was.
        match event.aggregate_type.as_str() {
            "order" => self.apply_order(event, event.decode::<OrderEvent>(upcasters)?.payload),
            "payment" => self.apply_payment(event.decode::<PaymentEvent>(upcasters)?.payload),
            "saga" => self.apply_saga(event),
            _ => {}
        }
        self.positions.insert(stream, event.sequence);
        bump(&mut self.summary.events_by_type, &event.event_type, 1);
        Ok(Applied::New)
    }

    fn set_status(&mut self, order_id: &str, status: &str) {
        if let Some(old) = self
            .order_status
            .insert(order_id.to_string(), status.to_string())
        {
            bump(&mut self.summary.orders_by_status, &old, -1);
        }
        bump(&mut self.summary.orders_by_status, status, 1);
    }

    fn finish_order(&mut self, event: &StoredEvent, order_id: &str, outcome: &str) {
        self.set_status(order_id, outcome);
        if let Some(created) = self.order_created_at.remove(order_id) {
            self.summary
                .order_durations
                .entry(outcome.to_string())
                .or_default()
                .record(event.occurred_at.millis_since(created));
        }
    }

    fn apply_order(&mut self, event: &StoredEvent, order: OrderEvent) {
        match order {
            OrderEvent::Created { order_id, flow, .. } => {
                self.set_status(&order_id, "created");
                bump(&mut self.summary.orders_by_flow, &flow.to_string(), 1);
                self.order_created_at.insert(order_id, event.occurred_at);
            }
            OrderEvent::Completed { order_id } => self.finish_order(event, &order_id, "completed"),
            OrderEvent::Cancelled {
                order_id, reason, ..
            } => {
                self.finish_order(event, &order_id, "cancelled");
                bump(&mut self.summary.cancellations_by_reason, &reason.code, 1);
            }
        }
    }

    fn apply_payment(&mut self, payment: PaymentEvent) {
        match payment {
            PaymentEvent::Processed { amount, .. } => {
                *self
                    .summary
                    .captured_minor
                    .entry(amount.currency.code().to_string())
                    .or_default() += amount.amount_minor;
            }
            PaymentEvent::Refunded { amount, .. } => {
                *self
                    .summary
                    .refunded_minor
                    .entry(amount.currency.code().to_string())
                    .or_default() += amount.amount_minor;
            }
            PaymentEvent::Declined { .. } | PaymentEvent::Voided { .. } => {}
        }
    }

    fn apply_saga(&mut self, event: &StoredEvent) {
        let saga_id = &event.aggregate_id;
        let outcome = match event.event_type.as_str() {
            "saga.started" => {
                self.saga_started_at
                    .insert(saga_id.clone(), event.occurred_at);
                return;
            }
            "saga.completed" => "completed",
            "saga.aborted" => {
                let failed = event
                    .payload
                    .get("compensation_failed")
                    .and_then(|v| v.as_array())
                    .is_some_and(|steps| !steps.is_empty());
                if failed {
                    "compensation_failed"
                } else {
                    "compensated"
                }
            }
            _ => return,
        };
        if let Some(started) = self.saga_started_at.remove(saga_id) {
            self.summary
                .saga_durations
                .entry(outcome.to_string())
                .or_default()
                .record(event.occurred_at.millis_since(started));
        }
    }
}
