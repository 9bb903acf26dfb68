//! The repository: load an aggregate (from its latest snapshot), decide, append with optimistic
//! concurrency and an idempotency key, and snapshot every N events.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

use crate::aggregate::Aggregate;
use crate::event::{envelope_events, CommandMeta, DecodeError, StoredEvent, StreamId};
use crate::store::{AppendOutcome, AppendRequest, EventStore, Snapshot, StoreError, Wake};
use crate::transience::{Classified, Transience};

mod joint;
pub use joint::JointDecision;

/// An aggregate's state with the stream version it reflects.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded<A> {
    /// The state after every event up to `version`.
    pub state: A,
    /// The stream version (number of events) the state reflects.
    pub version: u64,
    /// How many events were replayed on top of the snapshot (or from the start).
    pub replayed: u64,
}

/// What handling one command did.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandOutcome<A> {
    /// The events appended (empty for a duplicate or a command that changed nothing).
    pub events: Vec<StoredEvent>,
    /// The state after the command.
    pub state: A,
    /// The stream version after the command.
    pub version: u64,
    /// True when the idempotency key showed this effect had already happened.
    pub duplicate: bool,
    /// How many attempts it took (more than one after concurrency conflicts).
    pub attempts: u32,
}

/// Why a command could not be handled.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RepositoryError<E> {
    /// The aggregate refused the command.
    #[error("command refused: {0}")]
    Domain(E),
    /// Concurrent writers kept winning until the retry policy gave up.
    #[error("gave up after {attempts} attempts: {source}")]
    Contended {
        /// Attempts made.
        attempts: u32,
        /// The last conflict.
        source: StoreError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// A stored event could not be decoded.
    #[error("cannot read {stream}: {source}")]
    Decode {
        /// The stream being loaded.
        stream: StreamId,
        /// The decoding error.
        source: DecodeError,
    },
}

impl<E> Classified for RepositoryError<E> {
    /// A later retry of the same command may succeed after contention or a transient fault.
    fn transience(&self) -> Transience {
        match self {
            RepositoryError::Contended { .. } => Transience::Transient,
            RepositoryError::Store(e) => e.transience(),
            RepositoryError::Domain(_) | RepositoryError::Decode { .. } => Transience::Permanent,
        }
    }
}

/// How many times to reload and decide again after a concurrency conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConflictRetry {
    /// Total attempts, at least 1.
    pub max_attempts: u32,
}

impl Default for ConflictRetry {
    fn default() -> Self {
        Self { max_attempts: 5 }
    }
}

/// Loads and saves aggregates of type `A` in an event store `S`.
pub struct Repository<A, S> {
    store: Arc<S>,
    snapshot_every: Option<u64>,
    conflict_retry: ConflictRetry,
    cache: Option<Arc<StateCache<A>>>,
    aggregate: PhantomData<fn() -> A>,
}

/// The states this process last saw of recently used aggregates, so a command to one of them
/// can be decided without reading the store. Never trusted blindly: the append still expects
/// the cached version, so a stale entry ends in a conflict, and a refusal decided on a cached
/// state is decided again on a fresh load before it is reported.
struct StateCache<A> {
    entries: Mutex<HashMap<String, (A, u64)>>,
    capacity: usize,
}

impl<A: Clone> StateCache<A> {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (A, u64)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, id: &str) -> Option<(A, u64)> {
        self.entries().get(id).cloned()
    }

    fn put(&self, id: &str, state: &A, version: u64) {
        let mut entries = self.entries();
        // Starting over when full keeps the bound without bookkeeping per read; a miss costs
        // only the read the cache would have saved.
        if entries.len() >= self.capacity && !entries.contains_key(id) {
            entries.clear();
        }
        entries.insert(id.to_string(), (state.clone(), version));
    }

    fn forget(&self, id: &str) {
        self.entries().remove(id);
    }
}

