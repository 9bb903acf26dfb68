//! Processing one Kafka batch: per-key ordering, bounded concurrency, dead letters, partial failure.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tracing::Instrument;

use aws_lambda_events::event::kafka::KafkaEvent;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::groups::group_by_key;
use crate::isolate::{describe_join_error, isolated};
use crate::record::{decode_batch, DecodedRecord, InboundRecord, RawRecord, RecordId};
use crate::response::KafkaBatchResponse;

/// A boxed, sendable future, the return type of handler and sink methods.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a handler decided about one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Processed; nothing more to do.
    Done,
    /// Transient failure: this record and every later record of the same key must be retried.
    Retry(String),
    /// Permanent failure: send the record to the dead-letter path with this reason and move on.
    DeadLetter(String),
}

/// Business logic for one decoded record; must be idempotent, since Lambda may redeliver.
pub trait RecordHandler: Send + Sync + 'static {
    /// The name the function's log lines carry.
    fn name(&self) -> &str {
        "records"
    }

    /// Processes `record` and says how it went.
    fn handle(&self, record: InboundRecord) -> BoxFuture<RecordOutcome>;

    /// Processes the records of one key group in order and says how each went, one outcome
    /// per record for a prefix of them: it may stop after the first `Retry`, and the records
    /// after it are retried behind it. The default runs [`RecordHandler::handle`] on each in
    /// turn, each on its own task so a panic fails only its record; a handler overrides it
    /// to share work between records (one load and one write for several commands to one
    /// aggregate).
    fn handle_group(&self, records: Vec<InboundRecord>) -> BoxFuture<Vec<RecordOutcome>> {
        let pending: Vec<BoxFuture<RecordOutcome>> =
            records.into_iter().map(|r| self.handle(r)).collect();
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(pending.len());
            for future in pending {
                let outcome = tokio::spawn(future.in_current_span()).await.unwrap_or_else(|e| {
                    let why = describe_join_error(e);
                    tracing::error!(reason = %why, "record handler failed; the record is retried");
                    RecordOutcome::Retry(format!("handler {why}"))
                });
                let stop = matches!(outcome, RecordOutcome::Retry(_));
                outcomes.push(outcome);
                if stop {
                    break;
                }
            }
            outcomes
        })
    }
}

/// Why a dead letter could not be stored, with its sources.
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where records that can never succeed are written, e.g. a dead-letter topic.
pub trait DeadLetterSink: Send + Sync + 'static {
    /// Stores `letter` durably; `Err` says why it could not.
    fn send(&self, letter: DeadLetter) -> BoxFuture<Result<(), SinkError>>;
}

/// The JSON value written to the dead-letter topic for one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Where the record came from.
    pub source: RecordId,
    /// Why it was dead-lettered.
    pub reason: String,
    /// The record as it arrived; a value longer than [`MAX_DEAD_LETTER_VALUE_CHARS`] is cut.
    pub raw: RawRecord,
    /// The length of the value's base64 text when it had to be cut, so the letter itself fits
    /// in a Kafka message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_truncated_from: Option<usize>,
    /// When it was dead-lettered, in milliseconds since the Unix epoch.
    pub failed_at_ms: i64,
}

/// The most base64 characters of a record's value a dead letter keeps (48 KiB of bytes).
pub const MAX_DEAD_LETTER_VALUE_CHARS: usize = 64 * 1024;

impl DeadLetter {
    /// The letter for `raw`, read from `source`, with its value cut to a size that fits.
    pub fn new(source: RecordId, reason: String, mut raw: RawRecord, failed_at_ms: i64) -> Self {
        let mut value_truncated_from = None;
        if let Some(value) = raw.value.as_mut() {
            if value.len() > MAX_DEAD_LETTER_VALUE_CHARS {
                value_truncated_from = Some(value.len());
                // Base64 text is ASCII, so any index is a character boundary; a multiple of
                // four keeps the kept prefix decodable.
                value.truncate(MAX_DEAD_LETTER_VALUE_CHARS);
            }
        }
        Self {
            source,
            reason,
            raw,
            value_truncated_from,
            failed_at_ms,
        }
    }
}

