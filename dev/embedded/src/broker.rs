//! An in-process Kafka broker that feeds functions the way a Kafka event source mapping does:
//! topics split into partitions by key (one key's records stay in order), one consumer group
//! per function, batches handed over as the `KafkaEvent` payload AWS sends, and offsets
//! committed after the invocation from its partial batch response: a partition that reported
//! a failure resumes at the reported offset, the others move past their records.
//!
//! At-least-once is real here: a seeded share of commits is lost (the invocation did its work
//! and the commit never happened), so the same records are delivered again. Topics must be
//! created before they are used, as on the broker sagaflow runs against.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use aws_lambda_events::event::kafka::KafkaEvent;
use sagaflow_eventsourcing::clock::Clock;
use sagaflow_eventsourcing::Timestamp;
use sagaflow_lambda_kafka::trigger_payload::{kafka_event, ConsumedRecord, EventSource};
use sagaflow_lambda_kafka::{parse_kafka_event, KafkaBatchResponse, PayloadError};
use sagaflow_records::{OutboundRecord, PublishFailure, PublishFuture, Publisher};

use crate::random::SplitMix64;

/// How long after it is published a record reaches its topic, in milliseconds: the simulated
/// world's latency (a payment provider that answers late holds its charge this long). A held
/// record is appended when its time comes, after whatever was published meanwhile.
pub type Latency = Arc<dyn Fn(&OutboundRecord) -> i64 + Send + Sync>;

/// How the broker is set up.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Partitions of every topic.
    pub partitions: usize,
    /// Most records in one batch (the mapping's `BatchSize`).
    pub batch_size: usize,
    /// Share of commits lost, in percent: those batches are delivered again.
    pub lost_commit_percent: u32,
    /// Seed of the lost commits.
    pub seed: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            partitions: 4,
            batch_size: 100,
            lost_commit_percent: 0,
            seed: 1,
        }
    }
}

/// Why the broker refused a request.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The topic was never created (no automatic topic creation).
    #[error("unknown topic `{0}`: create it first")]
    UnknownTopic(String),
    /// The consumer group does not exist.
    #[error("unknown consumer group `{0}`")]
    UnknownGroup(String),
    /// A batch could not be read back as a trigger payload.
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// Counters of the broker over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Records published.
    pub published: u64,
    /// Records delivered to a function, redeliveries included.
    pub delivered: u64,
    /// Deliveries of a record its group had been given before.
    pub redelivered: u64,
    /// Batches handed to functions.
    pub batches: u64,
    /// Commits lost on purpose (the batch comes again).
    pub lost_commits: u64,
    /// Partitions that resumed at a failed record of a partial batch response.
    pub resumed_at_failure: u64,
}

/// One batch handed to a group: the payload, and what it covered per partition.
#[derive(Clone, Debug)]
pub struct Polled {
    /// The consumer group.
    pub group: String,
    /// The batch, as the function is invoked with it.
    pub event: KafkaEvent,
    /// Per partition: the first offset delivered and the offset after the last.
    ranges: Vec<(String, usize, i64, i64)>,
}

struct Stored {
    record: OutboundRecord,
    timestamp_ms: i64,
}

#[derive(Default)]
struct Group {
    topics: Vec<String>,
    committed: HashMap<(String, usize), i64>,
    delivered_up_to: HashMap<(String, usize), i64>,
    next_start: usize,
}

struct State {
    topics: BTreeMap<String, Vec<Vec<Stored>>>,
    held: Vec<(i64, OutboundRecord)>,
    groups: BTreeMap<String, Group>,
    rng: SplitMix64,
    stats: BrokerStats,
}

/// The broker: publish to it like Kafka, poll it like a Kafka trigger.
pub struct InProcessBroker {
    state: Mutex<State>,
    config: BrokerConfig,
    clock: Arc<dyn Clock>,
    latency: Option<Latency>,
}

