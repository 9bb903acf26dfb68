//! The analytics read model: orders by status, revenue captured and refunded, cancellations by
//! reason, and how long flows take; fed by every event and rebuildable by replaying them all.
//!
//! Delivery is at least once, so the read model remembers each stream's last applied sequence
//! and ignores anything at or below it: a replay and a live feed with duplicates agree.
//!
//! Each event is turned into an [`AnalyticsChange`] from only its own stream's [`StreamProgress`]:
//! counter deltas, duration samples, and the stream's next progress. A store that keeps the
//! progress per stream and adds the deltas in the same atomic write (the DynamoDB read model
//! does) applies every event exactly once without ever holding the whole model in memory.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::domain::{OrderEvent, PaymentEvent, Stock};
use crate::flow::{FlowEnvelope, FlowEvent};
use sagaflow_eventsourcing::event::{DecodeError, StoredEvent, Timestamp};
use sagaflow_eventsourcing::mediator::Query;
use sagaflow_eventsourcing::Aggregate;
use sagaflow_eventsourcing::{Classified, Transience};
use sagaflow_saga::SagaEvent;

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
    /// Adds one duration.
    pub fn record(&mut self, ms: i64) {
        self.merge(&DurationStats {
            count: 1,
            total_ms: ms,
            min_ms: ms,
            max_ms: ms,
        });
    }

    /// Adds every duration of `other` (stats kept apart, such as per shard, combined).
    pub fn merge(&mut self, other: &DurationStats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.min_ms = self.min_ms.min(other.min_ms);
        self.max_ms = self.max_ms.max(other.max_ms);
        self.total_ms = self.total_ms.saturating_add(other.total_ms);
        self.count += other.count;
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

/// A family of counters in [`AnalyticsSummary`], each counter named by a key within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Orders per status.
    OrdersByStatus,
    /// Orders per flow.
    OrdersByFlow,
    /// Money captured per currency.
    CapturedMinor,
    /// Money refunded per currency.
    RefundedMinor,
    /// Cancelled orders per reason code.
    CancellationsByReason,
    /// Events per event type.
    EventsByType,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 6] = [
        Metric::OrdersByStatus,
        Metric::OrdersByFlow,
        Metric::CapturedMinor,
        Metric::RefundedMinor,
        Metric::CancellationsByReason,
        Metric::EventsByType,
    ];

    /// The metric's stable name, as stores persist it (the summary's field name).
    pub fn name(self) -> &'static str {
        match self {
            Metric::OrdersByStatus => "orders_by_status",
            Metric::OrdersByFlow => "orders_by_flow",
            Metric::CapturedMinor => "captured_minor",
            Metric::RefundedMinor => "refunded_minor",
            Metric::CancellationsByReason => "cancellations_by_reason",
            Metric::EventsByType => "events_by_type",
        }
    }

    /// The metric with this name.
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// A family of duration statistics in [`AnalyticsSummary`], each named by an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DurationMetric {
    /// From order created to completed or cancelled.
    Order,
    /// From saga started to completed or aborted.
    Saga,
}

impl DurationMetric {
    /// Both metrics.
    pub const ALL: [DurationMetric; 2] = [DurationMetric::Order, DurationMetric::Saga];

    /// The metric's stable name, as stores persist it (the summary's field name).
    pub fn name(self) -> &'static str {
        match self {
            DurationMetric::Order => "order_durations",
            DurationMetric::Saga => "saga_durations",
        }
    }

    /// The metric with this name.
    pub fn from_name(name: &str) -> Option<DurationMetric> {
        DurationMetric::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// A change of one counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterDelta {
    /// The counter family.
    pub metric: Metric,
    /// The counter within it (a status, a currency, an event type).
    pub key: String,
    /// How much to add (negative to take away).
    pub delta: i64,
}

/// One measured duration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationSample {
    /// Which durations.
    pub metric: DurationMetric,
    /// The outcome it ended in.
    pub outcome: String,
    /// How long, in milliseconds.
    pub ms: i64,
}

/// What the read model remembers of one stream: how far it has applied it, and what later
/// events of the same stream need (an order's status, when an order or saga started).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamProgress {
    /// The last applied sequence (0 before the first event).
    pub position: u64,
    /// An order stream's current status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// When an order was created or a saga started, until it finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
}

/// What one new event does to the read model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalyticsChange {
    /// The stream's progress after the event.
    pub progress: StreamProgress,
    /// Counter changes, at most one per counter.
    pub counters: Vec<CounterDelta>,
    /// Durations the event completes.
    pub durations: Vec<DurationSample>,
}

