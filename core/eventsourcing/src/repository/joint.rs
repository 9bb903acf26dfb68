//! One decision over an aggregate and some aggregates of another type (its parts), appended to
//! all of their streams in one atomic write.
//!
//! What an order's reservation needs once each SKU's stock is its own stream: the reservation
//! decides with the stock of every SKU it names, all lines are held or none, and orders for
//! different SKUs never touch the same stream.

use std::collections::BTreeMap;

use super::{CommandOutcome, Loaded, Repository, RepositoryError};
use crate::aggregate::Aggregate;
use crate::event::{envelope_events, CommandMeta, StoredEvent, StreamId};
use crate::store::{AppendOutcome, AppendRequest, EventStore, StoreError, Wake};
use crate::transience::Transience;

/// What one joint decision records: the deciding aggregate's events and its parts', by part id.
pub struct JointDecision<A: Aggregate, P: Aggregate> {
    /// The deciding aggregate's events.
    pub events: Vec<A::Event>,
    /// Each changed part's events; a part that was read but is not listed is only held to the
    /// version it was read at.
    pub parts: BTreeMap<String, Vec<P::Event>>,
}

impl<A: Aggregate, P: Aggregate> JointDecision<A, P> {
    /// A decision that changes only the deciding aggregate.
    pub fn own(events: Vec<A::Event>) -> Self {
        Self {
            events,
            parts: BTreeMap::new(),
        }
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// Handles one command on aggregate `id` that is decided together with the `parts` whose
    /// ids `part_ids` names from `id`'s state, and appends what `decide` returns to every
    /// stream involved in one atomic write, recording `meta`'s idempotency key with it.
    ///
    /// Every part that was read is held to the version it was read at, even one the decision
    /// leaves unchanged (a reservation refused for a shortage): the decision stands as if
    /// nothing else wrote in between, and a conflict on any stream reloads and decides again,
    /// by the retry policy. A refusal decided on a remembered state is decided again on a fresh
    /// load; a refusal whose key was recorded before is a duplicate, as in
    /// [`Repository::execute`]. The outcome's events are the aggregate's, then each part's.
    pub async fn execute_joint<P, I, D>(
        &self,
        parts: &Repository<P, S>,
        id: &str,
        meta: &CommandMeta,
        part_ids: I,
        decide: D,
    ) -> Result<CommandOutcome<A>, RepositoryError<A::Error>>
    where
        P: Aggregate,
        I: Fn(&A) -> Vec<String>,
        D: Fn(&A, &BTreeMap<String, P>) -> Result<JointDecision<A, P>, A::Error>,
    {
        let stream = Self::stream_id(id);
        let max_attempts = self.conflict_retry.max_attempts.max(1);
        let mut attempts = 0;
        let mut fresh = false;
        loop {
            attempts += 1;
            let (own, mut from_cache) = self.state_for(id, fresh).await?;
            let mut states = BTreeMap::new();
            let mut versions = BTreeMap::new();
            for part in part_ids(&own.state) {
                if states.contains_key(&part) {
                    continue;
                }
                let (loaded, cached) = parts.state_for(&part, fresh).await.map_err(load_error)?;
                from_cache |= cached;
                versions.insert(part.clone(), loaded.version);
                states.insert(part, loaded.state);
            }
            let decision = match decide(&own.state, &states) {
                Ok(decision) => decision,
                Err(_) if from_cache => {
                    // A refusal may come from a state that moved on elsewhere: decide again on
                    // what the store holds, without counting it as an attempt.
                    fresh = true;
                    attempts -= 1;
                    continue;
                }
                Err(refusal) => return self.refused(own, refusal, meta, attempts).await,
            };
            if let Some(unread) = decision.parts.keys().find(|p| !states.contains_key(*p)) {
                return Err(RepositoryError::Store(StoreError::InvalidAppend {
                    stream: StreamId::new(P::TYPE, unread.as_str()),
                    reason: "a joint decision changed a part it did not read".into(),
                }));
            }
            let joint = self.requests(parts, (&stream, own), states, &versions, decision, meta);
            let appended: Vec<StoredEvent> = joint
                .requests
                .iter()
                .flat_map(|r| r.events.iter().cloned())
                .collect();
            let outcome = self.store.append_together(joint.requests).await;
            if let Ok(AppendOutcome::Appended { .. }) = outcome {
                self.remember(id, &joint.own.state, joint.own.version);
                for (part, after) in &joint.parts {
                    parts.remember(part, &after.state, after.version);
                }
                return Ok(CommandOutcome {
                    events: appended,
                    state: joint.own.state,
                    version: joint.own.version,
                    duplicate: false,
                    attempts,
                });
            }
            self.forget(id);
            for part in joint.parts.keys() {
                parts.forget(part);
            }
            match outcome {
                Ok(_) => {
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

    /// Handles several commands, each on its own aggregate and decided with the parts it
    /// names, in turn on the parts as the earlier ones left them, and appends them all in one
    /// atomic write: what one SKU's reservations in one batch need, where one at a time each
    /// would wait for the one before it to commit.
    ///
    /// The write goes through only if every command is accepted on the states this process
    /// holds; otherwise (a refusal, a conflict, a recorded key, ids that repeat, a write too
    /// large) nothing is written and each command runs through [`Repository::execute_joint`]
    /// in turn, with its refusals, duplicates and retries. One outcome per command, in order.
    pub async fn execute_joint_all<P, C, I, D>(
        &self,
        parts: &Repository<P, S>,
        commands: &[(&str, &CommandMeta, &C)],
        part_ids: I,
        decide: D,
    ) -> Vec<Result<CommandOutcome<A>, RepositoryError<A::Error>>>
    where
        P: Aggregate,
        I: Fn(&A, &C) -> Vec<String>,
        D: Fn(&A, &BTreeMap<String, P>, &C) -> Result<JointDecision<A, P>, A::Error>,
    {
        if let Some(outcomes) = self
            .joint_together(parts, commands, &part_ids, &decide)
            .await
        {
            return outcomes;
        }
        let mut outcomes = Vec::with_capacity(commands.len());
        for &(id, meta, command) in commands {
            let outcome = self
                .execute_joint(
                    parts,
                    id,
                    meta,
                    |own| part_ids(own, command),
                    |own, states| decide(own, states, command),
                )
                .await;
            outcomes.push(outcome);
        }
        outcomes
    }

    /// One write for all of `commands`, or `None` (nothing written) when they must go one by
    /// one.
    async fn joint_together<P, C, I, D>(
        &self,
        parts: &Repository<P, S>,
        commands: &[(&str, &CommandMeta, &C)],
        part_ids: &I,
        decide: &D,
    ) -> Option<Vec<Result<CommandOutcome<A>, RepositoryError<A::Error>>>>
    where
        P: Aggregate,
        I: Fn(&A, &C) -> Vec<String>,
        D: Fn(&A, &BTreeMap<String, P>, &C) -> Result<JointDecision<A, P>, A::Error>,
    {
        let distinct: std::collections::BTreeSet<&str> = commands.iter().map(|c| c.0).collect();
        if commands.len() < 2 || distinct.len() != commands.len() {
            return None;
        }
        let mut owns = Vec::with_capacity(commands.len());
        for &(id, _, _) in commands {
            owns.push(self.state_for(id, false).await.ok()?.0);
        }
        let mut read: BTreeMap<String, (P, u64)> = BTreeMap::new();
        for (own, &(_, _, command)) in owns.iter().zip(commands) {
            for part in part_ids(&own.state, command) {
                if let std::collections::btree_map::Entry::Vacant(slot) = read.entry(part) {
                    let loaded = parts.state_for(slot.key(), false).await.ok()?.0;
                    slot.insert((loaded.state, loaded.version));
                }
            }
        }
        let mut states: BTreeMap<String, P> = read
            .iter()
            .map(|(part, (state, _))| (part.clone(), state.clone()))
            .collect();
        let mut decisions = Vec::with_capacity(commands.len());
        for (own, &(_, _, command)) in owns.iter().zip(commands) {
            let decision = decide(&own.state, &states, command).ok()?;
            for (part, events) in &decision.parts {
                let state = states.get_mut(part)?;
                for event in events {
                    state.apply(event);
                }
            }
            decisions.push(decision);
        }

        let mut requests = Vec::with_capacity(commands.len() + read.len());
        let mut owns_after = Vec::with_capacity(commands.len());
        let mut produced: Vec<Vec<StoredEvent>> = Vec::with_capacity(commands.len());
        for ((own, decision), &(id, meta, _)) in owns.into_iter().zip(&decisions).zip(commands) {
            let keys = meta.idempotency_key.iter().cloned().collect();
            let stream = Self::stream_id(id);
            let (request, after) = self.request(
                &stream,
                own.state,
                own.version,
                &decision.events,
                keys,
                meta,
            );
            produced.push(request.events.clone());
            requests.push(request);
            owns_after.push(after);
        }
        let mut parts_after = BTreeMap::new();
        for (part, (mut state, version)) in read {
            let stream = Repository::<P, S>::stream_id(&part);
            let wake_before = state.wake_at();
            let mut stored: Vec<StoredEvent> = Vec::new();
            let mut taken_at = crate::event::Timestamp(0);
            for (i, (decision, &(_, meta, _))) in decisions.iter().zip(commands).enumerate() {
                let Some(events) = decision.parts.get(&part) else {
                    continue;
                };
                for event in events {
                    state.apply(event);
                }
                let these = envelope_events(&stream, version + stored.len() as u64, events, meta);
                produced[i].extend(these.iter().cloned());
                stored.extend(these);
                taken_at = meta.now;
            }
            let after = version + stored.len() as u64;
            requests.push(AppendRequest {
                snapshot: parts.snapshot_of(&stream, version, after, &state, taken_at),
                stream,
                expected_version: version,
                expected_from_store: true,
                events: stored,
                idempotency_keys: Vec::new(),
                wake: Wake::between(wake_before, state.wake_at()),
            });
            parts_after.insert(
                part,
                After {
                    state,
                    version: after,
                },
            );
        }

        match self.store.append_together(requests).await {
            Ok(AppendOutcome::Appended { .. }) => {
                for (after, &(id, _, _)) in owns_after.iter().zip(commands) {
                    self.remember(id, &after.state, after.version);
                }
                for (part, after) in &parts_after {
                    parts.remember(part, &after.state, after.version);
                }
                Some(
                    owns_after
                        .into_iter()
                        .zip(produced)
                        .map(|(after, events)| {
                            Ok(CommandOutcome {
                                events,
                                state: after.state,
                                version: after.version,
                                duplicate: false,
                                attempts: 1,
                            })
                        })
                        .collect(),
                )
            }
            _ => {
                for &(id, _, _) in commands {
                    self.forget(id);
                }
                for part in parts_after.keys() {
                    parts.forget(part);
                }
                None
            }
        }
    }

    /// The state of `id` this process remembers (and `true`), or a fresh load of it.
    async fn state_for(
        &self,
        id: &str,
        fresh: bool,
    ) -> Result<(Loaded<A>, bool), RepositoryError<A::Error>> {
        if !fresh {
            if let Some((state, version)) = self.cache.as_ref().and_then(|c| c.get(id)) {
                let loaded = Loaded {
                    state,
                    version,
                    replayed: 0,
                };
                return Ok((loaded, true));
            }
        }
        let loaded = self.load(id).await?;
        self.remember(id, &loaded.state, loaded.version);
        Ok((loaded, false))
    }

    /// The append requests of a joint decision, the aggregate's first, and every stream's
    /// state after it.
    fn requests<P: Aggregate>(
        &self,
        parts: &Repository<P, S>,
        (stream, own): (&StreamId, Loaded<A>),
        states: BTreeMap<String, P>,
        versions: &BTreeMap<String, u64>,
        mut decision: JointDecision<A, P>,
        meta: &CommandMeta,
    ) -> Joint<A, P> {
        let keys: Vec<String> = meta.idempotency_key.iter().cloned().collect();
        let (own_request, own_after) =
            self.request(stream, own.state, own.version, &decision.events, keys, meta);
        let mut requests = vec![own_request];
        let mut after_parts = BTreeMap::new();
        for (part, state) in states {
            let version = versions.get(&part).copied().unwrap_or(0);
            let events = decision.parts.remove(&part).unwrap_or_default();
            let part_stream = Repository::<P, S>::stream_id(&part);
            let (request, after) =
                parts.request(&part_stream, state, version, &events, Vec::new(), meta);
            requests.push(request);
            after_parts.insert(part, after);
        }
        Joint {
            requests,
            own: own_after,
            parts: after_parts,
        }
    }

    /// One stream's append of `events` decided on `state` at `version`, and the state after.
    fn request(
        &self,
        stream: &StreamId,
        mut state: A,
        version: u64,
        events: &[A::Event],
        idempotency_keys: Vec<String>,
        meta: &CommandMeta,
    ) -> (AppendRequest, After<A>) {
        let wake_before = state.wake_at();
        for event in events {
            state.apply(event);
        }
        let stored = envelope_events(stream, version, events, meta);
        let after = version + stored.len() as u64;
        let request = AppendRequest {
            stream: stream.clone(),
            expected_version: version,
            expected_from_store: true,
            events: stored,
            idempotency_keys,
            wake: Wake::between(wake_before, state.wake_at()),
            snapshot: self.snapshot_of(stream, version, after, &state, meta.now),
        };
        (
            request,
            After {
                state,
                version: after,
            },
        )
    }

    /// A refused joint command: a duplicate if its key was recorded before, else the refusal.
    async fn refused(
        &self,
        own: Loaded<A>,
        refusal: A::Error,
        meta: &CommandMeta,
        attempts: u32,
    ) -> Result<CommandOutcome<A>, RepositoryError<A::Error>> {
        let recorded = match &meta.idempotency_key {
            Some(key) => self
                .store
                .is_processed(key)
                .await
                .map_err(RepositoryError::Store)?,
            None => false,
        };
        if !recorded {
            return Err(RepositoryError::Domain(refusal));
        }
        Ok(CommandOutcome {
            events: Vec::new(),
            state: own.state,
            version: own.version,
            duplicate: true,
            attempts,
        })
    }
}

/// A stream's state and version once its append is written.
struct After<A> {
    state: A,
    version: u64,
}

/// Everything one attempt appends, and the states it leaves.
struct Joint<A, P> {
    requests: Vec<AppendRequest>,
    own: After<A>,
    parts: BTreeMap<String, After<P>>,
}

/// A part's load error as the deciding aggregate's: loading refuses nothing, so only the
/// store's and the decoder's errors can occur.
fn load_error<E, F>(error: RepositoryError<E>) -> RepositoryError<F> {
    match error {
        RepositoryError::Store(e) => RepositoryError::Store(e),
        RepositoryError::Decode { stream, source } => RepositoryError::Decode { stream, source },
        RepositoryError::Contended { attempts, source } => {
            RepositoryError::Contended { attempts, source }
        }
        RepositoryError::Domain(_) => RepositoryError::Store(StoreError::Unavailable {
            reason: "loading a part was refused".into(),
            transience: Transience::Permanent,
        }),
    }
}
