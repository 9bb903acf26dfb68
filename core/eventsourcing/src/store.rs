//! The event store contract, and the in-memory store that `make run` and the core tests use.
//!
//! Adapters (DynamoDB) implement the same [`EventStore`] trait and pass the same scenarios.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{StoredEvent, StreamId, Timestamp};
use crate::transience::{Classified, Transience};

/// A request to append events to one stream, atomically with recording an idempotency key.
#[derive(Clone, Debug, PartialEq)]
pub struct AppendRequest {
    /// The stream to append to.
    pub stream: StreamId,
    /// The stream version the events were decided on (0 for a new stream).
    pub expected_version: u64,
    /// Whether `expected_version` is one this store reported: read from it, or the version
    /// an append it acknowledged left. Streams only grow, so such a version is never ahead
    /// of the stream, and a store may leave out the check that it exists (on DynamoDB a
    /// transaction item, about a sixth of an order's write units). A caller that takes the
    /// version from anywhere else leaves it `false` and gets the check.
    pub expected_from_store: bool,
    /// The events, numbered `expected_version + 1` onwards.
    pub events: Vec<StoredEvent>,
    /// Recorded with the events in one atomic write; if any was already recorded, nothing is
    /// appended. Several keys when one append carries the effects of several commands.
    pub idempotency_keys: Vec<String>,
    /// What happens to the stream's wake-up time, in the same atomic write.
    pub wake: Wake,
    /// The state after these events, saved in the same atomic write so taking a snapshot
    /// costs no request of its own.
    pub snapshot: Option<Snapshot>,
}

/// A change to the time a stream wants to be woken at (see [`crate::Aggregate::wake_at`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wake {
    /// Leave it as it is.
    #[default]
    Unchanged,
    /// Wake the stream at this time.
    At(Timestamp),
    /// The stream no longer wants to be woken.
    Never,
}

impl Wake {
    /// The change from a state that wanted waking at `before` to one that wants `after`.
    pub fn between(before: Option<Timestamp>, after: Option<Timestamp>) -> Self {
        match (before, after) {
            (b, a) if b == a => Wake::Unchanged,
            (_, Some(at)) => Wake::At(at),
            (_, None) => Wake::Never,
        }
    }
}

/// A stream whose wake-up time has come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueStream {
    /// The stream.
    pub stream: StreamId,
    /// When it asked to be woken.
    pub wake_at: Timestamp,
}

impl DueStream {
    /// Keeps the `limit` earliest of `due` (ties by aggregate id), earliest first.
    pub fn earliest(mut due: Vec<DueStream>, limit: usize) -> Vec<DueStream> {
        due.sort_by(|a, b| {
            (a.wake_at, &a.stream.aggregate_id).cmp(&(b.wake_at, &b.stream.aggregate_id))
        });
        due.truncate(limit);
        due
    }
}

/// What an append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The events were appended; the stream is now at `version`.
    Appended {
        /// The stream version after the append.
        version: u64,
    },
    /// The idempotency key was already recorded: this effect happened before, nothing was appended.
    Duplicate,
}

/// A saved copy of an aggregate's state at a stream version, so loading need not replay from 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The stream the state belongs to.
    pub stream: StreamId,
    /// The stream version the state includes.
    pub version: u64,
    /// The aggregate's state schema version ([`crate::Aggregate::SNAPSHOT_VERSION`]).
    pub state_version: u32,
    /// The serialized state.
    pub state: Value,
    /// When the snapshot was taken.
    pub taken_at: Timestamp,
}

/// Why the store refused or failed a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Someone appended to the stream since it was loaded: reload, decide again, retry.
    #[error(
        "concurrency conflict on {stream}: expected version {expected}, stream is at {actual}"
    )]
    Conflict {
        /// The contended stream.
        stream: StreamId,
        /// The version the writer expected.
        expected: u64,
        /// The version found (may be unknown to some stores, then equal to `expected + 1`).
        actual: u64,
    },
    /// The request itself is malformed (sequence gaps, wrong stream, too large).
    #[error("invalid append to {stream}: {reason}")]
    InvalidAppend {
        /// The stream.
        stream: StreamId,
        /// What is wrong.
        reason: String,
    },
    /// The backend failed, for now or for good.
    #[error("event store unavailable ({transience}): {reason}")]
    Unavailable {
        /// The backend's complaint.
        reason: String,
        /// Whether a retry may succeed (throttling, timeouts).
        transience: Transience,
    },
    /// Stored data could not be read back.
    #[error("corrupt data in {stream}: {reason}")]
    Corrupt {
        /// The stream.
        stream: StreamId,
        /// What is wrong.
        reason: String,
    },
}

impl Classified for StoreError {
    /// Conflicts and transient backend faults may pass if tried again.
    fn transience(&self) -> Transience {
        match self {
            StoreError::Conflict { .. } => Transience::Transient,
            StoreError::Unavailable { transience, .. } => *transience,
            StoreError::InvalidAppend { .. } | StoreError::Corrupt { .. } => Transience::Permanent,
        }
    }
}

