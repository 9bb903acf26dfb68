//! A Kafka event source mapping, run locally: a consumer group per function, batches built as
//! the same `KafkaEvent` payload AWS sends, offsets committed only after the invocation, and a
//! partition rewound to its lowest failed offset so the failed records come again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use sagaflow_handlers::KafkaFunction;
use sagaflow_lambda_kafka::parse_kafka_event;
use sagaflow_lambda_kafka::trigger_payload::{kafka_event, ConsumedRecord, EventSource};

use crate::faults::{FaultPlan, TriggerFault};
use sagaflow_kafka::KafkaConfig;

/// Batching of one mapping, as `BatchSize` and `MaximumBatchingWindowInSeconds` set it on AWS.
#[derive(Clone, Debug)]
pub struct TriggerConfig {
    /// Most records in one invocation.
    pub batch_size: usize,
    /// How long to gather records after the first one arrives.
    pub batching_window: Duration,
    /// The payload flavour.
    pub event_source: EventSource,
    /// Faults to inject (the chaos run); `None` runs as AWS does on a good day.
    pub faults: Option<Arc<FaultPlan>>,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        Self {
            batch_size: 100,
            batching_window: Duration::from_millis(100),
            event_source: EventSource::SelfManaged,
            faults: None,
        }
    }
}

/// Counters of one trigger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TriggerStats {
    /// Invocations made.
    pub invocations: u64,
    /// Records handed to the function, redeliveries included.
    pub records: u64,
    /// Partitions rewound after a partial failure.
    pub rewinds: u64,
}

/// A running mapping from topics to one function.
pub struct KafkaTrigger {
    name: String,
    topics: Vec<String>,
    function: KafkaFunction,
    kafka: KafkaConfig,
    config: TriggerConfig,
}

/// A started trigger: stop it to get its counters back.
pub struct RunningTrigger {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Mutex<TriggerStats>>,
    /// The function's name (its consumer group).
    pub name: String,
}

impl RunningTrigger {
    /// Counters so far.
    pub fn stats(&self) -> TriggerStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Stops polling, leaves the group, and waits (at most `limit`) for the thread to end.
    pub fn stop(mut self, limit: Duration) -> TriggerStats {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + limit;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            // A consumer that hangs on close (a known rdkafka issue) is left behind rather
            // than hanging the caller; the process ends it.
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        self.stats()
    }
}

impl KafkaTrigger {
    /// A mapping named `name` (also its consumer group id) from `topics` to `function`.
    pub fn new(
        name: &str,
        topics: Vec<String>,
        function: KafkaFunction,
        kafka: KafkaConfig,
        config: TriggerConfig,
    ) -> Self {
        Self {
            name: name.to_string(),
            topics,
            function,
            kafka,
            config,
        }
    }