impl AnalyticsChange {
    fn count(&mut self, metric: Metric, key: &str, delta: i64) {
        match self
            .counters
            .iter_mut()
            .find(|c| c.metric == metric && c.key == key)
        {
            Some(counter) => counter.delta = counter.delta.saturating_add(delta),
            None => self.counters.push(CounterDelta {
                metric,
                key: key.to_string(),
                delta,
            }),
        }
    }

    fn finish(&mut self, metric: DurationMetric, outcome: &str, at: Timestamp) {
        if let Some(started) = self.progress.started_at.take() {
            self.durations.push(DurationSample {
                metric,
                outcome: outcome.to_string(),
                ms: at.millis_since(started),
            });
        }
    }

    /// Adds a later event's change of the same stream to this one.
    fn absorb(&mut self, later: AnalyticsChange) {
        self.progress = later.progress;
        for counter in later.counters {
            self.count(counter.metric, &counter.key, counter.delta);
        }
        self.durations.extend(later.durations);
    }

    fn set_status(&mut self, status: &str) {
        if let Some(old) = self.progress.status.replace(status.to_string()) {
            self.count(Metric::OrdersByStatus, &old, -1);
        }
        self.count(Metric::OrdersByStatus, status, 1);
    }
}

/// The change `event` makes given its stream's `progress`; `None` if the stream has already
/// passed the event's sequence (a redelivery).
pub fn analytics_change(
    progress: &StreamProgress,
    event: &FlowEnvelope,
) -> Option<AnalyticsChange> {
    if progress.position >= event.sequence {
        return None;
    }
    let mut change = AnalyticsChange {
        progress: StreamProgress {
            position: event.sequence,
            ..progress.clone()
        },
        counters: Vec::new(),
        durations: Vec::new(),
    };
    match &event.payload {
        FlowEvent::Order(order) => match order {
            OrderEvent::Created { flow, .. } => {
                change.set_status("created");
                change.count(Metric::OrdersByFlow, &flow.to_string(), 1);
                change.progress.started_at = Some(event.occurred_at);
            }
            OrderEvent::Completed { .. } => {
                change.set_status("completed");
                change.finish(DurationMetric::Order, "completed", event.occurred_at);
            }
            OrderEvent::CancelRequested { .. } => change.set_status("cancelling"),
            OrderEvent::Cancelled { reason, .. } => {
                change.set_status("cancelled");
                change.finish(DurationMetric::Order, "cancelled", event.occurred_at);
                change.count(Metric::CancellationsByReason, &reason.code, 1);
            }
        },
        FlowEvent::Payment(payment) => match payment {
            PaymentEvent::Processed { amount, .. } => change.count(
                Metric::CapturedMinor,
                amount.currency.code(),
                amount.amount_minor,
            ),
            PaymentEvent::Refunded { amount, .. } => change.count(
                Metric::RefundedMinor,
                amount.currency.code(),
                amount.amount_minor,
            ),
            PaymentEvent::Declined { .. } | PaymentEvent::Voided { .. } => {}
        },
        FlowEvent::Saga(saga) => match saga {
            SagaEvent::Started { .. } => change.progress.started_at = Some(event.occurred_at),
            SagaEvent::Completed { .. } => {
                change.finish(DurationMetric::Saga, "completed", event.occurred_at)
            }
            SagaEvent::Aborted {
                compensation_failed,
                ..
            } => {
                let outcome = if !compensation_failed.is_empty() {
                    "compensation_failed"
                } else {
                    "compensated"
                };
                change.finish(DurationMetric::Saga, outcome, event.occurred_at);
            }
            _ => {}
        },
        _ => {}
    }
    change.count(Metric::EventsByType, &event.event_type, 1);
    Some(change)
}

/// What a run of one stream's events does to the read model taken together, and what it did
/// to each of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunChange {
    /// The new events' changes folded into one: the progress after the last of them, their
    /// counter changes summed (those that cancel out left out), every duration they complete;
    /// `None` if every event of the run was applied before.
    pub change: Option<AnalyticsChange>,
    /// For each event of the run, in order, whether it was new.
    pub applied: Vec<Applied>,
}

/// Whether two events are of one stream (without building their stream ids).
pub fn same_stream(a: &FlowEnvelope, b: &FlowEnvelope) -> bool {
    a.aggregate_type == b.aggregate_type && a.aggregate_id == b.aggregate_id
}

