//! The core's `AnalyticsStore` on DynamoDB: the analytics read model in its own table, each
//! event applied exactly once by one conditional transaction, which carries all of a stream's
//! consecutive events of a batch.
//!
//! Item layout of the analytics table (`pk` string):
//!
//! | item | `pk` | other attributes |
//! |---|---|---|
//! | stream progress | `stream#<aggregate_type>#<aggregate_id>` | `position`, `status`?, `started_at`? |
//! | summary shard | `summary#<family>#<0..SUMMARY_SHARDS>` | `c|<metric>|<key>` counters, `d|<metric>|<outcome>|{count,total,min,max}` durations |
//!
//! Applying an event puts the stream's new progress on the condition that the stream is still
//! where it was read, and adds the event's counter deltas to one summary shard, in the same
//! transaction: a redelivery fails the condition and adds nothing, and a crash between the two
//! cannot happen. Counters live in shards chosen by stream, so concurrent events of different
//! streams rarely contend for one item; the query adds the shards up.
//!
//! Each aggregate type (the shard's family, [`FAMILIES`]) has shards of its own, because
//! DynamoDB bills an update for the whole item it changes: one item holding every metric's
//! counters grew past 1 KB and cost 4 to 6 write units a transaction, where an order's, a
//! saga's or a payment's counters alone stay under 1 KB (2 units). Tables written before the
//! families (`summary#<shard>`) still read back: the query adds those items in too. Minimum and maximum
//! durations are set only under a condition that they still are the extremes read, so a race
//! retries instead of losing a smaller minimum.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use sagaflow_eventsourcing::{Aggregate, Timestamp};
use sagaflow_orders::flow::FlowEnvelope;
use sagaflow_orders::projection::{
    analytics_run_change, same_stream, AnalyticsChange, AnalyticsStore, AnalyticsSummary, Applied,
    DurationMetric, DurationSample, DurationStats, Metric, ReadModelError, StreamProgress,
};
use tokio::sync::{mpsc, oneshot};

use crate::attributes::{fnv1a, get_n, get_s, n, s, sdk_failure};
use crate::push_back::PushBack;
use sagaflow_eventsourcing::Transience;

/// How many items the summary counters are spread over. Every analytics transaction updates
/// one of them, and DynamoDB lets one key take 1,000 write units a second: at 1,000 orders a
/// second (about 14,000 units a second on the shards, BENCHMARKS.md section 7) 8 shards would
/// each be over that, 32 are at less than half. The summary reads them all in one
/// `BatchGetItem` (at most 100 keys). Counters add up whatever shard holds them, so a table
/// written with fewer shards still reads back right.
pub const SUMMARY_SHARDS: u64 = 32;
/// The aggregate types whose counters have shards of their own; any other type's counters go
/// to the shards of [`OTHER_FAMILY`], so the query never misses them.
pub const FAMILIES: [&str; 5] = [
    sagaflow_orders::domain::Order::TYPE,
    sagaflow_orders::domain::Payment::TYPE,
    "saga",
    sagaflow_orders::domain::Reservation::TYPE,
    sagaflow_orders::domain::Shipment::TYPE,
];
/// The family of an aggregate type not in [`FAMILIES`].
pub const OTHER_FAMILY: &str = "other";
/// How often one event is tried when other writers keep moving the items it needs.
const MAX_ATTEMPTS: u32 = 8;

/// The analytics read model in a DynamoDB table.
#[derive(Clone)]
pub struct DynamoAnalyticsStore {
    client: Client,
    table: String,
    progress: Arc<Mutex<HashMap<String, StreamProgress>>>,
    push_back: Arc<PushBack>,
    /// Where stream runs decided at the same time queue for one transaction.
    group: Arc<OnceLock<mpsc::UnboundedSender<Submitted>>>,
}