/// Tuning for [`process_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    /// Key groups in flight at once; 0 is treated as 1 so a batch always makes progress.
    pub max_concurrency: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { max_concurrency: 8 }
    }
}

/// The outcome of a batch: what to return to Lambda and what happened, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResult {
    /// The partial batch failure response to return from the function.
    pub response: KafkaBatchResponse,
    /// Per-record accounting of the batch.
    pub report: BatchReport,
}

/// Per-record accounting of a batch; every input record is counted exactly once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Records in the event.
    pub records: usize,
    /// Records the handler completed.
    pub done: usize,
    /// Records handed to the dead-letter sink, with the reason, in record order.
    pub dead_lettered: Vec<(RecordId, String)>,
    /// Records that failed and will be redelivered, with the reason, in record order.
    pub retried: Vec<(RecordId, String)>,
    /// Records not run because an earlier record of their key group must be retried first.
    pub skipped_after_failure: usize,
}

/// How one record ended up.
enum Settled {
    Done,
    DeadLettered(String),
    Retried(String),
    Skipped,
}

/// Processes every record of `event` and builds the partial batch failure response.
///
/// Records are grouped by partition and key. Within a group records run strictly one
/// after another; different groups, of the same or different partitions, run
/// concurrently, at most `config.max_concurrency` at once. A record that cannot be
/// decoded, or that the handler dead-letters, goes to `dead_letters` and its group
/// continues; if the sink fails the record is retried instead, so it is never lost.
/// A record to retry (including one whose handler panicked) stops its group: the later
/// records of that key are skipped so they stay behind it.
///
/// The response names, per partition, the lowest offset among the records to retry.
/// Lambda redelivers the partition from there, including records of other keys that
/// already succeeded after that offset; that is safe because sagaflow's handlers are
/// idempotent.
pub async fn process_batch(
    event: &KafkaEvent,
    handler: Arc<dyn RecordHandler>,
    dead_letters: Arc<dyn DeadLetterSink>,
    config: &BatchConfig,
    now_ms: i64,
) -> BatchResult {
    let groups = group_by_key(decode_batch(event));
    let records = groups.iter().map(Vec::len).sum();
    let semaphore = Arc::new(Semaphore::new(
        config.max_concurrency.clamp(1, Semaphore::MAX_PERMITS),
    ));

    let mut running = Vec::with_capacity(groups.len());
    for group in groups {
        // Taking the permit before spawning starts groups in batch order and keeps
        // waiting groups from occupying tasks. The semaphore is never closed, so the
        // permit is always granted; were it not, the only effect would be a looser limit.
        let permit = Arc::clone(&semaphore).acquire_owned().await.ok();
        let ids: Vec<RecordId> = group.iter().map(|r| r.id.clone()).collect();
        let handler = Arc::clone(&handler);
        let sink = Arc::clone(&dead_letters);
        // The task keeps the invocation's span, so its lines carry the request id.
        let task = tokio::spawn(
            async move {
                let settled = run_group(group, handler, sink, now_ms).await;
                drop(permit);
                settled
            }
            .in_current_span(),
        );
        running.push((ids, task));
    }

    let mut settled = Vec::with_capacity(records);
    for (ids, task) in running {
        match task.await {
            Ok(outcomes) => settled.extend(outcomes),
            Err(err) => {
                // Unknown how far the group got, so retry all of it rather than lose any.
                let reason = format!("record group task {}", describe_join_error(err));
                tracing::error!(%reason, records = ids.len(), "record group retried");
                settled.extend(
                    ids.into_iter()
                        .map(|id| (id, Settled::Retried(reason.clone()))),
                );
            }
        }
    }
    summarize(records, settled)
}