/// The change a run of events of one stream makes given the stream's `progress`, as if each
/// were applied in turn; a store writes it at once, so several events of a stream in one
/// batch cost one write instead of one each.
pub fn analytics_run_change<'a>(
    progress: &StreamProgress,
    run: impl IntoIterator<Item = &'a FlowEnvelope>,
) -> RunChange {
    let mut current = progress.clone();
    let mut folded: Option<AnalyticsChange> = None;
    let mut applied = Vec::new();
    for event in run {
        let Some(change) = analytics_change(&current, event) else {
            applied.push(Applied::Duplicate);
            continue;
        };
        current = change.progress.clone();
        applied.push(Applied::New(change.durations.clone()));
        match &mut folded {
            None => folded = Some(change),
            Some(folded) => folded.absorb(change),
        }
    }
    if let Some(folded) = &mut folded {
        folded.counters.retain(|c| c.delta != 0);
    }
    RunChange {
        change: folded,
        applied,
    }
}

impl AnalyticsSummary {
    /// The counters of one metric.
    pub fn counters(&self, metric: Metric) -> BTreeMap<String, i64> {
        let signed = |map: &BTreeMap<String, u64>| {
            map.iter()
                .map(|(k, v)| (k.clone(), i64::try_from(*v).unwrap_or(i64::MAX)))
                .collect()
        };
        match metric {
            Metric::OrdersByStatus => signed(&self.orders_by_status),
            Metric::OrdersByFlow => signed(&self.orders_by_flow),
            Metric::CapturedMinor => self.captured_minor.clone(),
            Metric::RefundedMinor => self.refunded_minor.clone(),
            Metric::CancellationsByReason => signed(&self.cancellations_by_reason),
            Metric::EventsByType => signed(&self.events_by_type),
        }
    }

    /// Adds `delta` to one counter; a counter that reaches zero is removed, so a summary
    /// rebuilt from stored counters equals one built live.
    pub fn add_to_counter(&mut self, metric: Metric, key: &str, delta: i64) {
        fn add_unsigned(map: &mut BTreeMap<String, u64>, key: &str, delta: i64) {
            let entry = map.entry(key.to_string()).or_default();
            *entry = entry.saturating_add_signed(delta);
            if *entry == 0 {
                map.remove(key);
            }
        }
        fn add_signed(map: &mut BTreeMap<String, i64>, key: &str, delta: i64) {
            let entry = map.entry(key.to_string()).or_default();
            *entry = entry.saturating_add(delta);
            if *entry == 0 {
                map.remove(key);
            }
        }
        match metric {
            Metric::OrdersByStatus => add_unsigned(&mut self.orders_by_status, key, delta),
            Metric::OrdersByFlow => add_unsigned(&mut self.orders_by_flow, key, delta),
            Metric::CapturedMinor => add_signed(&mut self.captured_minor, key, delta),
            Metric::RefundedMinor => add_signed(&mut self.refunded_minor, key, delta),
            Metric::CancellationsByReason => {
                add_unsigned(&mut self.cancellations_by_reason, key, delta)
            }
            Metric::EventsByType => add_unsigned(&mut self.events_by_type, key, delta),
        }
    }

    /// The duration statistics of one metric, per outcome.
    pub fn durations_mut(
        &mut self,
        metric: DurationMetric,
    ) -> &mut BTreeMap<String, DurationStats> {
        match metric {
            DurationMetric::Order => &mut self.order_durations,
            DurationMetric::Saga => &mut self.saga_durations,
        }
    }

    /// Adds what one event changed.
    pub fn add(&mut self, change: &AnalyticsChange) {
        for counter in &change.counters {
            self.add_to_counter(counter.metric, &counter.key, counter.delta);
        }
        for sample in &change.durations {
            self.durations_mut(sample.metric)
                .entry(sample.outcome.clone())
                .or_default()
                .record(sample.ms);
        }
    }
}

/// The analytics read model held in memory: the summary and every stream's progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyticsProjection {
    summary: AnalyticsSummary,
    streams: BTreeMap<String, StreamProgress>,
    duplicates_ignored: u64,
}

/// What applying one event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The event changed the read model; these are the durations it completed (an order's
    /// or a saga's, when the event ended one), each measured exactly once.
    New(Vec<DurationSample>),
    /// The event was seen before (at or below its stream's position) and was ignored.
    Duplicate,
}

/// The query for the analytics summary, answered through the mediator's query bus.
#[derive(Clone, Copy, Debug, Default)]
pub struct GetAnalyticsSummary;

impl Query for GetAnalyticsSummary {
    type Output = Result<AnalyticsSummary, ReadModelError>;
}