/// One stream run's write, decided on the progress it read and waiting to be committed.
struct PendingRun {
    stream_pk: String,
    read: Option<StreamProgress>,
    change: AnalyticsChange,
    /// The aggregate type's shards ([`family`]) and the one this stream's counters go to
    /// when no other run of its family shares the transaction.
    family: &'static str,
    shard_pk: String,
}

/// A run handed to the group commit, and where its outcome goes.
type Submitted = (PendingRun, oneshot::Sender<Result<Attempt, ReadModelError>>);

/// At most this many stream runs share a transaction: each brings its progress item, and
/// each family one shard item, within DynamoDB's 100.
const MAX_GROUP: usize = 90;

/// Streams whose progress one function remembers between events.
const REMEMBERED_STREAMS: usize = 16_384;

/// A request the read model cannot make at all (it could not be built, or was refused).
fn refused(reason: String) -> ReadModelError {
    ReadModelError::Unavailable {
        reason,
        transience: Transience::Permanent,
    }
}

/// The summary shard a stream's counters go to: FNV-1a of the stream id, stable everywhere.
pub fn summary_shard(stream: &str) -> u64 {
    fnv1a(stream.as_bytes()) % SUMMARY_SHARDS
}

/// The family whose shards hold `aggregate_type`'s counters.
pub fn family(aggregate_type: &str) -> &'static str {
    FAMILIES
        .into_iter()
        .find(|family| *family == aggregate_type)
        .unwrap_or(OTHER_FAMILY)
}

fn shard_key(family: &str, shard: u64) -> String {
    format!("summary#{family}#{shard}")
}

/// Every summary item the query reads: each family's shards, and the shards of tables
/// written before the families (`summary#<shard>`).
fn summary_keys() -> Vec<String> {
    let families = FAMILIES.into_iter().chain([OTHER_FAMILY]);
    families
        .flat_map(|family| (0..SUMMARY_SHARDS).map(move |shard| shard_key(family, shard)))
        .chain((0..SUMMARY_SHARDS).map(|shard| format!("summary#{shard}")))
        .collect()
}

fn counter_attribute(metric: Metric, key: &str) -> String {
    format!("c|{}|{key}", metric.name())
}

fn duration_attribute(metric: DurationMetric, outcome: &str, field: &str) -> String {
    format!("d|{}|{outcome}|{field}", metric.name())
}

/// What a stream progress item holds, and whether it exists.
fn read_progress(item: Option<&HashMap<String, AttributeValue>>) -> Option<StreamProgress> {
    item.map(|item| StreamProgress {
        position: get_n(item, "position").unwrap_or(0),
        status: get_s(item, "status").map(str::to_string),
        started_at: get_n(item, "started_at").map(Timestamp),
    })
}

/// Counter totals over every shard read so far. A shard may hold a negative part of a
/// counter (a status left, its entry counted in another shard), so shards are added up signed
/// and the summary, whose counts are unsigned, takes only the totals.
type CounterTotals = HashMap<(Metric, String), i64>;

/// Adds one summary shard item's counters to `counters` and its durations to `summary`.
fn add_shard(
    summary: &mut AnalyticsSummary,
    counters: &mut CounterTotals,
    item: &HashMap<String, AttributeValue>,
) {
    let mut durations: HashMap<(DurationMetric, String), DurationStats> = HashMap::new();
    for (name, value) in item {
        let Some(number) = value.as_n().ok().and_then(|v| v.parse::<i64>().ok()) else {
            continue;
        };
        if let Some(rest) = name.strip_prefix("c|") {
            if let Some((metric, key)) = rest.split_once('|') {
                if let Some(metric) = Metric::from_name(metric) {
                    let total = counters.entry((metric, key.to_string())).or_default();
                    *total = total.saturating_add(number);
                }
            }
        } else if let Some(rest) = name.strip_prefix("d|") {
            let Some((head, field)) = rest.rsplit_once('|') else {
                continue;
            };
            let Some((metric, outcome)) = head.split_once('|') else {
                continue;
            };
            let Some(metric) = DurationMetric::from_name(metric) else {
                continue;
            };
            let stats = durations.entry((metric, outcome.to_string())).or_default();
            match field {
                "count" => stats.count = u64::try_from(number).unwrap_or(0),
                "total" => stats.total_ms = number,
                "min" => stats.min_ms = number,
                "max" => stats.max_ms = number,
                _ => {}
            }
        }
    }
    for ((metric, outcome), stats) in durations {
        summary
            .durations_mut(metric)
            .entry(outcome)
            .or_default()
            .merge(&stats);
    }
}