impl<A, S> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            snapshot_every: self.snapshot_every,
            conflict_retry: self.conflict_retry,
            cache: self.cache.clone(),
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository over `store`, with no snapshots and the default retry policy; old events
    /// are read through the event type's own upcasters.
    pub fn new(store: Arc<S>) -> Self {
        Self {
            store,
            snapshot_every: None,
            conflict_retry: ConflictRetry::default(),
            cache: None,
            aggregate: PhantomData,
        }
    }

    /// Remembers the states of up to `capacity` aggregates between commands, so a command to
    /// one this process wrote or read last costs one write and no read. Clones share it.
    pub fn with_state_cache(mut self, capacity: usize) -> Self {
        self.cache = (capacity > 0).then(|| {
            Arc::new(StateCache {
                entries: Mutex::new(HashMap::new()),
                capacity,
            })
        });
        self
    }

    /// Stores a snapshot whenever a command takes the stream past a multiple of `every` events.
    pub fn with_snapshots_every(mut self, every: u64) -> Self {
        self.snapshot_every = (every > 0).then_some(every);
        self
    }

    /// Retries concurrency conflicts with this policy.
    pub fn with_conflict_retry(mut self, policy: ConflictRetry) -> Self {
        self.conflict_retry = policy;
        self
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The stream id of aggregate `id`.
    pub fn stream_id(id: &str) -> StreamId {
        StreamId::new(A::TYPE, id)
    }

    /// Loads the current state of aggregate `id`, starting from its latest usable snapshot.
    ///
    /// One read of the store: the snapshot and the events after it come together, or, without
    /// snapshots, the events alone. Only a snapshot of an older state shape costs a second read.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        let stream = Self::stream_id(id);
        // A snapshot is saved with the append that crosses each multiple of `every`, so the
        // tail after the latest is shorter than `every` but for a long last append.
        let Some(every) = self.snapshot_every else {
            return self.replay_stored(&stream).await;
        };
        let (snapshot, events) = self
            .store
            .load_latest(&stream, every)
            .await
            .map_err(RepositoryError::Store)?;
        // A snapshot of an older state shape is ignored rather than trusted: replaying is
        // always correct, a misread snapshot is not.
        let had_snapshot = snapshot.is_some();
        let restored = snapshot
            .filter(|s| s.state_version == A::SNAPSHOT_VERSION)
            .and_then(|s| {
                serde_json::from_value::<A>(s.state)
                    .ok()
                    .map(|a| (a, s.version))
            });
        match restored {
            Some((state, version)) => self.replay(&stream, state, version, &events),
            None if had_snapshot => self.replay_stored(&stream).await,
            None => self.replay(&stream, A::default(), 0, &events),
        }
    }

    /// The state replayed from the whole stream, each event decoded where the store keeps it
    /// (no copy out of an in-memory store).
    async fn replay_stored(
        &self,
        stream: &StreamId,
    ) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        let mut replay = Replay::new(stream, A::default(), 0);
        self.store
            .visit(stream, 0, |stored| replay.apply(stored))
            .await
            .map_err(RepositoryError::Store)??;
        Ok(replay.finish())
    }

    /// The state of aggregate `id` as this process last saw or wrote it, read from the store
    /// only when it has not seen it. For readers that use only what never changes once written
    /// (an order's lines, address and flow); without a state cache, the same as `load`.
    pub async fn load_recent(&self, id: &str) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        if let Some((state, version)) = self.cache.as_ref().and_then(|c| c.get(id)) {
            return Ok(Loaded {
                state,
                version,
                replayed: 0,
            });
        }
        let loaded = self.load(id).await?;
        // An aggregate that does not exist yet is not remembered: it may exist a moment later.
        if loaded.version > 0 {
            self.remember(id, &loaded.state, loaded.version);
        }
        Ok(loaded)
    }

    fn replay(
        &self,
        stream: &StreamId,
        state: A,
        version: u64,
        events: &[StoredEvent],
    ) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        let mut replay = Replay::new(stream, state, version);
        events.iter().try_for_each(|stored| replay.apply(stored))?;
        Ok(replay.finish())
    }

    /// Handles `command` on aggregate `id`: load, decide, append; retries conflicts by policy.
    ///
    /// With an idempotency key in `meta`, a command whose effect was already recorded appends
    /// nothing and reports `duplicate`, even if deciding it again would now be refused.
    pub async fn execute(
        &self,
        id: &str,
        command: &A::Command,
        meta: &CommandMeta,
    ) -> Result<CommandOutcome<A>, RepositoryError<A::Error>> {
        let mut outcomes = self.execute_all(id, &[(command, meta)]).await;
        outcomes
            .pop()
            .unwrap_or(Err(RepositoryError::Store(StoreError::Unavailable {
                reason: "no outcome for the command".into(),
                transience: Transience::Transient,
            })))
    }

    /// Handles several commands on aggregate `id` in order, as [`Repository::execute`] would one
    /// after another, but with one load and one append for all of them: the events of every
    /// accepted command and all their idempotency keys go into one atomic write.
    ///
    /// Returns one outcome per command, in order. If any key shows an effect already recorded
    /// (a redelivered batch), the commands are executed one by one instead, so each duplicate
    /// is reported on its own.
    pub async fn execute_all(
        &self,
        id: &str,
        commands: &[(&A::Command, &CommandMeta)],
    ) -> Vec<Result<CommandOutcome<A>, RepositoryError<A::Error>>> {
        let stream = Self::stream_id(id);
        let max_attempts = self.conflict_retry.max_attempts.max(1);
        let mut attempts = 0;
        let mut cached = self.cache.as_ref().and_then(|c| c.get(id));
        loop {
            attempts += 1;
            let from_cache = cached.is_some();
            let loaded = match cached.take() {
                Some((state, version)) => Loaded {
                    state,
                    version,
                    replayed: 0,
                },
                None => match self.load(id).await {
                    Ok(loaded) => {
                        self.remember(id, &loaded.state, loaded.version);
                        loaded
                    }
                    Err(e) => return commands.iter().map(|_| Err(e.clone())).collect(),
                },
            };
            let decided = Decided::run(&stream, loaded, commands);
            if from_cache && decided.refused > 0 {
                // A refusal may come from a state that moved on elsewhere: decide again on
                // what the store holds, without counting it as an attempt.
                attempts -= 1;
                continue;
            }
            if decided.accepted == 0 {
                return self.settle_refusals(decided, attempts).await;
            }
            let request = AppendRequest {
                stream: stream.clone(),
                expected_version: decided.before.1,
                expected_from_store: true,
                events: decided.events.clone(),
                idempotency_keys: decided.keys.clone(),
                wake: Wake::between(decided.before.0, decided.state.wake_at()),
                snapshot: self.snapshot(&stream, decided.before.1, &decided),
            };
            let outcome = self.store.append(request).await;
            match &outcome {
                Ok(AppendOutcome::Appended { .. }) => {
                    self.remember(id, &decided.state, decided.version)
                }
                _ => self.forget(id),
            }
            match outcome {
                Ok(AppendOutcome::Appended { .. }) => {
                    return self.settle_refusals(decided, attempts).await;
                }
                Ok(AppendOutcome::Duplicate) if commands.len() > 1 => {
                    let mut outcomes = Vec::with_capacity(commands.len());
                    for &(command, meta) in commands {
                        outcomes.push(Box::pin(self.execute(id, command, meta)).await);
                    }
                    return outcomes;
                }
                Ok(AppendOutcome::Duplicate) => {
                    // The effect was recorded before; the stream as it is now includes it.
                    let outcome = self.load(id).await.map(|current| CommandOutcome {
                        events: Vec::new(),
                        state: current.state,
                        version: current.version,
                        duplicate: true,
                        attempts,
                    });
                    return vec![outcome];
                }
                Err(conflict @ StoreError::Conflict { .. }) => {
                    if attempts >= max_attempts {
                        return commands
                            .iter()
                            .map(|_| {
                                Err(RepositoryError::Contended {
                                    attempts,
                                    source: conflict.clone(),
                                })
                            })
                            .collect();
                    }
                }
                Err(other) => {
                    return commands
                        .iter()
                        .map(|_| Err(RepositoryError::Store(other.clone())))
                        .collect()
                }
            }
        }
    }

    fn remember(&self, id: &str, state: &A, version: u64) {
        if let Some(cache) = &self.cache {
            cache.put(id, state, version);
        }
    }

    fn forget(&self, id: &str) {
        if let Some(cache) = &self.cache {
            cache.forget(id);
        }
    }

    /// The outcomes once the accepted commands are committed (or there were none): a refused
    /// command whose key was recorded before is a redelivered duplicate, not a refusal.
    async fn settle_refusals(
        &self,
        decided: Decided<A>,
        attempts: u32,
    ) -> Vec<Result<CommandOutcome<A>, RepositoryError<A::Error>>> {
        let mut outcomes = Vec::with_capacity(decided.outcomes.len());
        let mut last_state = Some(decided.state);
        for outcome in decided.outcomes {
            let mut state_of =
                |own: Option<A>| own.or_else(|| last_state.take()).unwrap_or_default();
            outcomes.push(match outcome {
                Step::Accepted {
                    events,
                    state,
                    version,
                } => Ok(CommandOutcome {
                    events,
                    state: state_of(state),
                    version,
                    duplicate: false,
                    attempts,
                }),
                Step::Repeated { state, version } => Ok(CommandOutcome {
                    events: Vec::new(),
                    state: state_of(state),
                    version,
                    duplicate: true,
                    attempts,
                }),
                Step::Refused {
                    refusal,
                    key,
                    state,
                    version,
                } => {
                    let duplicate = match key {
                        Some(key) => match self.store.is_processed(&key).await {
                            Ok(recorded) => recorded,
                            Err(e) => {
                                outcomes.push(Err(RepositoryError::Store(e)));
                                continue;
                            }
                        },
                        None => false,
                    };
                    if duplicate {
                        Ok(CommandOutcome {
                            events: Vec::new(),
                            state: state_of(state),
                            version,
                            duplicate: true,
                            attempts,
                        })
                    } else {
                        Err(RepositoryError::Domain(refusal))
                    }
                }
            });
        }
        outcomes
    }

    /// The snapshot to save with an append that takes the stream from `before` past a multiple
    /// of the snapshot interval, if the state is small enough for any store's item.
    fn snapshot(&self, stream: &StreamId, before: u64, decided: &Decided<A>) -> Option<Snapshot> {
        self.snapshot_of(
            stream,
            before,
            decided.version,
            &decided.state,
            decided.taken_at,
        )
    }

    /// The snapshot of `state` at version `after` to save with an append from `before`, if
    /// the append crosses a multiple of the interval.
    fn snapshot_of(
        &self,
        stream: &StreamId,
        before: u64,
        after: u64,
        state: &A,
        taken_at: crate::event::Timestamp,
    ) -> Option<Snapshot> {
        let every = self.snapshot_every?;
        if before / every == after / every {
            return None;
        }
        let state = serde_json::to_value(state).ok()?;
        // A snapshot is only a shortcut: one too big to store is skipped, never allowed to
        // make the append itself fail.
        if state.to_string().len() > MAX_SNAPSHOT_BYTES {
            return None;
        }
        Some(Snapshot {
            stream: stream.clone(),
            version: after,
            state_version: A::SNAPSHOT_VERSION,
            state,
            taken_at,
        })
    }
}