impl AnalyticsProjection {
    /// An empty read model.
    pub fn new() -> Self {
        Self::default()
    }

    /// The read model rebuilt from every stored event, each decoded as it is read; events of
    /// one stream must come in sequence order, streams may interleave in any way.
    pub fn replay<'a>(
        events: impl IntoIterator<Item = &'a StoredEvent>,
    ) -> Result<Self, DecodeError> {
        let mut projection = Self::new();
        for event in events.into_iter().filter(|e| Self::reads(e)) {
            projection.apply(&FlowEvent::decode(event)?);
        }
        Ok(projection)
    }

    /// Whether the read model takes `event` in: every event of the order flow, but not a SKU's
    /// stock, whose topic the analytics function does not read. A replay of the events table
    /// skips what the live model never sees.
    pub fn reads(event: &StoredEvent) -> bool {
        event.aggregate_type != Stock::TYPE
    }

    /// The summary the query returns.
    pub fn summary(&self) -> &AnalyticsSummary {
        &self.summary
    }

    /// How many redelivered events were ignored.
    pub fn duplicates_ignored(&self) -> u64 {
        self.duplicates_ignored
    }

    /// Applies a run of events, each stream's consecutive events as one change (the same
    /// result as applying them one by one, which a test checks).
    pub fn apply_run(&mut self, run: &[FlowEnvelope]) -> Vec<Applied> {
        let mut applied = Vec::with_capacity(run.len());
        for stream_run in run.chunk_by(same_stream) {
            let stream = stream_run[0].stream_id().to_string();
            let progress = self.streams.get(&stream).cloned().unwrap_or_default();
            let outcome = analytics_run_change(&progress, stream_run);
            if let Some(change) = &outcome.change {
                self.summary.add(change);
                self.streams.insert(stream, change.progress.clone());
            }
            self.duplicates_ignored += outcome
                .applied
                .iter()
                .filter(|a| matches!(a, Applied::Duplicate))
                .count() as u64;
            applied.extend(outcome.applied);
        }
        applied
    }

    /// Applies one event, ignoring it if its stream has already passed its sequence.
    pub fn apply(&mut self, event: &FlowEnvelope) -> Applied {
        let stream = event.stream_id().to_string();
        let progress = self.streams.get(&stream).cloned().unwrap_or_default();
        match analytics_change(&progress, event) {
            None => {
                self.duplicates_ignored += 1;
                Applied::Duplicate
            }
            Some(change) => {
                self.summary.add(&change);
                self.streams.insert(stream, change.progress);
                Applied::New(change.durations)
            }
        }
    }
}

/// Why a read model could not apply an event or answer a query. Events come typed, decoded at
/// the edge, so only the backend can fail.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadModelError {
    /// The backend failed, for now or for good.
    #[error("read model unavailable ({transience}): {reason}")]
    Unavailable {
        /// The backend's complaint.
        reason: String,
        /// Whether a retry may succeed (throttling, contention, timeouts).
        transience: Transience,
    },
}

impl Classified for ReadModelError {
    /// A backend failure is retried even when the backend calls it permanent: a missing table
    /// or a refused grant is the deployment's fault, not the event's, and the event applies once
    /// an operator has fixed it.
    fn transience(&self) -> Transience {
        match self {
            ReadModelError::Unavailable { .. } => Transience::Transient,
        }
    }
}

/// Where the analytics read model lives: apply events at least once, read the summary.
pub trait AnalyticsStore: Send + Sync {
    /// Applies one event exactly once: a redelivered event changes nothing.
    fn apply(
        &self,
        event: &FlowEnvelope,
    ) -> impl Future<Output = Result<Applied, ReadModelError>> + Send;

    /// Applies a run of events exactly once each, in order, as [`AnalyticsStore::apply`] would
    /// one by one, but writing each stream's consecutive events of the run together; one
    /// result per event. On an error the whole run is retried: what was written of it is
    /// recognised as applied then.
    fn apply_run(
        &self,
        run: &[FlowEnvelope],
    ) -> impl Future<Output = Result<Vec<Applied>, ReadModelError>> + Send;

    /// The summary as of now.
    fn summary(&self) -> impl Future<Output = Result<AnalyticsSummary, ReadModelError>> + Send;
}

/// The analytics read model in process memory.
#[derive(Default)]
pub struct InMemoryAnalyticsStore {
    projection: Mutex<AnalyticsProjection>,
}