/// A run's duration samples of one metric and outcome, added up.
struct FoldedDurations<'a> {
    metric: DurationMetric,
    outcome: &'a str,
    count: i64,
    total_ms: i64,
    min_ms: i64,
    max_ms: i64,
}

fn folded_durations(samples: &[DurationSample]) -> Vec<FoldedDurations<'_>> {
    let mut folded: Vec<FoldedDurations<'_>> = Vec::new();
    for sample in samples {
        match folded
            .iter_mut()
            .find(|f| f.metric == sample.metric && f.outcome == sample.outcome)
        {
            Some(f) => {
                f.count += 1;
                f.total_ms = f.total_ms.saturating_add(sample.ms);
                f.min_ms = f.min_ms.min(sample.ms);
                f.max_ms = f.max_ms.max(sample.ms);
            }
            None => folded.push(FoldedDurations {
                metric: sample.metric,
                outcome: &sample.outcome,
                count: 1,
                total_ms: sample.ms,
                min_ms: sample.ms,
                max_ms: sample.ms,
            }),
        }
    }
    folded
}

/// Why one attempt at applying an event did not commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    Committed,
    /// Another writer moved the stream or an extreme since it was read: read again.
    Moved,
}

impl DynamoAnalyticsStore {
    /// A read model over `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            progress: Arc::default(),
            push_back: Arc::default(),
            group: Arc::default(),
        }
    }

    /// The same read model counting its conflicts into `push_back` (see
    /// [`crate::push_back`]).
    pub fn with_push_back(mut self, push_back: Arc<PushBack>) -> Self {
        self.push_back = push_back;
        self
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<String, StreamProgress>> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers a stream's progress this process committed. What it remembers can only be
    /// behind the table (progress only moves forward), so a stale entry makes the guarded put
    /// fail and the progress is read again; it never makes a new event look applied.
    fn remember(&self, stream_pk: &str, progress: &StreamProgress) {
        let mut remembered = self.remembered();
        if remembered.len() >= REMEMBERED_STREAMS && !remembered.contains_key(stream_pk) {
            remembered.clear();
        }
        remembered.insert(stream_pk.to_string(), progress.clone());
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get_item(
        &self,
        pk: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, ReadModelError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| ReadModelError::from(sdk_failure("GetItem", &e)))?;
        Ok(output.item)
    }

    fn progress_put(
        &self,
        stream_pk: &str,
        read: Option<&StreamProgress>,
        next: &StreamProgress,
    ) -> Result<TransactWriteItem, ReadModelError> {
        let mut item = HashMap::from([
            ("pk".to_string(), s(stream_pk)),
            ("position".to_string(), n(next.position)),
        ]);
        if let Some(status) = &next.status {
            item.insert("status".into(), s(status.clone()));
        }
        if let Some(started_at) = next.started_at {
            item.insert("started_at".into(), n(started_at.0));
        }
        let put = Put::builder().table_name(&self.table).set_item(Some(item));
        let put = match read {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(read) => put
                .condition_expression("#position = :read")
                .expression_attribute_names("#position", "position")
                .expression_attribute_values(":read", n(read.position)),
        };
        let put = put
            .build()
            .map_err(|e| refused(format!("cannot build Put: {e}")))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn shard_update(
        &self,
        shard_pk: &str,
        change: &AnalyticsChange,
        extremes: &HashMap<String, AttributeValue>,
    ) -> Result<TransactWriteItem, ReadModelError> {
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut adds = Vec::new();
        let mut sets = Vec::new();
        let mut conditions = Vec::new();
        let mut add = |attribute: String, amount: i64, names: &mut HashMap<_, _>| {
            let i = adds.len();
            names.insert(format!("#a{i}"), attribute);
            values.insert(format!(":a{i}"), n(amount));
            adds.push(format!("#a{i} :a{i}"));
        };
        for counter in &change.counters {
            add(
                counter_attribute(counter.metric, &counter.key),
                counter.delta,
                &mut names,
            );
        }
        // One expression may name an attribute once, so a run's samples of one metric and
        // outcome are added up first.
        let durations = folded_durations(&change.durations);
        for stats in &durations {
            add(
                duration_attribute(stats.metric, stats.outcome, "count"),
                stats.count,
                &mut names,
            );
            add(
                duration_attribute(stats.metric, stats.outcome, "total"),
                stats.total_ms,
                &mut names,
            );
        }
        for (i, stats) in durations.iter().enumerate() {
            for (field, ms, beats) in [
                ("min", stats.min_ms, i64::lt as fn(&i64, &i64) -> bool),
                ("max", stats.max_ms, i64::gt),
            ] {
                let attribute = duration_attribute(stats.metric, stats.outcome, field);
                let known: Option<i64> = get_n(extremes, &attribute);
                if known.is_some_and(|known| !beats(&ms, &known)) {
                    continue;
                }
                let (name, value) = (format!("#{field}{i}"), format!(":{field}{i}"));
                let compare = if field == "min" { ">" } else { "<" };
                conditions.push(format!(
                    "(attribute_not_exists({name}) OR {name} {compare} {value})"
                ));
                sets.push(format!("{name} = {value}"));
                names.insert(name, attribute);
                values.insert(value, n(ms));
            }
        }
        let mut expression = format!("ADD {}", adds.join(", "));
        if !sets.is_empty() {
            expression.push_str(&format!(" SET {}", sets.join(", ")));
        }
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(shard_pk))
            .update_expression(expression)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values));
        let update = if conditions.is_empty() {
            update
        } else {
            update.condition_expression(conditions.join(" AND "))
        };
        let update = update
            .build()
            .map_err(|e| refused(format!("cannot build Update: {e}")))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    async fn commit(&self, items: Vec<TransactWriteItem>) -> Result<Attempt, ReadModelError> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Attempt::Committed),
            Err(SdkError::ServiceError(service)) => match service.err() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                    let codes: Vec<&str> = cancelled
                        .cancellation_reasons()
                        .iter()
                        .filter_map(|r| r.code())
                        .filter(|code| *code != "None")
                        .collect();
                    let retryable = codes.iter().all(|code| {
                        *code == "ConditionalCheckFailed"
                            || crate::attributes::code_transience(code) == Transience::Transient
                    });
                    if retryable {
                        Ok(Attempt::Moved)
                    } else {
                        Err(refused(format!("TransactWriteItems cancelled: {codes:?}")))
                    }
                }
                _ => {
                    Err(sdk_failure("TransactWriteItems", &SdkError::ServiceError(service)).into())
                }
            },
            Err(other) => Err(ReadModelError::from(sdk_failure(
                "TransactWriteItems",
                &other,
            ))),
        }
    }
}

