//! Section 3: one Kafka batch of 1,000 command records over 100 aggregates through one
//! invocation of the inventory function's handler, on the local DynamoDB endpoint: wall time,
//! DynamoDB requests and peak memory, record by record and grouped per aggregate, one key group
//! at a time and several at once (each key's records stay in order either way).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::kafka::KafkaEvent;
use sagaflow_dynamodb::tables::ensure_events_table;
use sagaflow_dynamodb::DynamoEventStore;
use sagaflow_eventsourcing::command::CommandEnvelope;
use sagaflow_eventsourcing::Timestamp;
use sagaflow_handlers::ServiceHandler;
use sagaflow_kafka::records::command_record;
use sagaflow_kafka::Topics;
use sagaflow_lambda_kafka::trigger_payload::{kafka_event, ConsumedRecord, EventSource};
use sagaflow_lambda_kafka::{
    process_batch, BatchConfig, BoxFuture, DeadLetter, DeadLetterSink, InboundRecord,
    RecordHandler, RecordOutcome, SinkError,
};
use sagaflow_local_trigger::RequestCounter;
use serde_json::json;

use crate::settings::Settings;

/// Records in the batch.
const RECORDS: usize = 1_000;
/// Aggregates they address.
const AGGREGATES: usize = 100;
/// Partitions they came from.
const PARTITIONS: usize = 4;
/// Key groups run at once in the concurrent runs (the functions' default).
const CONCURRENCY: usize = 8;

/// One way of running the batch and what it cost.
#[derive(Clone, Debug)]
pub struct BatchRun {
    /// `record by record` or `grouped per aggregate`.
    pub mode: &'static str,
    /// Key groups in flight at once.
    pub concurrency: usize,
    /// Wall time of the invocation, in milliseconds.
    pub wall_ms: f64,
    /// DynamoDB requests it made.
    pub requests: u64,
    /// The process's peak resident memory during it, in MiB.
    pub peak_rss_mib: f64,
}

/// The handler as it was before grouping: every record on its own.
struct RecordByRecord<S>(ServiceHandler<S>);

impl<S: sagaflow_eventsourcing::EventStore + 'static> RecordHandler for RecordByRecord<S> {
    fn handle(&self, record: InboundRecord) -> BoxFuture<RecordOutcome> {
        self.0.handle(record)
    }
}

/// Counts letters; a correct batch has none.
#[derive(Default)]
struct CountingSink(AtomicU64);

impl DeadLetterSink for CountingSink {
    fn send(&self, _letter: DeadLetter) -> BoxFuture<Result<(), SinkError>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
}

/// The batch for run `run`: aggregate `w`'s tenth record restocks, the others alternate
/// reserving and restocking, interleaved across aggregates as producers would send them.
fn batch(topics: &Topics, run: &str) -> Result<KafkaEvent, String> {
    let per_aggregate = RECORDS / AGGREGATES;
    let mut offsets = [0i64; PARTITIONS];
    let mut records = Vec::with_capacity(RECORDS);
    for step in 0..per_aggregate {
        for w in 0..AGGREGATES {
            // Each aggregate is a SKU: its restocks go to its stock stream, and each
            // reservation to its own order's stream together with that stock.
            let target = format!("{run}-w{w}");
            let (action, payload) = if step % 2 == 0 {
                ("restock", json!({ "sku": target, "quantity": 2 }))
            } else {
                (
                    "reserve",
                    json!({ "order_id": format!("{run}-ord-{w}-{step}"), "lines": [{ "sku": target, "quantity": 1 }] }),
                )
            };
            let command = CommandEnvelope {
                trace_context: None,
                command_id: format!("{target}-{step}"),
                command_type: format!("inventory.{action}"),
                target_id: target.clone(),
                payload,
                correlation_id: format!("{run}-ord-{w}-{step}"),
                causation_id: format!("cause-{target}-{step}"),
                issued_at: Timestamp(1_000),
            };
            let record = command_record(topics, &command);
            let partition = w % PARTITIONS;
            let offset = offsets[partition];
            offsets[partition] += 1;
            records.push(ConsumedRecord {
                topic: record.topic,
                partition: partition as i32,
                offset,
                timestamp_ms: 1_000,
                key: Some(record.key.into_bytes()),
                value: Some(record.value),
                headers: record.headers,
            });
        }
    }
    serde_json::from_value(kafka_event(&records, EventSource::Msk, "127.0.0.1:9092"))
        .map_err(|e| format!("the batch does not parse as a KafkaEvent: {e}"))
}