/// Checks an append request's own shape: events numbered on from the expected version, one
/// stream, a snapshot (if any) of the state after them.
pub fn validate_append(request: &AppendRequest) -> Result<(), StoreError> {
    if let Some(snapshot) = &request.snapshot {
        let after = request.expected_version + request.events.len() as u64;
        if snapshot.stream != request.stream || snapshot.version != after {
            return Err(StoreError::InvalidAppend {
                stream: request.stream.clone(),
                reason: format!(
                    "the snapshot is of {} at version {}, the append ends {} at version {after}",
                    snapshot.stream, snapshot.version, request.stream
                ),
            });
        }
    }
    for (i, event) in request.events.iter().enumerate() {
        let wanted = request.expected_version + 1 + i as u64;
        let invalid = |reason: String| StoreError::InvalidAppend {
            stream: request.stream.clone(),
            reason,
        };
        if event.sequence != wanted {
            return Err(invalid(format!(
                "event {} has sequence {}, expected {wanted}",
                event.event_id, event.sequence
            )));
        }
        if event.aggregate_type != request.stream.aggregate_type
            || event.aggregate_id != request.stream.aggregate_id
        {
            return Err(invalid(format!(
                "event {} belongs to {}",
                event.event_id,
                event.stream_id()
            )));
        }
    }
    Ok(())
}

/// Checks requests to append together: each well formed, at least one, no stream twice.
pub fn validate_together(requests: &[AppendRequest]) -> Result<(), StoreError> {
    if requests.is_empty() {
        return Err(StoreError::InvalidAppend {
            stream: StreamId::new("none", "none"),
            reason: "an append together needs at least one stream".into(),
        });
    }
    let mut seen = HashSet::with_capacity(requests.len());
    for request in requests {
        validate_append(request)?;
        if !seen.insert(&request.stream) {
            return Err(StoreError::InvalidAppend {
                stream: request.stream.clone(),
                reason: format!("{} appears twice in one append", request.stream),
            });
        }
    }
    Ok(())
}