impl DynamoAnalyticsStore {
    /// Applies consecutive events of one stream in one conditional transaction: the stream's
    /// progress after the last new one, and their counters added to the stream's shard.
    async fn apply_stream_run(&self, run: &[FlowEnvelope]) -> Result<Vec<Applied>, ReadModelError> {
        let Some(first) = run.first() else {
            return Ok(Vec::new());
        };
        let stream = first.stream_id().to_string();
        let stream_pk = format!("stream#{stream}");
        let shard_pk = shard_key(family(&first.aggregate_type), summary_shard(&stream));
        for attempt in 0..MAX_ATTEMPTS {
            let cached = if attempt == 0 {
                self.remembered().get(&stream_pk).cloned()
            } else {
                None
            };
            let read = match cached {
                Some(progress) => Some(progress),
                None => read_progress(self.get_item(&stream_pk).await?.as_ref()),
            };
            let outcome = analytics_run_change(&read.clone().unwrap_or_default(), run);
            let Some(change) = outcome.change else {
                return Ok(outcome.applied);
            };
            let progress = change.progress.clone();
            let committed = self
                .commit_together(PendingRun {
                    stream_pk: stream_pk.clone(),
                    read,
                    change,
                    family: family(&first.aggregate_type),
                    shard_pk: shard_pk.clone(),
                })
                .await;
            if !matches!(committed, Ok(Attempt::Committed)) {
                self.remembered().remove(&stream_pk);
            }
            match committed? {
                Attempt::Committed => {
                    self.remember(&stream_pk, &progress);
                    return Ok(outcome.applied);
                }
                Attempt::Moved => {
                    self.push_back.conflict();
                    // Contention on a shard clears within milliseconds; back off a little more
                    // each time so racing writers spread out.
                    tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
                }
            }
        }
        Err(ReadModelError::Unavailable {
            reason: format!("{stream}: gave up after {MAX_ATTEMPTS} contended attempts"),
            transience: Transience::Transient,
        })
    }
}