/// The high-water mark of resident memory, reset so the next reading covers only what follows.
fn peak_rss_mib(reset: bool) -> f64 {
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    if reset {
        // Writing 5 resets the peak (Linux 4.0+); where it cannot, the peak covers the run so far.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
    peak / 1024.0
}

/// Runs the section and prints its table.
pub async fn run(settings: &Settings) -> Result<Vec<BatchRun>, String> {
    let counter = RequestCounter::new();
    let base = sagaflow_dynamodb::dynamodb_client().await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        base.config()
            .to_builder()
            .interceptor(counter.interceptor())
            .build(),
    );
    let run_id = format!("bench{}b", std::process::id());
    let table = format!("{run_id}-events");
    ensure_events_table(&client, &table)
        .await
        .map_err(|e| e.to_string())?;
    let topics = Topics::new(run_id.clone());
    let store = Arc::new(DynamoEventStore::new(client.clone(), table.clone()));
    let service =
        ServiceHandler::new("inventory", store, topics.clone()).map_err(|e| e.to_string())?;
    let modes: [(&'static str, Arc<dyn RecordHandler>); 2] = [
        (
            "record by record",
            Arc::new(RecordByRecord(service.clone())),
        ),
        ("grouped per aggregate", Arc::new(service)),
    ];
    let mut runs = Vec::new();
    for (mode, handler) in modes {
        for concurrency in [1, CONCURRENCY] {
            let event = batch(&topics, &format!("{}{concurrency}", &mode[..1]))?;
            let sink = Arc::new(CountingSink::default());
            counter.reset();
            peak_rss_mib(true);
            let started = Instant::now();
            let result = process_batch(
                &event,
                handler.clone(),
                sink.clone(),
                &BatchConfig {
                    max_concurrency: concurrency,
                },
                1_000,
            )
            .await;
            let wall_ms = started.elapsed().as_secs_f64() * 1_000.0;
            let report = result.report;
            if report.done != RECORDS || sink.0.load(Ordering::Relaxed) > 0 {
                return Err(format!(
                    "{mode}, {concurrency} at once: {} of {RECORDS} records done, {} dead-lettered, {} retried ({:?})",
                    report.done,
                    report.dead_lettered.len(),
                    report.retried.len(),
                    report.retried.first()
                ));
            }
            runs.push(BatchRun {
                mode,
                concurrency,
                wall_ms,
                requests: counter.total_requests(),
                peak_rss_mib: peak_rss_mib(false),
            });
        }
    }
    let _ = client.delete_table().table_name(&table).send().await;
    print(&runs, settings);
    Ok(runs)
}

fn print(runs: &[BatchRun], settings: &Settings) {
    println!(
        "\n3. One Kafka batch: {RECORDS} inventory commands over {AGGREGATES} aggregates, {PARTITIONS} partitions, one handler invocation (dynoxide on 127.0.0.1{})",
        if settings.quick { "; quick mode runs it in full too" } else { "" }
    );
    println!(
        "  {:<24}{:>10}{:>12}{:>12}{:>16}{:>14}",
        "mode", "at once", "wall ms", "requests", "req per record", "peak RSS MiB"
    );
    for run in runs {
        println!(
            "  {:<24}{:>10}{:>12.0}{:>12}{:>16.2}{:>14.1}",
            run.mode,
            run.concurrency,
            run.wall_ms,
            run.requests,
            run.requests as f64 / RECORDS as f64,
            run.peak_rss_mib
        );
    }
    println!("  (the local endpoint serves one request at a time, so running key groups at once gains only what the handler overlaps with it)");
}