/// Runs one key group in order through the handler, skipping everything after the first
/// record to retry; records that could not be decoded are dead-lettered in their place.
async fn run_group(
    group: Vec<DecodedRecord>,
    handler: Arc<dyn RecordHandler>,
    sink: Arc<dyn DeadLetterSink>,
    now_ms: i64,
) -> Vec<(RecordId, Settled)> {
    let mut inbound = Vec::with_capacity(group.len());
    let mut pending = Vec::with_capacity(group.len());
    for DecodedRecord { id, result, raw } in group {
        match result {
            Ok(record) => {
                inbound.push(record);
                pending.push((id, raw, None));
            }
            Err(err) => pending.push((id, raw, Some(err.to_string()))),
        }
    }
    let handled = if inbound.is_empty() {
        Vec::new()
    } else {
        let handler = Arc::clone(&handler);
        isolated(move || handler.handle_group(inbound))
            .await
            .unwrap_or_else(|why| {
                tracing::error!(reason = %why, "record group handler failed; the group is retried");
                vec![RecordOutcome::Retry(format!("handler {why}"))]
            })
    };
    let mut handled = handled.into_iter();
    let mut settled = Vec::with_capacity(pending.len());
    let mut blocked = false;
    for (id, raw, undecodable) in pending {
        if blocked {
            settled.push((id, Settled::Skipped));
            continue;
        }
        let outcome = match undecodable {
            Some(reason) => RecordOutcome::DeadLetter(reason),
            // A handler that stopped early, or panicked, leaves the rest to be retried.
            None => handled.next().unwrap_or_else(|| {
                RecordOutcome::Retry("the handler gave no outcome for it".into())
            }),
        };
        let outcome = settle(id.clone(), raw, outcome, &sink, now_ms).await;
        blocked = matches!(outcome, Settled::Retried(_));
        settled.push((id, outcome));
    }
    settled
}

/// Settles one record's outcome, sending it to the sink if it must be dead-lettered.
async fn settle(
    id: RecordId,
    raw: RawRecord,
    outcome: RecordOutcome,
    sink: &Arc<dyn DeadLetterSink>,
    now_ms: i64,
) -> Settled {
    match outcome {
        RecordOutcome::Done => Settled::Done,
        RecordOutcome::Retry(reason) => Settled::Retried(reason),
        RecordOutcome::DeadLetter(reason) => {
            let letter = DeadLetter::new(id.clone(), reason.clone(), raw, now_ms);
            let sink = Arc::clone(sink);
            match isolated(move || sink.send(letter)).await {
                Ok(Ok(())) => Settled::DeadLettered(reason),
                Ok(Err(err)) => {
                    let reason = format!("dead-letter sink failed ({err}) for: {reason}");
                    tracing::warn!(topic = %id.topic, partition = id.partition, offset = id.offset, %reason, "record retried");
                    Settled::Retried(reason)
                }
                Err(why) => {
                    let reason = format!("dead-letter sink {why} for: {reason}");
                    tracing::warn!(topic = %id.topic, partition = id.partition, offset = id.offset, %reason, "record retried");
                    Settled::Retried(reason)
                }
            }
        }
    }
}