/// The largest serialized state saved as a snapshot; DynamoDB's items hold 400 KB in all.
pub const MAX_SNAPSHOT_BYTES: usize = 256 * 1024;

/// What deciding one command of a batch came to, before anything is written; `state` is
/// `None` for the last command, whose state is the batch's final one.
enum Step<A: Aggregate> {
    /// The command's events (possibly none), the state and version after them.
    Accepted {
        events: Vec<StoredEvent>,
        state: Option<A>,
        version: u64,
    },
    /// The command's key was already among this batch's: a repeat of an earlier command.
    Repeated { state: Option<A>, version: u64 },
    /// The aggregate refused the command; its key says whether it may be a duplicate.
    Refused {
        refusal: A::Error,
        key: Option<String>,
        state: Option<A>,
        version: u64,
    },
}

/// A batch of commands decided in order on one loaded state.
struct Decided<A: Aggregate> {
    /// The wake-up time and version the batch was decided on.
    before: (Option<crate::event::Timestamp>, u64),
    /// Every accepted command's events, numbered on from `before`.
    events: Vec<StoredEvent>,
    /// The idempotency keys of the accepted commands.
    keys: Vec<String>,
    /// How many commands were accepted.
    accepted: usize,
    /// How many the aggregate refused.
    refused: usize,
    /// The state and version after the whole batch.
    state: A,
    version: u64,
    /// When the last command was issued, for the snapshot.
    taken_at: crate::event::Timestamp,
    /// Per command, in order.
    outcomes: Vec<Step<A>>,
}