impl InMemoryAnalyticsStore {
    /// An empty read model.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AnalyticsProjection> {
        // apply() decodes before it changes anything, so a poisoned lock is still consistent.
        self.projection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the whole projection (summary, progress, duplicates ignored).
    pub fn projection(&self) -> AnalyticsProjection {
        self.lock().clone()
    }
}

impl AnalyticsStore for InMemoryAnalyticsStore {
    async fn apply(&self, event: &FlowEnvelope) -> Result<Applied, ReadModelError> {
        Ok(self.lock().apply(event))
    }

    async fn apply_run(&self, run: &[FlowEnvelope]) -> Result<Vec<Applied>, ReadModelError> {
        Ok(self.lock().apply_run(run))
    }

    async fn summary(&self) -> Result<AnalyticsSummary, ReadModelError> {
        Ok(self.lock().summary().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::analytics_scenarios::{order_history, typed};

    fn progress_after(events: &[FlowEnvelope], stream: &str) -> StreamProgress {
        let mut progress = StreamProgress::default();
        for event in events
            .iter()
            .filter(|e| e.stream_id().to_string() == stream)
        {
            if let Some(change) = analytics_change(&progress, event) {
                progress = change.progress;
            }
        }
        progress
    }

    #[test]
    fn given_a_created_order_when_it_completes_then_status_moves_and_duration_is_sampled() {
        let history = typed(&order_history("t", 1));
        let created = progress_after(&history[..2], "order#t-0");
        assert_eq!(created.status.as_deref(), Some("created"));
        assert!(created.started_at.is_some());
        let completed = history
            .iter()
            .find(|e| e.event_type == "order.completed")
            .unwrap();

        let change = analytics_change(&created, completed).expect("a new event");

        assert_eq!(change.progress.position, 2);
        assert_eq!(change.progress.status.as_deref(), Some("completed"));
        assert_eq!(change.progress.started_at, None, "the order's clock stops");
        let delta = |metric, key: &str| {
            change
                .counters
                .iter()
                .find(|c| c.metric == metric && c.key == key)
                .map(|c| c.delta)
        };
        assert_eq!(delta(Metric::OrdersByStatus, "created"), Some(-1));
        assert_eq!(delta(Metric::OrdersByStatus, "completed"), Some(1));
        assert_eq!(delta(Metric::EventsByType, "order.completed"), Some(1));
        assert_eq!(
            change.durations,
            vec![DurationSample {
                metric: DurationMetric::Order,
                outcome: "completed".into(),
                ms: 39,
            }]
        );
    }

    #[test]
    fn given_a_stream_at_its_position_when_an_older_event_comes_then_nothing_changes() {
        let history = typed(&order_history("t", 1));
        let progress = progress_after(&history, "order#t-0");
        let first = history
            .iter()
            .find(|e| e.event_type == "order.created")
            .unwrap();
        assert_eq!(analytics_change(&progress, first), None);
    }

    #[test]
    fn summaries_added_in_parts_equal_one_summary() {
        let history = order_history("t", 12);
        let whole = AnalyticsProjection::replay(&history).unwrap();
        let (mut left, mut right) = (AnalyticsProjection::new(), AnalyticsProjection::new());
        for event in &typed(&history) {
            let part = if event.aggregate_id.ends_with(['1', '3', '5', '7', '9']) {
                &mut left
            } else {
                &mut right
            };
            part.apply(event);
        }
        let mut merged = left.summary().clone();
        for metric in Metric::ALL {
            for (key, value) in right.summary().counters(metric) {
                merged.add_to_counter(metric, &key, value);
            }
        }
        for metric in DurationMetric::ALL {
            let mut other = right.summary.clone();
            for (outcome, stats) in other.durations_mut(metric).clone() {
                merged
                    .durations_mut(metric)
                    .entry(outcome)
                    .or_default()
                    .merge(&stats);
            }
        }
        assert_eq!(&merged, whole.summary());
    }

    #[test]
    fn duration_stats_track_min_max_and_negative_first_samples() {
        let mut stats = DurationStats::default();
        stats.record(-5);
        assert_eq!((stats.min_ms, stats.max_ms), (-5, -5));
        stats.record(30);
        stats.record(10);
        assert_eq!(
            stats,
            DurationStats {
                count: 3,
                total_ms: 35,
                min_ms: -5,
                max_ms: 30
            }
        );
        assert_eq!(stats.mean_ms(), 11);
    }

    /// The read model scenarios on the in-memory read model, one test each.
    mod in_memory_read_model {
        use super::*;

        crate::analytics_scenarios! {
            read_model: InMemoryAnalyticsStore::new()
        }
    }
}
