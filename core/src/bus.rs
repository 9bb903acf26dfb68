//! An in-process message bus with Kafka's delivery model, for `make run` and the core's tests.
//!
//! Topics are split into partitions by message key, so one aggregate's messages stay in order.
//! Each consumer group has its own committed offset per partition; a message is delivered again
//! until its group commits past it. A seeded share of deliveries is "processed but not
//! committed" (a consumer dying before its commit), which makes every consumer face real
//! redelivery, reproducibly.

use std::collections::{BTreeMap, HashMap};

use crate::command::CommandEnvelope;
use crate::event::StoredEvent;

/// A small, fast, seedable random number generator (SplitMix64); not for cryptography.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < u64::from(percent)
    }
}

/// What travels on the bus.
#[derive(Clone, Debug, PartialEq)]
pub enum BusMessage {
    /// A committed event.
    Event(StoredEvent),
    /// A command for one aggregate.
    Command(CommandEnvelope),
}

impl BusMessage {
    /// The partitioning key: the stream for events, the addressed aggregate for commands.
    pub fn key(&self) -> String {
        match self {
            BusMessage::Event(event) => event.stream_id().to_string(),
            BusMessage::Command(command) => {
                format!("{}#{}", command.aggregate_type(), command.target_id)
            }
        }
    }
}

/// A stable 64-bit FNV-1a hash, so a key's partition never changes between runs.
pub fn partition_for(key: &str, partitions: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % partitions.max(1) as u64) as usize
}

/// One message handed to a consumer group, to be committed after it is handled.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: usize,
    /// The message's offset in its partition.
    pub offset: u64,
    /// How many times this group has been handed this offset (1 on first delivery).
    pub delivery_count: u32,
    /// The message.
    pub message: BusMessage,
}

/// Counters of what the bus did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Messages published.
    pub published: u64,
    /// Deliveries handed out, first ones and repeats.
    pub delivered: u64,
    /// Deliveries that were a repeat of an offset already handed to the group.
    pub redelivered: u64,
}

#[derive(Default)]
struct Group {
    topics: Vec<String>,
    committed: HashMap<(String, usize), u64>,
    handed: HashMap<(String, usize, u64), u32>,
}

/// The bus: topics of partitioned logs, and consumer groups with committed offsets.
pub struct InMemoryBus {
    partitions: usize,
    logs: BTreeMap<String, Vec<Vec<BusMessage>>>,
    groups: BTreeMap<String, Group>,
    rng: SplitMix64,
    lost_commit_percent: u32,
    stats: BusStats,
}

impl InMemoryBus {
    /// A bus with `partitions` partitions per topic; `lost_commit_percent` of commits are
    /// dropped (the message comes again), chosen by a generator seeded with `seed`.
    pub fn new(partitions: usize, lost_commit_percent: u32, seed: u64) -> Self {
        Self {
            partitions: partitions.max(1),
            logs: BTreeMap::new(),
            groups: BTreeMap::new(),
            rng: SplitMix64::new(seed),
            lost_commit_percent: lost_commit_percent.min(90),
            stats: BusStats::default(),
        }
    }

    /// Subscribes consumer group `group` to `topics`, from the beginning of each.
    pub fn subscribe(&mut self, group: &str, topics: &[&str]) {
        let entry = self.groups.entry(group.to_string()).or_default();
        for topic in topics {
            if !entry.topics.iter().any(|t| t == topic) {
                entry.topics.push(topic.to_string());
            }
        }
    }

    /// Appends `message` to `topic`, in the partition of its key.
    pub fn publish(&mut self, topic: &str, message: BusMessage) {
        let partition = partition_for(&message.key(), self.partitions);
        let partitions = self.partitions;
        self.logs
            .entry(topic.to_string())
            .or_insert_with(|| vec![Vec::new(); partitions])[partition]
            .push(message);
        self.stats.published += 1;
    }

    fn pending(&self, group: &Group) -> Vec<(String, usize, u64)> {
        let mut pending = Vec::new();
        for topic in &group.topics {
            if let Some(partitions) = self.logs.get(topic) {
                for (partition, log) in partitions.iter().enumerate() {
                    let next = group
                        .committed
                        .get(&(topic.clone(), partition))
                        .copied()
                        .unwrap_or(0);
                    if next < log.len() as u64 {
                        pending.push((topic.clone(), partition, next));
                    }
                }
            }
        }
        pending
    }