impl<A: Aggregate> Decided<A> {
    fn run(stream: &StreamId, loaded: Loaded<A>, commands: &[(&A::Command, &CommandMeta)]) -> Self {
        let before = (loaded.state.wake_at(), loaded.version);
        let mut state = loaded.state;
        let mut version = loaded.version;
        let mut events = Vec::new();
        let mut keys = Vec::new();
        let mut outcomes = Vec::with_capacity(commands.len());
        let mut accepted = 0;
        let mut refused = 0;
        let mut taken_at = crate::event::Timestamp(0);
        for (i, &(command, meta)) in commands.iter().enumerate() {
            taken_at = meta.now;
            // A batch may carry the same command twice (a redelivered record beside its
            // original): its effect is the one already decided in this batch.
            if meta
                .idempotency_key
                .as_ref()
                .is_some_and(|key| keys.contains(key))
            {
                outcomes.push(Step::Repeated {
                    state: (i + 1 < commands.len()).then(|| state.clone()),
                    version,
                });
                continue;
            }
            let decision = state.decide(command);
            if let Ok(decided) = &decision {
                for event in decided {
                    state.apply(event);
                }
            }
            // The last command's state is the batch's final one, handed over without a copy.
            let own_state = (i + 1 < commands.len()).then(|| state.clone());
            outcomes.push(match decision {
                Ok(decided) => {
                    let stored = envelope_events(stream, version, &decided, meta);
                    version += stored.len() as u64;
                    events.extend(stored.iter().cloned());
                    keys.extend(meta.idempotency_key.iter().cloned());
                    accepted += 1;
                    Step::Accepted {
                        events: stored,
                        state: own_state,
                        version,
                    }
                }
                Err(refusal) => {
                    refused += 1;
                    Step::Refused {
                        refusal,
                        key: meta.idempotency_key.clone(),
                        state: own_state,
                        version,
                    }
                }
            });
        }
        Self {
            before,
            events,
            keys,
            accepted,
            refused,
            state,
            version,
            taken_at,
            outcomes,
        }
    }
}