impl InProcessBroker {
    /// An empty broker on `clock`, delaying records as `latency` says (no delay if `None`).
    pub fn new(config: BrokerConfig, clock: Arc<dyn Clock>, latency: Option<Latency>) -> Self {
        Self {
            state: Mutex::new(State {
                topics: BTreeMap::new(),
                held: Vec::new(),
                groups: BTreeMap::new(),
                rng: SplitMix64::new(config.seed),
                stats: BrokerStats::default(),
            }),
            config,
            clock,
            latency,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state whole (records are pushed complete, offsets
        // set once), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates `topics` with the configured partitions; an existing topic is left as it is.
    pub fn create_topics(&self, topics: &[String]) {
        let partitions = self.config.partitions.max(1);
        let mut state = self.lock();
        for topic in topics {
            state
                .topics
                .entry(topic.clone())
                .or_insert_with(|| (0..partitions).map(|_| Vec::new()).collect());
        }
    }

    /// Creates the consumer group `group` reading `topics` from their beginning.
    pub fn subscribe(&self, group: &str, topics: &[String]) -> Result<(), BrokerError> {
        let mut state = self.lock();
        if let Some(unknown) = topics.iter().find(|t| !state.topics.contains_key(*t)) {
            return Err(BrokerError::UnknownTopic(unknown.clone()));
        }
        state.groups.insert(
            group.to_string(),
            Group {
                topics: topics.to_vec(),
                ..Group::default()
            },
        );
        Ok(())
    }

    /// The next batch for `group`: from each partition, the records after its committed offset
    /// that may be delivered now, up to the batch size; `None` when there is nothing.
    pub fn poll(&self, group: &str) -> Result<Option<Polled>, BrokerError> {
        self.poll_partitions(group, None)
    }

    /// The next batch for `group` from partition `partition` of each topic it reads: what one
    /// of an event source mapping's concurrent pollers, the one that owns that partition, takes.
    pub fn poll_partition(
        &self,
        group: &str,
        partition: usize,
    ) -> Result<Option<Polled>, BrokerError> {
        self.poll_partitions(group, Some(partition))
    }

    fn poll_partitions(
        &self,
        group: &str,
        only: Option<usize>,
    ) -> Result<Option<Polled>, BrokerError> {
        let now = self.clock.now().as_millis();
        let mut guard = self.lock();
        let state = &mut *guard;
        state.release_held(now);
        let Some(subscriber) = state.groups.get_mut(group) else {
            return Err(BrokerError::UnknownGroup(group.to_string()));
        };
        let mut partitions: Vec<(String, usize)> = Vec::new();
        for topic in &subscriber.topics {
            let count = state.topics.get(topic).map_or(0, Vec::len);
            partitions.extend(
                (0..count)
                    .filter(|p| only.is_none_or(|only| only == *p))
                    .map(|p| (topic.clone(), p)),
            );
        }
        // Start each poll at another partition, so a busy one cannot starve the rest.
        if !partitions.is_empty() {
            let start = subscriber.next_start % partitions.len();
            partitions.rotate_left(start);
            subscriber.next_start = subscriber.next_start.wrapping_add(1);
        }
        let mut records = Vec::new();
        let mut ranges = Vec::new();
        for (topic, partition) in partitions {
            let room = self.config.batch_size.max(1) - records.len();
            if room == 0 {
                break;
            }
            let from = *subscriber
                .committed
                .get(&(topic.clone(), partition))
                .unwrap_or(&0);
            let log = &state.topics[&topic][partition];
            let taken: Vec<(i64, &Stored)> = log
                .iter()
                .enumerate()
                .skip(usize::try_from(from).unwrap_or(0))
                .take(room)
                .map(|(offset, stored)| (offset as i64, stored))
                .collect();
            let (Some(first), Some(last)) = (taken.first(), taken.last()) else {
                continue;
            };
            let (first, next) = (first.0, last.0 + 1);
            let seen = subscriber
                .delivered_up_to
                .entry((topic.clone(), partition))
                .or_insert(0);
            state.stats.redelivered += u64::try_from((*seen).min(next) - first).unwrap_or(0);
            *seen = (*seen).max(next);
            records.extend(taken.into_iter().map(|(offset, stored)| ConsumedRecord {
                topic: topic.clone(),
                partition: partition as i32,
                offset,
                timestamp_ms: stored.timestamp_ms,
                key: Some(stored.record.key.clone().into_bytes()),
                value: Some(stored.record.value.clone()),
                headers: stored.record.headers.clone(),
            }));
            ranges.push((topic, partition, first, next));
        }
        if records.is_empty() {
            return Ok(None);
        }
        state.stats.batches += 1;
        state.stats.delivered += records.len() as u64;
        let payload = kafka_event(&records, EventSource::Msk, "in-process");
        Ok(Some(Polled {
            group: group.to_string(),
            event: parse_kafka_event(payload)?,
            ranges,
        }))
    }

    /// Commits what the invocation of `polled` answered: a partition the response names
    /// resumes at the offset it gives, the others move past their records, except for the
    /// seeded share of commits that are lost.
    pub fn complete(&self, polled: &Polled, response: &KafkaBatchResponse) {
        let failed: HashMap<&str, i64> = response
            .batch_item_failures
            .iter()
            .map(|f| {
                (
                    f.item_identifier.partition.as_str(),
                    f.item_identifier.offset,
                )
            })
            .collect();
        let mut guard = self.lock();
        let state = &mut *guard;
        let lost = state.rng.chance(self.config.lost_commit_percent);
        if lost {
            state.stats.lost_commits += 1;
            return;
        }
        let Some(group) = state.groups.get_mut(&polled.group) else {
            return;
        };
        for (topic, partition, first, next) in &polled.ranges {
            let commit = match failed.get(format!("{topic}-{partition}").as_str()) {
                Some(offset) if (*first..*next).contains(offset) => {
                    state.stats.resumed_at_failure += 1;
                    *offset
                }
                _ => *next,
            };
            let committed = group
                .committed
                .entry((topic.clone(), *partition))
                .or_insert(0);
            *committed = (*committed).max(commit);
        }
    }

    /// When the next held record reaches its topic, if one is held.
    pub fn next_delivery_at(&self) -> Option<Timestamp> {
        self.lock()
            .held
            .iter()
            .map(|(at, _)| *at)
            .min()
            .map(Timestamp)
    }

    /// Whether some group has records it may take now.
    pub fn has_deliverable(&self) -> bool {
        let now = self.clock.now().as_millis();
        let mut guard = self.lock();
        let state = &mut *guard;
        state.release_held(now);
        state.groups.values().any(|group| {
            group.topics.iter().any(|topic| {
                state.topics.get(topic).is_some_and(|partitions| {
                    partitions.iter().enumerate().any(|(partition, log)| {
                        let from = *group
                            .committed
                            .get(&(topic.clone(), partition))
                            .unwrap_or(&0);
                        log.len() > usize::try_from(from).unwrap_or(0)
                    })
                })
            })
        })
    }

    /// Every record of `topic` in partition order, then offset order (the dead-letter topic,
    /// read back).
    pub fn records(&self, topic: &str) -> Vec<OutboundRecord> {
        let state = self.lock();
        state
            .topics
            .get(topic)
            .map(|partitions| {
                partitions
                    .iter()
                    .flat_map(|log| log.iter().map(|stored| stored.record.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The counters so far.
    pub fn stats(&self) -> BrokerStats {
        self.lock().stats
    }

    fn append(&self, records: &[OutboundRecord]) -> Result<(), PublishFailure> {
        let now = self.clock.now().as_millis();
        let mut state = self.lock();
        for (index, record) in records.iter().enumerate() {
            if !state.topics.contains_key(&record.topic) {
                return Err(PublishFailure {
                    index,
                    source: Box::new(BrokerError::UnknownTopic(record.topic.clone())),
                });
            }
            let delay = self.latency.as_ref().map_or(0, |latency| latency(record));
            if delay > 0 {
                state.held.push((now.saturating_add(delay), record.clone()));
            } else {
                state.append(record.clone(), now);
            }
            state.stats.published += 1;
        }
        Ok(())
    }
}

impl State {
    fn append(&mut self, record: OutboundRecord, now: i64) {
        if let Some(partitions) = self.topics.get_mut(&record.topic) {
            let partition = partition_of(&record.key, partitions.len());
            partitions[partition].push(Stored {
                record,
                timestamp_ms: now,
            });
        }
    }

    /// Appends the held records whose time has come, earliest first.
    fn release_held(&mut self, now: i64) {
        if self.held.iter().all(|(at, _)| *at > now) {
            return;
        }
        let (mut due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.held = later;
        due.sort_by_key(|(at, _)| *at);
        for (at, record) in due {
            self.append(record, at);
        }
    }
}

impl Publisher for InProcessBroker {
    fn publish<'a>(&'a self, records: &'a [OutboundRecord]) -> PublishFuture<'a> {
        let result = self.append(records);
        Box::pin(async move { result })
    }
}

/// The partition of `key`: FNV-1a, so a key always lands in the same partition.
fn partition_of(key: &str, partitions: usize) -> usize {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % partitions.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagaflow_eventsourcing::clock::SimClock;
    use sagaflow_lambda_kafka::{decode_batch, RecordId};

    fn record(topic: &str, key: &str, value: &str) -> OutboundRecord {
        OutboundRecord {
            topic: topic.into(),
            key: key.into(),
            value: value.as_bytes().to_vec(),
            headers: vec![("h".into(), b"v".to_vec())],
        }
    }

    fn broker(lost: u32, latency: Option<Latency>) -> (InProcessBroker, SimClock) {
        let clock = SimClock::starting_at(Timestamp(1_000));
        let broker = InProcessBroker::new(
            BrokerConfig {
                partitions: 3,
                batch_size: 10,
                lost_commit_percent: lost,
                seed: 5,
            },
            Arc::new(clock.clone()),
            latency,
        );
        broker.create_topics(&["t".to_string()]);
        broker.subscribe("g", &["t".to_string()]).unwrap();
        (broker, clock)
    }

    fn values(polled: &Polled) -> Vec<(String, String)> {
        decode_batch(&polled.event)
            .into_iter()
            .map(|decoded| {
                let record = decoded.result.unwrap();
                (
                    record.key_str().unwrap().to_string(),
                    record.value_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_key_keeps_its_order_and_a_failed_partition_resumes_at_the_reported_offset() {
        let (broker, _) = broker(0, None);
        let published: Vec<OutboundRecord> = (0..4)
            .map(|i| record("t", "k1", &format!("v{i}")))
            .collect();
        broker.publish(&published).await.unwrap();
        let first = broker.poll("g").unwrap().unwrap();
        let got = values(&first);
        assert_eq!(
            got.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
            ["v0", "v1", "v2", "v3"]
        );
        assert_eq!(first.event.records.len(), 1, "one key, one partition");
        let partition = partition_of("k1", 3) as i64;
        let response = KafkaBatchResponse::from_failures([&RecordId {
            topic: "t".into(),
            partition,
            offset: 2,
        }]);
        broker.complete(&first, &response);
        let again = broker.poll("g").unwrap().unwrap();
        assert_eq!(
            values(&again)
                .iter()
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>(),
            ["v2", "v3"]
        );
        broker.complete(&again, &KafkaBatchResponse::success());
        assert!(broker.poll("g").unwrap().is_none());
        let stats = broker.stats();
        assert_eq!((stats.redelivered, stats.resumed_at_failure), (2, 1));
    }

    #[tokio::test]
    async fn a_lost_commit_delivers_the_batch_again() {
        let (broker, _) = broker(100, None);
        broker.publish(&[record("t", "k", "v")]).await.unwrap();
        let first = broker.poll("g").unwrap().unwrap();
        broker.complete(&first, &KafkaBatchResponse::success());
        let second = broker.poll("g").unwrap().unwrap();
        assert_eq!(values(&first), values(&second));
        assert_eq!(broker.stats().lost_commits, 1);
    }

    #[tokio::test]
    async fn a_held_record_reaches_its_topic_at_its_time_after_what_came_meanwhile() {
        let latency: Latency =
            Arc::new(|r: &OutboundRecord| if r.value == b"slow" { 500 } else { 0 });
        let (broker, clock) = broker(0, Some(latency));
        broker
            .publish(&[record("t", "k", "slow"), record("t", "k", "after")])
            .await
            .unwrap();
        assert_eq!(broker.next_delivery_at(), Some(Timestamp(1_500)));
        let first = broker.poll("g").unwrap().unwrap();
        assert_eq!(values(&first), [("k".to_string(), "after".to_string())]);
        broker.complete(&first, &KafkaBatchResponse::success());
        assert!(!broker.has_deliverable());
        clock.advance_to(Timestamp(1_500));
        assert!(broker.has_deliverable());
        let late = broker.poll("g").unwrap().unwrap();
        assert_eq!(values(&late), [("k".to_string(), "slow".to_string())]);
        assert_eq!(broker.next_delivery_at(), None);
    }

    #[tokio::test]
    async fn unknown_topics_and_groups_are_refused() {
        let (broker, _) = broker(0, None);
        let failure = broker
            .publish(&[record("t", "k", "ok"), record("nope", "k", "lost")])
            .await
            .unwrap_err();
        assert_eq!(failure.index, 1);
        assert!(
            failure.to_string().contains("unknown topic `nope`"),
            "{failure}"
        );
        assert!(matches!(
            broker.subscribe("g2", &["nope".into()]),
            Err(BrokerError::UnknownTopic(_))
        ));
        assert!(matches!(
            broker.poll("g2"),
            Err(BrokerError::UnknownGroup(_))
        ));
        assert_eq!(broker.records("t").len(), 1);
    }
}