/// Adds `later`'s counters and durations to `merged` (its progress is another stream's).
fn merge_counts(merged: &mut AnalyticsChange, later: &AnalyticsChange) {
    for counter in &later.counters {
        match merged
            .counters
            .iter_mut()
            .find(|c| c.metric == counter.metric && c.key == counter.key)
        {
            Some(c) => c.delta = c.delta.saturating_add(counter.delta),
            None => merged.counters.push(counter.clone()),
        }
    }
    merged.durations.extend(later.durations.iter().cloned());
}

/// Group commit: the stream runs that a batch's key groups decide while a transaction is in
/// flight are written together in the next one, each with its own progress item and their
/// counters added to one shard per family. One transaction and one shard update then serve
/// several streams where each stream paid for both; a stream's events still commit only with
/// its progress, so a redelivery adds nothing.
impl DynamoAnalyticsStore {
    /// Commits `run` in the next group transaction, or on its own if the group's task is gone
    /// (its runtime ended).
    async fn commit_together(&self, run: PendingRun) -> Result<Attempt, ReadModelError> {
        let sender = self.group.get_or_init(|| self.start_group_commit());
        let (done, outcome) = oneshot::channel();
        match sender.send((run, done)) {
            Ok(()) => outcome.await.unwrap_or_else(|_| {
                Err(ReadModelError::Unavailable {
                    reason: "the analytics group commit stopped before answering".into(),
                    transience: Transience::Transient,
                })
            }),
            Err(mpsc::error::SendError((run, _))) => self.commit_group(&[run]).await,
        }
    }

    /// Starts the task that commits queued runs, one group at a time. It holds a copy of the
    /// store without the queue, so it ends once every user of the queue is gone.
    fn start_group_commit(&self) -> mpsc::UnboundedSender<Submitted> {
        let (sender, mut queue) = mpsc::unbounded_channel::<Submitted>();
        let writer = Self {
            group: Arc::default(),
            ..self.clone()
        };
        tokio::spawn(async move {
            let mut deferred: VecDeque<Submitted> = VecDeque::new();
            loop {
                let first = match deferred.pop_front() {
                    Some(first) => first,
                    None => match queue.recv().await {
                        Some(first) => first,
                        None => return,
                    },
                };
                let mut group = vec![first];
                let mut next = || deferred.pop_front().or_else(|| queue.try_recv().ok());
                while group.len() < MAX_GROUP {
                    let Some(submitted) = next() else { break };
                    // A transaction may touch an item once: a stream's later run waits.
                    if group
                        .iter()
                        .any(|(run, _)| run.stream_pk == submitted.0.stream_pk)
                    {
                        deferred.push_back(submitted);
                        break;
                    }
                    group.push(submitted);
                }
                let (runs, answers): (Vec<PendingRun>, Vec<_>) = group.into_iter().unzip();
                match writer.commit_group(&runs).await {
                    Err(_) if runs.len() > 1 => {
                        // Refused outright: find the run it was about by committing each alone.
                        for (run, answer) in runs.into_iter().zip(answers) {
                            let _ = answer.send(writer.commit_group(&[run]).await);
                        }
                    }
                    outcome => {
                        for answer in answers {
                            let _ = answer.send(outcome.clone());
                        }
                    }
                }
            }
        });
        sender
    }