/// An aggregate's state being rebuilt from its stream, one stored event at a time.
struct Replay<'a, A> {
    stream: &'a StreamId,
    state: A,
    version: u64,
    replayed: u64,
}

impl<'a, A: Aggregate> Replay<'a, A> {
    fn new(stream: &'a StreamId, state: A, version: u64) -> Self {
        Self {
            stream,
            state,
            version,
            replayed: 0,
        }
    }

    /// Applies the next stored event: it must follow the last one, and decode.
    fn apply(&mut self, stored: &StoredEvent) -> Result<(), RepositoryError<A::Error>> {
        if stored.sequence != self.version + 1 {
            return Err(RepositoryError::Store(StoreError::Corrupt {
                stream: self.stream.clone(),
                reason: format!(
                    "sequence {} follows {}: the stream has a gap",
                    stored.sequence, self.version
                ),
            }));
        }
        let event =
            stored
                .decode_payload::<A::Event>()
                .map_err(|source| RepositoryError::Decode {
                    stream: self.stream.clone(),
                    source,
                })?;
        self.state.apply(&event);
        self.version = stored.sequence;
        self.replayed += 1;
        Ok(())
    }

    fn finish(self) -> Loaded<A> {
        Loaded {
            state: self.state,
            version: self.version,
            replayed: self.replayed,
        }
    }
}