    /// Whether `group` has uncommitted messages.
    pub fn has_pending(&self, group: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| !self.pending(g).is_empty())
    }

    /// The next message for `group`: the first uncommitted offset of a randomly chosen
    /// partition, so partitions interleave while each stays in order.
    pub fn poll(&mut self, group: &str) -> Option<Delivery> {
        let candidates = self.pending(self.groups.get(group)?);
        if candidates.is_empty() {
            return None;
        }
        let pick = self.rng.below(candidates.len() as u64) as usize;
        let (topic, partition, offset) = candidates[pick].clone();
        let message = self
            .logs
            .get(&topic)?
            .get(partition)?
            .get(offset as usize)?
            .clone();
        let g = self.groups.get_mut(group)?;
        let count = g
            .handed
            .entry((topic.clone(), partition, offset))
            .or_default();
        *count += 1;
        let delivery_count = *count;
        self.stats.delivered += 1;
        if delivery_count > 1 {
            self.stats.redelivered += 1;
        }
        Some(Delivery {
            topic,
            partition,
            offset,
            delivery_count,
            message,
        })
    }

    /// Commits `delivery` for `group`, unless the seeded fault drops the commit; returns
    /// whether the commit happened.
    pub fn commit(&mut self, group: &str, delivery: &Delivery) -> bool {
        if self.rng.chance(self.lost_commit_percent) {
            return false;
        }
        if let Some(g) = self.groups.get_mut(group) {
            let key = (delivery.topic.clone(), delivery.partition);
            let next = g.committed.entry(key).or_default();
            *next = (*next).max(delivery.offset + 1);
            g.handed
                .remove(&(delivery.topic.clone(), delivery.partition, delivery.offset));
        }
        true
    }

    /// What the bus has done so far.
    pub fn stats(&self) -> BusStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{event_id_for, EventEnvelope, StreamId, Timestamp};

    fn event(aggregate: &str, sequence: u64) -> BusMessage {
        let stream = StreamId::new("order", aggregate);
        BusMessage::Event(EventEnvelope {
            event_id: event_id_for(&stream, sequence),
            aggregate_type: "order".into(),
            aggregate_id: aggregate.into(),
            sequence,
            event_type: "order.created".into(),
            schema_version: 1,
            occurred_at: Timestamp(0),
            correlation_id: aggregate.into(),
            causation_id: "x".into(),
            payload: serde_json::Value::Null,
        })
    }

    fn drain(bus: &mut InMemoryBus, group: &str) -> Vec<(String, u64)> {
        let mut seen = Vec::new();
        while let Some(d) = bus.poll(group) {
            if let BusMessage::Event(e) = &d.message {
                seen.push((e.aggregate_id.clone(), e.sequence));
            }
            bus.commit(group, &d);
        }
        seen
    }

    #[test]
    fn every_group_gets_every_message_and_keys_stay_in_order() {
        let mut bus = InMemoryBus::new(4, 0, 7);
        bus.subscribe("a", &["events"]);
        bus.subscribe("b", &["events"]);
        for seq in 1..=20 {
            for agg in ["o1", "o2", "o3"] {
                bus.publish("events", event(agg, seq));
            }
        }
        for group in ["a", "b"] {
            let seen = drain(&mut bus, group);
            assert_eq!(seen.len(), 60);
            for agg in ["o1", "o2", "o3"] {
                let seqs: Vec<u64> = seen
                    .iter()
                    .filter(|(a, _)| a == agg)
                    .map(|(_, s)| *s)
                    .collect();
                assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn uncommitted_messages_come_again_and_lost_commits_cause_redelivery() {
        let mut bus = InMemoryBus::new(1, 0, 1);
        bus.subscribe("g", &["events"]);
        bus.publish("events", event("o1", 1));
        let first = bus.poll("g").unwrap();
        let again = bus.poll("g").unwrap();
        assert_eq!(first.offset, again.offset);
        assert_eq!(again.delivery_count, 2);
        assert!(bus.commit("g", &again));
        assert!(bus.poll("g").is_none());

        let mut lossy = InMemoryBus::new(2, 50, 42);
        lossy.subscribe("g", &["events"]);
        for seq in 1..=50 {
            lossy.publish("events", event("o1", seq));
        }
        let seen = drain(&mut lossy, "g");
        assert!(seen.len() > 50, "expected redeliveries, saw {}", seen.len());
        let mut distinct: Vec<u64> = seen.iter().map(|(_, s)| *s).collect();
        distinct.dedup();
        assert_eq!(
            distinct,
            (1..=50).collect::<Vec<_>>(),
            "order per key holds across redelivery"
        );
        assert_eq!(lossy.stats().redelivered as usize, seen.len() - 50);
    }

    #[test]
    fn the_same_seed_gives_the_same_interleaving() {
        let run = |seed| {
            let mut bus = InMemoryBus::new(3, 20, seed);
            bus.subscribe("g", &["events"]);
            for seq in 1..=10 {
                for agg in ["o1", "o2", "o3", "o4"] {
                    bus.publish("events", event(agg, seq));
                }
            }
            drain(&mut bus, "g")
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }
}