    /// One transaction: every run's progress on the condition it read, and per family one
    /// shard update with the runs' counters added up.
    async fn commit_group(&self, runs: &[PendingRun]) -> Result<Attempt, ReadModelError> {
        let mut shards: Vec<(&'static str, &str, AnalyticsChange)> = Vec::new();
        for run in runs {
            match shards.iter_mut().find(|(family, ..)| *family == run.family) {
                Some((_, _, merged)) => merge_counts(merged, &run.change),
                None => shards.push((run.family, &run.shard_pk, run.change.clone())),
            }
        }
        let mut items = Vec::with_capacity(runs.len() + shards.len());
        for run in runs {
            items.push(self.progress_put(
                &run.stream_pk,
                run.read.as_ref(),
                &run.change.progress,
            )?);
        }
        for (_, shard_pk, change) in &shards {
            let extremes = if change.durations.is_empty() {
                HashMap::new()
            } else {
                self.get_item(shard_pk).await?.unwrap_or_default()
            };
            items.push(self.shard_update(shard_pk, change, &extremes)?);
        }
        self.commit(items).await
    }
}

impl AnalyticsStore for DynamoAnalyticsStore {
    async fn apply(&self, event: &FlowEnvelope) -> Result<Applied, ReadModelError> {
        let mut applied = self.apply_stream_run(std::slice::from_ref(event)).await?;
        Ok(applied.pop().unwrap_or(Applied::Duplicate))
    }

    async fn apply_run(&self, run: &[FlowEnvelope]) -> Result<Vec<Applied>, ReadModelError> {
        let mut applied = Vec::with_capacity(run.len());
        for stream_run in run.chunk_by(same_stream) {
            applied.extend(self.apply_stream_run(stream_run).await?);
        }
        Ok(applied)
    }