    /// Starts consuming on a thread of its own; invocations run on `runtime`.
    pub fn start(self, runtime: tokio::runtime::Handle) -> Result<RunningTrigger, String> {
        let consumer: BaseConsumer = self
            .kafka
            .client_config()
            .set("group.id", &self.name)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "50")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .create()
            .map_err(|e| format!("{}: cannot create consumer: {e}", self.name))?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| format!("{}: cannot subscribe: {e}", self.name))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(TriggerStats::default()));
        let name = self.name.clone();
        let thread = {
            let stop = stop.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name(format!("trigger-{name}"))
                .spawn(move || self.run(consumer, runtime, stop, stats))
                .map_err(|e| e.to_string())?
        };
        Ok(RunningTrigger {
            stop,
            thread: Some(thread),
            stats,
            name,
        })
    }

    fn gather(&self, consumer: &BaseConsumer, stop: &AtomicBool) -> Vec<ConsumedRecord> {
        let mut batch = Vec::new();
        let mut first_at: Option<Instant> = None;
        while !stop.load(Ordering::SeqCst) && batch.len() < self.config.batch_size {
            if let Some(started) = first_at {
                if started.elapsed() >= self.config.batching_window {
                    break;
                }
            }
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(message)) => {
                    first_at.get_or_insert_with(Instant::now);
                    batch.push(consumed(&message));
                }
                // Transient client errors (rebalances, a broker restarting) are retried by
                // polling again; records are never skipped because offsets are not committed.
                Some(Err(_)) | None => {
                    if first_at.is_none() && batch.is_empty() {
                        return batch;
                    }
                }
            }
        }
        batch
    }

    /// Keeps from `batch` only what a rewound partition should deliver now. A rewind moves a
    /// partition back to its first failed offset, but a broker may answer a fetch from inside
    /// a record batch with the next batch, or with nothing when none follows: tansu 0.6.0 does
    /// (Kafka returns the batch holding the offset). Either way the failed records would be
    /// skipped, and the next commit would move past them for good. So while a partition comes
    /// back past its target, or stays silent for `RESEEK_AFTER`, it is moved back further
    /// (1, 2, 4, … offsets before the target) and its records are held back; records before
    /// the target (done and committed already) are dropped; the target itself ends the rewind.
    fn resume_rewound(
        &self,
        consumer: &BaseConsumer,
        batch: Vec<ConsumedRecord>,
        rewound: &mut Rewound,
    ) -> Vec<ConsumedRecord> {
        if rewound.is_empty() {
            return batch;
        }
        let first = first_offsets(&batch);
        // Per partition still rewinding: deliver records from this offset on, or none.
        let mut deliver_from: HashMap<(String, i32), Option<i64>> = HashMap::new();
        let mut resumed = Vec::new();
        for (partition, rewind) in rewound.iter_mut() {
            match first.get(partition) {
                Some(&first_offset) if first_offset <= rewind.target => {
                    let target = rewind.target;
                    if batch.iter().any(|r| {
                        r.topic == partition.0 && r.partition == partition.1 && r.offset >= target
                    }) {
                        resumed.push(partition.clone());
                    }
                    deliver_from.insert(partition.clone(), Some(target));
                }
                Some(&first_offset) => {
                    self.step_back(
                        consumer,
                        partition,
                        rewind,
                        &format!("came back at offset {first_offset}"),
                    );
                    deliver_from.insert(partition.clone(), None);
                }
                None if rewind.sought_at.elapsed() >= RESEEK_AFTER => {
                    self.step_back(consumer, partition, rewind, "stayed silent");
                }
                None => {}
            }
        }
        for partition in resumed {
            rewound.remove(&partition);
        }
        batch
            .into_iter()
            .filter(
                |r| match deliver_from.get(&(r.topic.clone(), r.partition)) {
                    None => true,
                    Some(None) => false,
                    Some(Some(from)) => r.offset >= *from,
                },
            )
            .collect()
    }

    /// Moves a partition whose rewind did not take further back than the last try.
    fn step_back(
        &self,
        consumer: &BaseConsumer,
        partition: &(String, i32),
        rewind: &mut Rewind,
        what: &str,
    ) {
        rewind.steps_back = (rewind.steps_back * 2).max(1);
        let to = (rewind.target - rewind.steps_back).max(0);
        eprintln!(
            "trigger {}: {}-{} {what}, not at offset {}: moving it back to {to}",
            self.name, partition.0, partition.1, rewind.target
        );
        seek(consumer, &partition.0, partition.1, to);
        rewind.sought_at = Instant::now();
    }

    fn run(
        self,
        consumer: BaseConsumer,
        runtime: tokio::runtime::Handle,
        stop: Arc<AtomicBool>,
        stats: Arc<Mutex<TriggerStats>>,
    ) {
        let mut invocations = 0u64;
        // Where each rewound partition was moved back to, until a batch shows it took.
        let mut rewound: Rewound = HashMap::new();
        while !stop.load(Ordering::SeqCst) {
            let batch = self.gather(&consumer, &stop);
            let batch = self.resume_rewound(&consumer, batch, &mut rewound);
            if batch.is_empty() {
                continue;
            }
            invocations += 1;
            let plan = self.config.faults.as_ref();
            let fault = plan.map_or(TriggerFault::None, |p| {
                p.trigger_fault(&self.name, invocations)
            });
            // A silenced command is consumed and committed but never reaches the function.
            let delivered: Vec<ConsumedRecord> = batch
                .iter()
                .filter(|r| {
                    !plan.is_some_and(|p| p.is_silenced(r.header_str("command_type"), r.key_str()))
                })
                .cloned()
                .collect();
            // Parsed as the functions parse what Lambda sends them.
            let event = |records: &[ConsumedRecord]| {
                parse_kafka_event(kafka_event(
                    records,
                    self.config.event_source,
                    &self.kafka.bootstrap_servers,
                ))
            };
            let Ok(payload) = event(&delivered) else {
                // Cannot happen for records read from a broker; rewinding retries them.
                rewind(&consumer, &batch, &HashMap::new(), &mut rewound);
                continue;
            };
            let function = &self.function;
            let result = match fault {
                TriggerFault::None => runtime.block_on(function.handle_batch(&payload)),
                TriggerFault::DeliverTwice => {
                    runtime.block_on(function.handle_batch(&payload));
                    runtime.block_on(function.handle_batch(&payload))
                }
                TriggerFault::Race => {
                    let (first, second) = runtime.block_on(async {
                        tokio::join!(
                            function.handle_batch(&payload),
                            function.handle_batch(&payload)
                        )
                    });
                    // A record is done only if both racers say so.
                    let mut merged = first;
                    merged
                        .response
                        .batch_item_failures
                        .extend(second.response.batch_item_failures);
                    merged
                }
                TriggerFault::CrashAfterCommit | TriggerFault::ErrorHalfway => {
                    if fault == TriggerFault::CrashAfterCommit {
                        runtime.block_on(function.handle_batch(&payload));
                    } else if let Ok(half) = event(&delivered[..delivered.len() / 2]) {
                        runtime.block_on(function.handle_batch(&half));
                    }
                    if let Ok(mut s) = stats.lock() {
                        s.invocations += 1;
                        s.rewinds += 1;
                    }
                    // The invocation failed as a whole: Lambda retries the batch from its start.
                    rewind(&consumer, &batch, &HashMap::new(), &mut rewound);
                    continue;
                }
            };
            let mut failed: HashMap<String, i64> = HashMap::new();
            for f in &result.response.batch_item_failures {
                let lowest = failed
                    .entry(f.item_identifier.partition.clone())
                    .or_insert(f.item_identifier.offset);
                *lowest = (*lowest).min(f.item_identifier.offset);
            }
            if let Ok(mut s) = stats.lock() {
                s.invocations += 1;
                s.records += batch.len() as u64;
                s.rewinds += failed.len() as u64;
            }
            commit(&consumer, &batch, &failed);
            for (id, reason) in &result.report.retried {
                eprintln!("trigger {}: {id} will be retried: {reason}", self.name);
            }
            if !failed.is_empty() {
                rewind(&consumer, &batch, &failed, &mut rewound);
                // AWS backs off before retrying a failed batch; so do we, briefly.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        consumer.unsubscribe();
    }
}

/// Commits, per partition, up to the lowest failed offset (exclusive) or past the batch.
fn commit(consumer: &BaseConsumer, batch: &[ConsumedRecord], failed: &HashMap<String, i64>) {
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for r in batch {
        let entry = next
            .entry((r.topic.clone(), r.partition))
            .or_insert(r.offset + 1);
        *entry = (*entry).max(r.offset + 1);
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), past_batch) in next {
        let offset = failed
            .get(&format!("{topic}-{partition}"))
            .copied()
            .unwrap_or(past_batch);
        let _ = list.add_partition_offset(&topic, partition, Offset::Offset(offset));
    }
    // A failed commit only means these records may come again, which consumers tolerate.
    let _ = consumer.commit(&list, CommitMode::Sync);
}

