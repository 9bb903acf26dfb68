//! The repository: load an aggregate (from its latest snapshot), decide, append with optimistic
//! concurrency and an idempotency key, and snapshot every N events.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::aggregate::Aggregate;
use crate::event::{envelope_events, CommandMeta, DecodeError, StoredEvent, StreamId};
use crate::store::{AppendOutcome, AppendRequest, EventStore, Snapshot, StoreError, Wake};
use crate::upcast::Upcasters;

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

impl<E> RepositoryError<E> {
    /// Whether a later retry of the same command may succeed (contention, transient faults).
    pub fn is_transient(&self) -> bool {
        match self {
            RepositoryError::Contended { .. } => true,
            RepositoryError::Store(e) => e.is_retryable(),
            RepositoryError::Domain(_) | RepositoryError::Decode { .. } => false,
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
    upcasters: Arc<Upcasters>,
    snapshot_every: Option<u64>,
    conflict_retry: ConflictRetry,
    aggregate: PhantomData<fn() -> A>,
}

impl<A, S> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            upcasters: self.upcasters.clone(),
            snapshot_every: self.snapshot_every,
            conflict_retry: self.conflict_retry,
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository over `store`, with no upcasters, no snapshots and the default retry policy.
    pub fn new(store: Arc<S>) -> Self {
        Self {
            store,
            upcasters: Arc::new(Upcasters::default()),
            snapshot_every: None,
            conflict_retry: ConflictRetry::default(),
            aggregate: PhantomData,
        }
    }

    /// Reads old schema versions through these upcasters.
    pub fn with_upcasters(mut self, upcasters: Arc<Upcasters>) -> Self {
        self.upcasters = upcasters;
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
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        let stream = Self::stream_id(id);
        let (mut state, version) = match self
            .store
            .load_snapshot(&stream)
            .await
            .map_err(RepositoryError::Store)?
        {
            // A snapshot of an older state shape is ignored rather than trusted: replaying is
            // always correct, a misread snapshot is not.
            Some(snapshot) if snapshot.state_version == A::SNAPSHOT_VERSION => {
                match serde_json::from_value::<A>(snapshot.state) {
                    Ok(state) => (state, snapshot.version),
                    Err(_) => (A::default(), 0),
                }
            }
            _ => (A::default(), 0),
        };
        let events = self
            .store
            .load(&stream, version)
            .await
            .map_err(RepositoryError::Store)?;
        let replayed = events.len() as u64;
        let mut current = version;
        for stored in &events {
            if stored.sequence != current + 1 {
                return Err(RepositoryError::Store(StoreError::Corrupt {
                    stream,
                    reason: format!(
                        "sequence {} follows {current}: the stream has a gap",
                        stored.sequence
                    ),
                }));
            }
            let event = stored
                .decode::<A::Event>(&self.upcasters)
                .map_err(|source| RepositoryError::Decode {
                    stream: stream.clone(),
                    source,
                })?;
            state.apply(&event.payload);
            current = stored.sequence;
        }
        Ok(Loaded {
            state,
            version: current,
            replayed,
        })
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
        let stream = Self::stream_id(id);
        let max_attempts = self.conflict_retry.max_attempts.max(1);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let loaded = self.load(id).await?;
            let decided = match loaded.state.decide(command) {
                Ok(events) => events,
                Err(refusal) => {
                    // Redelivery of a command that already took effect may now be refused by
                    // the changed state; it must be acknowledged as a duplicate, not failed.
                    if let Some(key) = &meta.idempotency_key {
                        if self
                            .store
                            .is_processed(key)
                            .await
                            .map_err(RepositoryError::Store)?
                        {
                            return Ok(CommandOutcome {
                                events: Vec::new(),
                                state: loaded.state,
                                version: loaded.version,
                                duplicate: true,
                                attempts,
                            });
                        }
                    }
                    return Err(RepositoryError::Domain(refusal));
                }
            };
            let stored = envelope_events(&stream, loaded.version, &decided, meta);
            let woken_before = loaded.state.wake_at();
            let mut state = loaded.state;
            for event in &decided {
                state.apply(event);
            }
            let request = AppendRequest {
                stream: stream.clone(),
                expected_version: loaded.version,
                events: stored.clone(),
                idempotency_key: meta.idempotency_key.clone(),
                wake: Wake::between(woken_before, state.wake_at()),
            };
            match self.store.append(request).await {
                Ok(AppendOutcome::Appended { version }) => {
                    self.maybe_snapshot(&stream, loaded.version, version, &state, meta)
                        .await;
                    return Ok(CommandOutcome {
                        events: stored,
                        state,
                        version,
                        duplicate: false,
                        attempts,
                    });
                }
                Ok(AppendOutcome::Duplicate) => {
                    // The effect was recorded before; the stream as it is now includes it.
                    let current = self.load(id).await?;
                    return Ok(CommandOutcome {
                        events: Vec::new(),
                        state: current.state,
                        version: current.version,
                        duplicate: true,
                        attempts,
                    });
                }
                Err(conflict @ StoreError::Conflict { .. }) => {
                    if attempts >= max_attempts {
                        return Err(RepositoryError::Contended {
                            attempts,
                            source: conflict,
                        });
                    }
                }
                Err(other) => return Err(RepositoryError::Store(other)),
            }
        }
    }

    async fn maybe_snapshot(
        &self,
        stream: &StreamId,
        before: u64,
        after: u64,
        state: &A,
        meta: &CommandMeta,
    ) {
        let Some(every) = self.snapshot_every else {
            return;
        };
        if before / every == after / every {
            return;
        }
        let Ok(value) = serde_json::to_value(state) else {
            return;
        };
        // A snapshot is only a shortcut: failing to save one loses nothing, the events are
        // committed, so the error is deliberately not surfaced as a command failure.
        let _ = self
            .store
            .save_snapshot(Snapshot {
                stream: stream.clone(),
                version: after,
                state_version: A::SNAPSHOT_VERSION,
                state: value,
                taken_at: meta.now,
            })
            .await;
    }
}