fn summarize(records: usize, mut settled: Vec<(RecordId, Settled)>) -> BatchResult {
    settled.sort_by(|a, b| a.0.cmp(&b.0));
    let mut report = BatchReport {
        records,
        ..BatchReport::default()
    };
    for (id, outcome) in settled {
        match outcome {
            Settled::Done => report.done += 1,
            Settled::DeadLettered(reason) => report.dead_lettered.push((id, reason)),
            Settled::Retried(reason) => report.retried.push((id, reason)),
            Settled::Skipped => report.skipped_after_failure += 1,
        }
    }
    // Skipped records need no entry: each follows a retried record of its own group,
    // so its offset is above the one reported for its partition.
    let response = KafkaBatchResponse::from_failures(report.retried.iter().map(|(id, _)| id));
    BatchResult { response, report }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{event, record};
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Decides by the record's value text: "retry", "dead", "panic", anything else is done.
    #[derive(Default)]
    struct ScriptedHandler {
        seen: Arc<Mutex<Vec<String>>>,
    }

    impl ScriptedHandler {
        fn seen(&self) -> Vec<String> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl RecordHandler for ScriptedHandler {
        fn handle(&self, record: InboundRecord) -> BoxFuture<RecordOutcome> {
            let seen = Arc::clone(&self.seen);
            Box::pin(async move {
                seen.lock().unwrap().push(record.id.to_string());
                match record.value_str() {
                    Some("retry") => RecordOutcome::Retry(format!("busy at {}", record.id)),
                    Some("dead") => RecordOutcome::DeadLetter("unknown order".into()),
                    Some("panic") => panic!("handler bug"),
                    _ => RecordOutcome::Done,
                }
            })
        }
    }

    #[derive(Default)]
    struct RecordingSink {
        fail: bool,
        letters: Arc<Mutex<Vec<DeadLetter>>>,
    }

    impl RecordingSink {
        fn failing() -> Self {
            Self {
                fail: true,
                ..Self::default()
            }
        }

        fn letters(&self) -> Vec<DeadLetter> {
            self.letters.lock().unwrap().clone()
        }
    }

    impl DeadLetterSink for RecordingSink {
        fn send(&self, letter: DeadLetter) -> BoxFuture<Result<(), SinkError>> {
            let letters = Arc::clone(&self.letters);
            let fail = self.fail;
            Box::pin(async move {
                if fail {
                    return Err("topic unavailable".into());
                }
                letters.lock().unwrap().push(letter);
                Ok(())
            })
        }
    }

    fn id(topic: &str, partition: i64, offset: i64) -> RecordId {
        RecordId {
            topic: topic.into(),
            partition,
            offset,
        }
    }

    async fn run(
        event: &KafkaEvent,
        handler: &Arc<ScriptedHandler>,
        sink: &Arc<RecordingSink>,
    ) -> BatchResult {
        process_batch(
            event,
            Arc::clone(handler) as Arc<dyn RecordHandler>,
            Arc::clone(sink) as Arc<dyn DeadLetterSink>,
            &BatchConfig::default(),
            1_234,
        )
        .await
    }

    #[tokio::test]
    async fn all_done_reports_no_failures() {
        let handler = Arc::new(ScriptedHandler::default());
        let sink = Arc::new(RecordingSink::default());
        let ev = event(vec![
            record("orders", 0, 1, Some("a"), Some("ok")),
            record("orders", 0, 2, Some("b"), Some("ok")),
            record("orders", 1, 7, None, Some("ok")),
        ]);
        let result = run(&ev, &handler, &sink).await;

        assert!(result.response.is_success());
        assert_eq!(
            result.report,
            BatchReport {
                records: 3,
                done: 3,
                ..BatchReport::default()
            }
        );
        assert_eq!(handler.seen().len(), 3);
        assert!(sink.letters().is_empty());
    }

    #[tokio::test]
    async fn retry_skips_later_records_of_same_key_only() {
        let handler = Arc::new(ScriptedHandler::default());
        let sink = Arc::new(RecordingSink::default());
        let ev = event(vec![
            record("orders", 0, 10, Some("a"), Some("ok")),
            record("orders", 0, 11, Some("b"), Some("ok")),
            record("orders", 0, 12, Some("a"), Some("retry")),
            record("orders", 0, 13, Some("b"), Some("ok")),
            record("orders", 0, 14, Some("a"), Some("ok")),
            record("orders", 0, 15, None, Some("ok")),
            record("orders", 0, 16, Some("a"), Some("ok")),
        ]);
        let result = run(&ev, &handler, &sink).await;

        let mut seen = handler.seen();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                "orders-0@10",
                "orders-0@11",
                "orders-0@12",
                "orders-0@13",
                "orders-0@15"
            ]
        );
        assert_eq!(
            result.report,
            BatchReport {
                records: 7,
                done: 4,
                dead_lettered: vec![],
                retried: vec![(id("orders", 0, 12), "busy at orders-0@12".into())],
                skipped_after_failure: 2,
            }
        );
        assert_eq!(
            serde_json::to_value(&result.response).unwrap(),
            json!({"batchItemFailures": [{"itemIdentifier": {"partition": "orders-0", "offset": 12}}]})
        );
    }

    #[tokio::test]
    async fn two_partitions_report_each_lowest_failed_offset() {
        let handler = Arc::new(ScriptedHandler::default());
        let sink = Arc::new(RecordingSink::default());
        let ev = event(vec![
            record("orders", 0, 5, Some("a"), Some("ok")),
            record("orders", 0, 6, Some("b"), Some("retry")),
            record("orders", 0, 7, Some("a"), Some("retry")),
            record("orders", 3, 40, Some("a"), Some("ok")),
            record("orders", 3, 41, Some("a"), Some("retry")),
            record("orders", 3, 42, Some("a"), Some("ok")),
        ]);
        let result = run(&ev, &handler, &sink).await;

        assert_eq!(
            serde_json::to_value(&result.response).unwrap(),
            json!({"batchItemFailures": [
                {"itemIdentifier": {"partition": "orders-0", "offset": 6}},
                {"itemIdentifier": {"partition": "orders-3", "offset": 41}}
            ]})
        );
        let retried: Vec<RecordId> = result
            .report
            .retried
            .iter()
            .map(|(i, _)| i.clone())
            .collect();
        assert_eq!(
            retried,
            vec![id("orders", 0, 6), id("orders", 0, 7), id("orders", 3, 41)]
        );
        assert_eq!(result.report.done, 2);
        assert_eq!(result.report.skipped_after_failure, 1);
    }

    #[tokio::test]
    async fn poison_record_is_dead_lettered_and_rest_succeed() {
        let handler = Arc::new(ScriptedHandler::default());
        let sink = Arc::new(RecordingSink::default());
        let mut poison = record("orders", 0, 2, Some("a"), Some("ok"));
        poison["value"] = json!("***");
        let ev = event(vec![
            record("orders", 0, 1, Some("a"), Some("ok")),
            poison,
            record("orders", 0, 3, Some("a"), Some("ok")),
            record("orders", 0, 4, Some("b"), Some("dead")),
        ]);
        let result = run(&ev, &handler, &sink).await;

        assert!(result.response.is_success());
        assert_eq!(result.report.done, 2);
        let letters = sink.letters();
        let mut by_offset: Vec<(i64, String, Option<String>)> = letters
            .iter()
            .map(|l| (l.source.offset, l.reason.clone(), l.raw.value.clone()))
            .collect();
        by_offset.sort();
        assert_eq!(by_offset.len(), 2);
        assert_eq!(by_offset[0].0, 2);
        assert!(
            by_offset[0]
                .1
                .starts_with("record value is not valid base64"),
            "reason was {}",
            by_offset[0].1
        );
        assert_eq!(
            by_offset[0].2.as_deref(),
            Some("***"),
            "raw value kept verbatim"
        );
        assert_eq!(by_offset[1].0, 4);
        assert_eq!(by_offset[1].1, "unknown order");
        assert!(letters.iter().all(|l| l.failed_at_ms == 1_234));
        assert_eq!(
            result
                .report
                .dead_lettered
                .iter()
                .map(|(i, _)| i.offset)
                .collect::<Vec<_>>(),
            vec![2, 4]
        );
        // The poison record never reached the handler, and its key continued after it.
        let mut seen = handler.seen();
        seen.sort();
        assert_eq!(seen, vec!["orders-0@1", "orders-0@3", "orders-0@4"]);
    }

    #[tokio::test]
    async fn sink_failure_turns_dead_letter_into_retry() {
        let handler = Arc::new(ScriptedHandler::default());
        let sink = Arc::new(RecordingSink::failing());
        let ev = event(vec![
            record("orders", 0, 1, Some("a"), Some("dead")),
            record("orders", 0, 2, Some("a"), Some("ok")),
            record("orders", 0, 3, Some("b"), Some("ok")),
        ]);
        let result = run(&ev, &handler, &sink).await;

        assert_eq!(
            result.report.retried,
            vec![(
                id("orders", 0, 1),
                "dead-letter sink failed (topic unavailable) for: unknown order".into()
            )]
        );
        assert!(result.report.dead_lettered.is_empty());
        assert_eq!(result.report.skipped_after_failure, 1);
        assert_eq!(result.report.done, 1);
        assert_eq!(
            result.response,
            KafkaBatchResponse::from_failures(&[id("orders", 0, 1)])
        );
    }

    #[tokio::test]
    async fn panicking_handler_becomes_retry() {
        let handler = Arc::new(ScriptedHandler::default());
        let sink = Arc::new(RecordingSink::default());
        let ev = event(vec![
            record("orders", 0, 1, Some("a"), Some("ok")),
            record("orders", 0, 2, Some("a"), Some("panic")),
            record("orders", 0, 3, Some("a"), Some("ok")),
            record("orders", 0, 4, Some("b"), Some("ok")),
        ]);
        let result = run(&ev, &handler, &sink).await;

        assert_eq!(
            result.report.retried,
            vec![(id("orders", 0, 2), "handler panicked: handler bug".into())]
        );
        assert_eq!(result.report.done, 2);
        assert_eq!(result.report.skipped_after_failure, 1);
        assert_eq!(
            result.response,
            KafkaBatchResponse::from_failures(&[id("orders", 0, 2)])
        );
    }

    #[tokio::test]
    async fn dead_letter_json_round_trips() {
        let handler = Arc::new(ScriptedHandler::default());
        let sink = Arc::new(RecordingSink::default());
        let ev = event(vec![record("orders", 0, 1, Some("a"), Some("dead"))]);
        run(&ev, &handler, &sink).await;
        let letter = sink.letters().pop().expect("one letter");

        let json = serde_json::to_value(&letter).unwrap();
        assert_eq!(
            json["source"],
            json!({"topic": "orders", "partition": 0, "offset": 1})
        );
        assert_eq!(json["reason"], json!("unknown order"));
        assert_eq!(json["failedAtMs"], json!(1_234));
        assert_eq!(json["raw"]["batchKey"], json!("orders-0"));
        let back: DeadLetter = serde_json::from_value(json).unwrap();
        assert_eq!(back, letter);
    }

    /// Logs start/end of every record and the peak number in flight, per key and overall.
    #[derive(Default)]
    struct TimingHandler {
        state: Arc<Mutex<Timing>>,
    }

    #[derive(Default)]
    struct Timing {
        log: Vec<String>,
        in_flight: HashMap<String, usize>,
        peak_per_key: HashMap<String, usize>,
        total: usize,
        peak_total: usize,
    }

    impl RecordHandler for TimingHandler {
        fn handle(&self, record: InboundRecord) -> BoxFuture<RecordOutcome> {
            let state = Arc::clone(&self.state);
            Box::pin(async move {
                let key = record.key_str().unwrap_or("-").to_owned();
                {
                    let mut s = state.lock().unwrap();
                    s.log.push(format!("start {key}@{}", record.id.offset));
                    let n = s.in_flight.entry(key.clone()).or_default();
                    *n += 1;
                    let n = *n;
                    let peak = s.peak_per_key.entry(key.clone()).or_default();
                    *peak = (*peak).max(n);
                    s.total += 1;
                    s.peak_total = s.peak_total.max(s.total);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                let mut s = state.lock().unwrap();
                s.log.push(format!("end {key}@{}", record.id.offset));
                *s.in_flight.entry(key).or_default() -= 1;
                s.total -= 1;
                RecordOutcome::Done
            })
        }
    }

    async fn run_timed(
        ev: &KafkaEvent,
        max_concurrency: usize,
    ) -> (BatchResult, Arc<TimingHandler>) {
        let handler = Arc::new(TimingHandler::default());
        let result = process_batch(
            ev,
            Arc::clone(&handler) as Arc<dyn RecordHandler>,
            Arc::new(RecordingSink::default()),
            &BatchConfig { max_concurrency },
            0,
        )
        .await;
        (result, handler)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_of_one_key_never_overlap() {
        let ev = event(vec![
            record("orders", 0, 1, Some("a"), Some("ok")),
            record("orders", 0, 2, Some("b"), Some("ok")),
            record("orders", 0, 3, Some("a"), Some("ok")),
            record("orders", 0, 4, Some("b"), Some("ok")),
            record("orders", 0, 5, Some("a"), Some("ok")),
        ]);
        let (result, handler) = run_timed(&ev, 4).await;
        assert_eq!(result.report.done, 5);

        let s = handler.state.lock().unwrap();
        assert_eq!(s.peak_per_key.get("a"), Some(&1));
        assert_eq!(s.peak_per_key.get("b"), Some(&1));
        // Within key "a", each record ends before the next one starts, in offset order.
        let a: Vec<&str> = s
            .log
            .iter()
            .map(String::as_str)
            .filter(|e| e.contains("a@"))
            .collect();
        assert_eq!(
            a,
            vec![
                "start a@1",
                "end a@1",
                "start a@3",
                "end a@3",
                "start a@5",
                "end a@5"
            ]
        );
    }

    /// Every record waits until `parties` records are in flight at once, or gives up.
    struct RendezvousHandler {
        barrier: Arc<tokio::sync::Barrier>,
    }

    impl RecordHandler for RendezvousHandler {
        fn handle(&self, _record: InboundRecord) -> BoxFuture<RecordOutcome> {
            let barrier = Arc::clone(&self.barrier);
            Box::pin(async move {
                match tokio::time::timeout(Duration::from_secs(5), barrier.wait()).await {
                    Ok(_) => RecordOutcome::Done,
                    Err(_) => RecordOutcome::Retry("ran alone".into()),
                }
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn different_key_groups_run_concurrently() {
        // Three groups: two keys of one partition and one key of another partition.
        let ev = event(vec![
            record("orders", 0, 1, Some("a"), Some("ok")),
            record("orders", 0, 2, Some("b"), Some("ok")),
            record("orders", 1, 1, Some("a"), Some("ok")),
        ]);
        let handler = Arc::new(RendezvousHandler {
            barrier: Arc::new(tokio::sync::Barrier::new(3)),
        });
        let result = process_batch(
            &ev,
            handler,
            Arc::new(RecordingSink::default()),
            &BatchConfig { max_concurrency: 3 },
            0,
        )
        .await;
        assert_eq!(result.report.done, 3, "all three met at the barrier");
        assert!(result.response.is_success());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn max_concurrency_one_runs_groups_one_at_a_time() {
        let ev = event(vec![
            record("orders", 0, 1, Some("a"), Some("ok")),
            record("orders", 0, 2, Some("b"), Some("ok")),
            record("orders", 1, 1, Some("a"), Some("ok")),
            record("orders", 0, 3, Some("a"), Some("ok")),
        ]);
        let (result, handler) = run_timed(&ev, 1).await;
        assert_eq!(result.report.done, 4);

        let s = handler.state.lock().unwrap();
        assert_eq!(s.peak_total, 1);
        assert_eq!(
            s.log,
            vec![
                "start a@1",
                "end a@1",
                "start a@3",
                "end a@3", // orders-0 key a
                "start b@2",
                "end b@2", // orders-0 key b
                "start a@1",
                "end a@1", // orders-1 key a
            ]
        );
    }

    #[tokio::test]
    async fn zero_max_concurrency_still_makes_progress() {
        let ev = event(vec![
            record("orders", 0, 1, Some("a"), Some("ok")),
            record("orders", 0, 2, Some("b"), Some("ok")),
        ]);
        let result = tokio::time::timeout(Duration::from_secs(5), run_timed(&ev, 0))
            .await
            .expect("batch finished");
        assert_eq!(result.0.report.done, 2);
        assert_eq!(result.1.state.lock().unwrap().peak_total, 1);
    }
}