/// A partition moved back to `target`, not yet seen delivering it.
#[derive(Clone, Copy, Debug)]
struct Rewind {
    /// The first offset to deliver again.
    target: i64,
    /// How far before `target` the last seek went (0: to the target itself).
    steps_back: i64,
    /// When the last seek was made.
    sought_at: Instant,
}

/// How long a rewound partition may deliver nothing before it is moved back further.
const RESEEK_AFTER: Duration = Duration::from_millis(500);

/// Per partition of `batch`, its lowest offset.
fn first_offsets(batch: &[ConsumedRecord]) -> BTreeMap<(String, i32), i64> {
    let mut first: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for r in batch {
        let entry = first
            .entry((r.topic.clone(), r.partition))
            .or_insert(r.offset);
        *entry = (*entry).min(r.offset);
    }
    first
}

/// Per partition, its rewind in progress.
type Rewound = HashMap<(String, i32), Rewind>;

/// Moves each failed partition (all of the batch's partitions when `failed` is empty) back
/// so its records are fetched again, and notes where in `rewound`.
fn rewind(
    consumer: &BaseConsumer,
    batch: &[ConsumedRecord],
    failed: &HashMap<String, i64>,
    rewound: &mut Rewound,
) {
    for ((topic, partition), first_offset) in first_offsets(batch) {
        let to = if failed.is_empty() {
            Some(first_offset)
        } else {
            failed.get(&format!("{topic}-{partition}")).copied()
        };
        if let Some(offset) = to {
            seek(consumer, &topic, partition, offset);
            rewound.insert(
                (topic, partition),
                Rewind {
                    target: offset,
                    steps_back: 0,
                    sought_at: Instant::now(),
                },
            );
        }
    }
}

/// Moves one partition's fetch position; a refused seek is caught by the next batch
/// (`resume_rewound`), so it is only reported here.
fn seek(consumer: &BaseConsumer, topic: &str, partition: i32, offset: i64) {
    if let Err(e) = consumer.seek(
        topic,
        partition,
        Offset::Offset(offset),
        Duration::from_secs(5),
    ) {
        eprintln!("trigger: seek of {topic}-{partition} to {offset} refused ({e}); checked on the next batch");
    }
}

/// Copies a message off the consumer.
fn consumed(message: &BorrowedMessage<'_>) -> ConsumedRecord {
    let headers = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    ConsumedRecord {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}