/// Where events live: append with an expected version, load a stream from a version.
pub trait EventStore: Send + Sync {
    /// Appends the events atomically if the stream is at the expected version and the
    /// idempotency key (if any) was never recorded; records the key in the same write. One
    /// stream's append is [`EventStore::append_together`] of one request.
    fn append(
        &self,
        request: AppendRequest,
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send {
        self.append_together(vec![request])
    }

    /// Appends to several streams in one atomic write: each request's events if its stream is
    /// at its expected version and no request's idempotency key was ever recorded, or nothing
    /// at all. What one decision that changes several aggregates (an order's hold on the stock
    /// of each of its SKUs) needs. The outcome's version is the first request's stream's.
    fn append_together(
        &self,
        requests: Vec<AppendRequest>,
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send;

    /// The events of `stream` with a sequence greater than `after_version`, in order.
    fn load(
        &self,
        stream: &StreamId,
        after_version: u64,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// Hands each event of `stream` with a sequence greater than `after_version` to `visit`,
    /// in order, stopping at the first error `visit` returns: what replaying an aggregate
    /// needs. A store that holds its events in memory lends them instead of copying them out;
    /// the default loads them.
    fn visit<E, F>(
        &self,
        stream: &StreamId,
        after_version: u64,
        mut visit: F,
    ) -> impl Future<Output = Result<Result<(), E>, StoreError>> + Send
    where
        E: Send,
        F: FnMut(&StoredEvent) -> Result<(), E> + Send,
    {
        async move {
            let events = self.load(stream, after_version).await?;
            Ok(events.iter().try_for_each(&mut visit))
        }
    }

    /// Whether an effect with this idempotency key was recorded.
    fn is_processed(&self, key: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The latest snapshot of `stream` (if any) and the events after it, in order: what loading
    /// an aggregate reads. `tail_hint` is how many events are expected after the snapshot, so a
    /// store can read both in one request of about that size.
    fn load_latest(
        &self,
        stream: &StreamId,
        tail_hint: u64,
    ) -> impl Future<Output = Result<(Option<Snapshot>, Vec<StoredEvent>), StoreError>> + Send {
        let _ = tail_hint;
        async move {
            let snapshot = self.load_snapshot(stream).await?;
            let after = snapshot.as_ref().map_or(0, |s| s.version);
            Ok((snapshot, self.load(stream, after).await?))
        }
    }

    /// The latest snapshot of `stream`, if any.
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;

    /// Saves a snapshot, replacing an older one of the same stream.
    fn save_snapshot(
        &self,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Streams of `aggregate_type` whose wake-up time is at or before `now`, earliest first, at
    /// most `limit`. A store may lag a little behind appends (an index), never skip one.
    fn due(
        &self,
        aggregate_type: &str,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DueStream>, StoreError>> + Send;
}

#[derive(Default)]
struct MemoryState {
    streams: HashMap<StreamId, Vec<StoredEvent>>,
    log: Vec<StoredEvent>,
    processed: HashSet<String>,
    snapshots: HashMap<StreamId, Snapshot>,
    wake: HashMap<StreamId, Timestamp>,
}

/// An event store in process memory, with the same guarantees as the DynamoDB one.
#[derive(Default)]
pub struct InMemoryEventStore {
    state: Mutex<MemoryState>,
}

impl InMemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic while holding the lock cannot leave a half-applied append (appends are
        // built fully before they are pushed), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every event in the order it was committed: the source for replaying read models.
    pub fn all_events(&self) -> Vec<StoredEvent> {
        self.lock().log.clone()
    }

    /// The events committed after the first `position`, in commit order: the store's change
    /// feed, read as DynamoDB Streams is read for the relay.
    pub fn events_since(&self, position: usize) -> Vec<StoredEvent> {
        self.lock().log.get(position..).unwrap_or_default().to_vec()
    }

    /// The earliest wake-up time of any stream of `aggregate_type`: when a timer must next run.
    pub fn next_wake_at(&self, aggregate_type: &str) -> Option<Timestamp> {
        self.lock()
            .wake
            .iter()
            .filter(|(stream, _)| stream.aggregate_type == aggregate_type)
            .map(|(_, at)| *at)
            .min()
    }

    /// The number of events committed so far.
    pub fn event_count(&self) -> usize {
        self.lock().log.len()
    }

    /// The ids of every stream, sorted.
    pub fn stream_ids(&self) -> Vec<StreamId> {
        let mut ids: Vec<_> = self.lock().streams.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The number of recorded idempotency keys.
    pub fn processed_count(&self) -> usize {
        self.lock().processed.len()
    }
}

impl EventStore for InMemoryEventStore {
    async fn append_together(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<AppendOutcome, StoreError> {
        validate_together(&requests)?;
        let mut state = self.lock();
        if requests
            .iter()
            .flat_map(|r| &r.idempotency_keys)
            .any(|key| state.processed.contains(key))
        {
            return Ok(AppendOutcome::Duplicate);
        }
        for request in &requests {
            let actual = state
                .streams
                .get(&request.stream)
                .map_or(0, |events| events.len() as u64);
            if actual != request.expected_version {
                return Err(StoreError::Conflict {
                    stream: request.stream.clone(),
                    expected: request.expected_version,
                    actual,
                });
            }
        }
        let version = requests
            .first()
            .map_or(0, |r| r.expected_version + r.events.len() as u64);
        for request in requests {
            state.processed.extend(request.idempotency_keys);
            if let Some(snapshot) = request.snapshot {
                state.snapshots.insert(snapshot.stream.clone(), snapshot);
            }
            match request.wake {
                Wake::Unchanged => {}
                Wake::At(at) => {
                    state.wake.insert(request.stream.clone(), at);
                }
                Wake::Never => {
                    state.wake.remove(&request.stream);
                }
            }
            state.log.extend(request.events.iter().cloned());
            state
                .streams
                .entry(request.stream)
                .or_default()
                .extend(request.events);
        }
        Ok(AppendOutcome::Appended { version })
    }

    async fn load(
        &self,
        stream: &StreamId,
        after_version: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let state = self.lock();
        Ok(state
            .streams
            .get(stream)
            .map(|events| {
                events
                    .iter()
                    .skip(usize::try_from(after_version).unwrap_or(usize::MAX))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn visit<E, F>(
        &self,
        stream: &StreamId,
        after_version: u64,
        visit: F,
    ) -> Result<Result<(), E>, StoreError>
    where
        E: Send,
        F: FnMut(&StoredEvent) -> Result<(), E> + Send,
    {
        let state = self.lock();
        let Some(events) = state.streams.get(stream) else {
            return Ok(Ok(()));
        };
        let skip = usize::try_from(after_version).unwrap_or(usize::MAX);
        Ok(events.iter().skip(skip).try_for_each(visit))
    }

    async fn is_processed(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.lock().processed.contains(key))
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.lock().snapshots.get(stream).cloned())
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut state = self.lock();
        let newer = state
            .snapshots
            .get(&snapshot.stream)
            .is_none_or(|old| old.version < snapshot.version);
        if newer {
            state.snapshots.insert(snapshot.stream.clone(), snapshot);
        }
        Ok(())
    }

    async fn due(
        &self,
        aggregate_type: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueStream>, StoreError> {
        let state = self.lock();
        let due: Vec<DueStream> = state
            .wake
            .iter()
            .filter(|(stream, at)| stream.aggregate_type == aggregate_type && **at <= now)
            .map(|(stream, at)| DueStream {
                stream: stream.clone(),
                wake_at: *at,
            })
            .collect();
        Ok(DueStream::earliest(due, limit))
    }
}