    async fn summary(&self) -> Result<AnalyticsSummary, ReadModelError> {
        let mut pending: Vec<HashMap<String, AttributeValue>> = summary_keys()
            .into_iter()
            .map(|pk| HashMap::from([("pk".to_string(), s(pk))]))
            .collect();
        let mut summary = AnalyticsSummary::default();
        let mut counters = CounterTotals::new();
        let mut throttled = 0;
        while !pending.is_empty() {
            // BatchGetItem takes at most 100 keys.
            let rest = pending.split_off(pending.len().min(100));
            let keys = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::replace(&mut pending, rest)))
                .consistent_read(true)
                .build()
                .map_err(|e| refused(format!("cannot build BatchGetItem: {e}")))?;
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await
                .map_err(|e| ReadModelError::from(sdk_failure("BatchGetItem", &e)))?;
            for item in output
                .responses
                .as_ref()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                add_shard(&mut summary, &mut counters, item);
            }
            let unprocessed = output
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if !unprocessed.is_empty() {
                if throttled == MAX_ATTEMPTS {
                    return Err(ReadModelError::Unavailable {
                        reason: "BatchGetItem: summary shards still unprocessed after retries"
                            .into(),
                        transience: Transience::Transient,
                    });
                }
                tokio::time::sleep(Duration::from_millis(10 << throttled.min(6))).await;
                throttled += 1;
                pending.extend(unprocessed);
            }
        }
        for ((metric, key), total) in counters {
            summary.add_to_counter(metric, &key, total);
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_read_first_may_hold_a_negative_part_of_a_counter() {
        // An order counted as created in one shard and as having left that status in
        // another: read in either order, it is no longer created.
        let left = HashMap::from([
            (counter_attribute(Metric::OrdersByStatus, "created"), n(-1)),
            (counter_attribute(Metric::OrdersByStatus, "completed"), n(1)),
        ]);
        let entered = HashMap::from([(counter_attribute(Metric::OrdersByStatus, "created"), n(1))]);
        for items in [[&left, &entered], [&entered, &left]] {
            let mut summary = AnalyticsSummary::default();
            let mut counters = CounterTotals::new();
            for item in items {
                add_shard(&mut summary, &mut counters, item);
            }
            for ((metric, key), total) in counters {
                summary.add_to_counter(metric, &key, total);
            }
            assert_eq!(
                summary.orders_by_status,
                std::collections::BTreeMap::from([("completed".to_string(), 1)])
            );
        }
    }

    #[test]
    fn each_aggregate_type_has_shards_of_its_own() {
        assert_eq!(family("order"), "order");
        assert_eq!(family("saga"), "saga");
        assert_eq!(family("inventory"), "inventory");
        assert_eq!(family("something-new"), OTHER_FAMILY);
        let keys = summary_keys();
        assert_eq!(
            keys.len() as u64,
            (FAMILIES.len() as u64 + 2) * SUMMARY_SHARDS
        );
        assert!(keys.contains(&shard_key("payment", SUMMARY_SHARDS - 1)));
        assert!(keys.contains(&shard_key(OTHER_FAMILY, 0)));
        assert!(
            keys.contains(&"summary#0".to_string()),
            "the old layout is read"
        );
        let unique: std::collections::BTreeSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(summary_shard("order#ord-1"), summary_shard("order#ord-1"));
        let used: std::collections::BTreeSet<u64> = (0..400)
            .map(|i| summary_shard(&format!("order#ord-{i}")))
            .collect();
        assert_eq!(used.len() as u64, SUMMARY_SHARDS);
    }

    #[test]
    fn shard_items_read_back_into_a_summary() {
        let item = HashMap::from([
            ("pk".to_string(), s("summary#3")),
            (counter_attribute(Metric::OrdersByStatus, "created"), n(2)),
            (counter_attribute(Metric::OrdersByStatus, "completed"), n(0)),
            (
                counter_attribute(Metric::CancellationsByReason, "a|b"),
                n(1),
            ),
            (
                duration_attribute(DurationMetric::Order, "completed", "count"),
                n(2),
            ),
            (
                duration_attribute(DurationMetric::Order, "completed", "total"),
                n(30),
            ),
            (
                duration_attribute(DurationMetric::Order, "completed", "min"),
                n(10),
            ),
            (
                duration_attribute(DurationMetric::Order, "completed", "max"),
                n(20),
            ),
            ("c|not_a_metric|x".to_string(), n(5)),
        ]);
        let mut summary = AnalyticsSummary::default();
        let mut counters = CounterTotals::new();
        add_shard(&mut summary, &mut counters, &item);
        add_shard(&mut summary, &mut counters, &item);
        for ((metric, key), total) in counters {
            summary.add_to_counter(metric, &key, total);
        }
        assert_eq!(
            summary.orders_by_status.len(),
            1,
            "zero counters are dropped"
        );
        assert_eq!(summary.orders_by_status["created"], 4);
        assert_eq!(summary.cancellations_by_reason["a|b"], 2);
        assert_eq!(
            summary.order_durations["completed"],
            DurationStats {
                count: 4,
                total_ms: 60,
                min_ms: 10,
                max_ms: 20
            }
        );
    }
}
