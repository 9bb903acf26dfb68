//! Event store behaviour every backend must show; call each scenario with a fresh store.
//!
//! Each scenario takes a `prefix` so that backends shared between tests (a DynamoDB table) can
//! keep scenarios apart by stream id.

use serde_json::json;

use crate::event::{event_id_for, EventEnvelope, StoredEvent, StreamId, Timestamp};
use crate::store::{
    AppendOutcome, AppendRequest, DueStream, EventStore, Snapshot, StoreError, Wake,
};

fn event(stream: &StreamId, sequence: u64, n: u64) -> StoredEvent {
    EventEnvelope {
        trace_context: None,
        event_id: event_id_for(stream, sequence),
        aggregate_type: stream.aggregate_type.clone(),
        aggregate_id: stream.aggregate_id.clone(),
        sequence,
        event_type: "scenario.happened".into(),
        schema_version: 1,
        occurred_at: Timestamp(1_000 + sequence as i64),
        correlation_id: format!("corr-{}", stream.aggregate_id),
        causation_id: format!("cause-{n}"),
        payload: json!({ "n": n, "text": "ünïcode ✓" }),
    }
}

fn events(stream: &StreamId, after: u64, count: u64) -> Vec<StoredEvent> {
    (1..=count)
        .map(|i| event(stream, after + i, after + i))
        .collect()
}

fn request(stream: &StreamId, expected: u64, count: u64, key: Option<&str>) -> AppendRequest {
    AppendRequest {
        stream: stream.clone(),
        expected_version: expected,
        expected_from_store: false,
        events: events(stream, expected, count),
        idempotency_keys: key.map(str::to_string).into_iter().collect(),
        wake: Wake::Unchanged,
        snapshot: None,
    }
}

/// Appended events load back equal, in order, and from any version.
pub async fn appends_and_loads_in_order<S: EventStore>(store: &S, prefix: &str) {
    let stream = StreamId::new("scenario", format!("{prefix}-order"));
    let first = store.append(request(&stream, 0, 3, None)).await;
    assert_eq!(first, Ok(AppendOutcome::Appended { version: 3 }));
    let second = store.append(request(&stream, 3, 2, None)).await;
    assert_eq!(second, Ok(AppendOutcome::Appended { version: 5 }));
    let all = store.load(&stream, 0).await.expect("load");
    assert_eq!(all, events(&stream, 0, 5));
    let tail = store.load(&stream, 3).await.expect("load tail");
    assert_eq!(tail, events(&stream, 3, 2));
    let none = store.load(&stream, 5).await.expect("load past end");
    assert!(none.is_empty());
    let missing = StreamId::new("scenario", format!("{prefix}-missing"));
    assert!(store
        .load(&missing, 0)
        .await
        .expect("load missing")
        .is_empty());
}

/// A writer with a stale expected version gets a conflict, and nothing of its batch lands.
pub async fn stale_writer_gets_a_conflict<S: EventStore>(store: &S, prefix: &str) {
    let stream = StreamId::new("scenario", format!("{prefix}-conflict"));
    store
        .append(request(&stream, 0, 2, None))
        .await
        .expect("first append");
    let stale = store.append(request(&stream, 1, 3, None)).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { expected: 1, .. })),
        "{stale:?}"
    );
    let from_zero = store.append(request(&stream, 0, 1, None)).await;
    assert!(
        matches!(from_zero, Err(StoreError::Conflict { expected: 0, .. })),
        "{from_zero:?}"
    );
    assert_eq!(store.load(&stream, 0).await.expect("load").len(), 2);
}

/// A version the caller claims is checked: one ahead of the stream is refused, so no gap can
/// open. A version the store reported needs no such check (it cannot be ahead), yet a writer
/// that is behind still gets its conflict.
pub async fn a_claimed_version_must_exist<S: EventStore>(store: &S, prefix: &str) {
    let stream = StreamId::new("scenario", format!("{prefix}-claimed"));
    store
        .append(request(&stream, 0, 2, None))
        .await
        .expect("first append");
    let ahead = store.append(request(&stream, 3, 1, None)).await;
    assert!(
        matches!(ahead, Err(StoreError::Conflict { expected: 3, .. })),
        "{ahead:?}"
    );
    let reported = |expected: u64| AppendRequest {
        expected_from_store: true,
        ..request(&stream, expected, 1, None)
    };
    assert_eq!(
        store.append(reported(2)).await,
        Ok(AppendOutcome::Appended { version: 3 })
    );
    let behind = store.append(reported(2)).await;
    assert!(
        matches!(behind, Err(StoreError::Conflict { expected: 2, .. })),
        "{behind:?}"
    );
    assert_eq!(
        store.load(&stream, 0).await.expect("load"),
        events(&stream, 0, 3)
    );
}

/// Of two writers racing from the same version, exactly one wins.
pub async fn racing_writers_one_wins<S: EventStore>(store: &S, prefix: &str) {
    let stream = StreamId::new("scenario", format!("{prefix}-race"));
    let (a, b) = futures_join(
        store.append(request(&stream, 0, 2, None)),
        store.append(request(&stream, 0, 3, None)),
    )
    .await;
    let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "a: {a:?}, b: {b:?}");
    let loaded = store.load(&stream, 0).await.expect("load");
    assert!(loaded.len() == 2 || loaded.len() == 3);
}

/// A recorded idempotency key makes a second append a duplicate that appends nothing.
pub async fn idempotency_key_is_recorded_once<S: EventStore>(store: &S, prefix: &str) {
    let stream = StreamId::new("scenario", format!("{prefix}-idem"));
    let key = format!("{prefix}-msg-1");
    assert_eq!(store.is_processed(&key).await, Ok(false));
    let first = store.append(request(&stream, 0, 1, Some(&key))).await;
    assert_eq!(first, Ok(AppendOutcome::Appended { version: 1 }));
    assert_eq!(store.is_processed(&key).await, Ok(true));
    let again = store.append(request(&stream, 1, 1, Some(&key))).await;
    assert_eq!(again, Ok(AppendOutcome::Duplicate));
    assert_eq!(store.load(&stream, 0).await.expect("load").len(), 1);
    let other = store
        .append(request(&stream, 1, 1, Some(&format!("{prefix}-msg-2"))))
        .await;
    assert_eq!(other, Ok(AppendOutcome::Appended { version: 2 }));
}

/// A conflicting append does not record its idempotency key, so its retry can still land.
pub async fn conflict_does_not_record_the_key<S: EventStore>(store: &S, prefix: &str) {
    let stream = StreamId::new("scenario", format!("{prefix}-idem-conflict"));
    let key = format!("{prefix}-msg-conflict");
    store
        .append(request(&stream, 0, 1, None))
        .await
        .expect("first append");
    let stale = store.append(request(&stream, 0, 1, Some(&key))).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    assert_eq!(store.is_processed(&key).await, Ok(false));
    let retried = store.append(request(&stream, 1, 1, Some(&key))).await;
    assert_eq!(retried, Ok(AppendOutcome::Appended { version: 2 }));
}

/// Requests with sequence gaps or events of another stream are refused before any write.
pub async fn malformed_appends_are_refused<S: EventStore>(store: &S, prefix: &str) {
    let stream = StreamId::new("scenario", format!("{prefix}-malformed"));
    let mut gap = request(&stream, 0, 2, None);
    gap.events[1].sequence = 5;
    assert!(matches!(
        store.append(gap).await,
        Err(StoreError::InvalidAppend { .. })
    ));
    let other = StreamId::new("scenario", format!("{prefix}-other"));
    let mut foreign = request(&stream, 0, 1, None);
    foreign.events = events(&other, 0, 1);
    assert!(matches!(
        store.append(foreign).await,
        Err(StoreError::InvalidAppend { .. })
    ));
    assert!(store.load(&stream, 0).await.expect("load").is_empty());
}

/// Snapshots save, load back, and an older snapshot never replaces a newer one.
pub async fn snapshots_keep_the_latest<S: EventStore>(store: &S, prefix: &str) {
    let stream = StreamId::new("scenario", format!("{prefix}-snap"));
    assert_eq!(store.load_snapshot(&stream).await, Ok(None));
    let snap = |version: u64| Snapshot {
        stream: stream.clone(),
        version,
        state_version: 1,
        state: json!({ "total": version * 10 }),
        taken_at: Timestamp(5),
    };
    store.save_snapshot(snap(10)).await.expect("save 10");
    store.save_snapshot(snap(20)).await.expect("save 20");
    store.save_snapshot(snap(15)).await.expect("save 15");
    assert_eq!(store.load_snapshot(&stream).await, Ok(Some(snap(20))));
}

/// A snapshot saved with an append loads back with exactly the events after it; a stream
/// without one loads whole.
pub async fn snapshots_in_appends_load_with_their_tail<S: EventStore>(store: &S, prefix: &str) {
    let stream = StreamId::new("scenario", format!("{prefix}-tail"));
    let snap = |version: u64| Snapshot {
        stream: stream.clone(),
        version,
        state_version: 1,
        state: json!({ "total": version }),
        taken_at: Timestamp(5),
    };
    store
        .append(request(&stream, 0, 2, None))
        .await
        .expect("append 1-2");
    let (none, whole) = store.load_latest(&stream, 4).await.expect("load whole");
    assert_eq!(none, None);
    assert_eq!(whole.len(), 2);
    for (from, count) in [(2, 3), (5, 1)] {
        store
            .append(AppendRequest {
                snapshot: Some(snap(from + count)),
                ..request(&stream, from, count, None)
            })
            .await
            .expect("append with a snapshot");
    }
    store
        .append(request(&stream, 6, 3, None))
        .await
        .expect("append 7-9");
    let (snapshot, tail) = store.load_latest(&stream, 4).await.expect("load latest");
    assert_eq!(snapshot, Some(snap(6)));
    let sequences: Vec<u64> = tail.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, vec![7, 8, 9]);
    assert_eq!(store.load_snapshot(&stream).await, Ok(Some(snap(6))));
    let all = store.load(&stream, 0).await.expect("load all");
    assert_eq!(all.len(), 9, "snapshots are not events");
    let misplaced = store
        .append(AppendRequest {
            snapshot: Some(snap(12)),
            ..request(&stream, 9, 1, None)
        })
        .await;
    assert!(
        matches!(misplaced, Err(StoreError::InvalidAppend { .. })),
        "{misplaced:?}"
    );
}

/// An append of no events (a command that changed nothing) still holds only at the version it
/// was decided on: a stream that moved on refuses it and its key stays unrecorded.
pub async fn an_empty_append_expects_its_version<S: EventStore>(store: &S, prefix: &str) {
    let stream = StreamId::new("scenario", format!("{prefix}-noop"));
    let key = format!("{prefix}-noop-key");
    store
        .append(request(&stream, 0, 2, None))
        .await
        .expect("append 1-2");
    let stale = store.append(request(&stream, 1, 0, Some(&key))).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    assert_eq!(store.is_processed(&key).await, Ok(false));
    assert_eq!(
        store.append(request(&stream, 2, 0, Some(&key))).await,
        Ok(AppendOutcome::Appended { version: 2 })
    );
    assert_eq!(store.is_processed(&key).await, Ok(true));
}

/// One append may record several idempotency keys; if any was recorded before, nothing of it
/// is appended and none of its new keys is recorded.
pub async fn several_keys_in_one_append<S: EventStore>(store: &S, prefix: &str) {
    let stream = StreamId::new("scenario", format!("{prefix}-keys"));
    let key = |k: &str| format!("{prefix}-keys-{k}");
    let keyed = |expected: u64, keys: &[&str]| AppendRequest {
        idempotency_keys: keys.iter().map(|k| key(k)).collect(),
        ..request(&stream, expected, 2, None)
    };
    assert_eq!(
        store.append(keyed(0, &["a", "b"])).await,
        Ok(AppendOutcome::Appended { version: 2 })
    );
    assert_eq!(store.is_processed(&key("a")).await, Ok(true));
    assert_eq!(store.is_processed(&key("b")).await, Ok(true));
    assert_eq!(
        store.append(keyed(2, &["c", "b"])).await,
        Ok(AppendOutcome::Duplicate)
    );
    assert_eq!(store.is_processed(&key("c")).await, Ok(false));
    assert_eq!(store.load(&stream, 0).await.expect("load").len(), 2);
    assert_eq!(
        store.append(keyed(2, &["d", "d"])).await,
        Ok(AppendOutcome::Appended { version: 4 }),
        "a key listed twice is recorded once"
    );
    assert_eq!(store.is_processed(&key("d")).await, Ok(true));
}

/// Long streams load completely (backends that page must follow every page).
pub async fn long_streams_load_completely<S: EventStore>(store: &S, prefix: &str, length: u64) {
    let stream = StreamId::new("scenario", format!("{prefix}-long"));
    let mut version = 0;
    while version < length {
        let count = (length - version).min(25);
        store
            .append(request(&stream, version, count, None))
            .await
            .expect("append chunk");
        version += count;
    }
    let loaded = store.load(&stream, 0).await.expect("load");
    assert_eq!(loaded.len() as u64, length);
    assert!(loaded
        .iter()
        .enumerate()
        .all(|(i, e)| e.sequence == i as u64 + 1));
}

/// A stream's wake-up time is set, moved and cleared atomically with its appends, and `due`
/// finds the streams whose time has come, earliest first, of one aggregate type only.
pub async fn wake_times_follow_appends<S: EventStore>(store: &S, prefix: &str) {
    let kind = format!("wake{prefix}");
    let a = StreamId::new(kind.as_str(), "a");
    let b = StreamId::new(kind.as_str(), "b");
    let other = StreamId::new(format!("{kind}-other"), "c");
    let with_wake = |stream: &StreamId, expected: u64, wake: Wake| AppendRequest {
        wake,
        ..request(stream, expected, 1, None)
    };
    let due = |now: i64, limit: usize| {
        let kind = kind.clone();
        async move {
            store
                .due(&kind, Timestamp(now), limit)
                .await
                .expect("due")
                .into_iter()
                .map(|d: DueStream| (d.stream.aggregate_id, d.wake_at.0))
                .collect::<Vec<_>>()
        }
    };
    let appended = |r: Result<AppendOutcome, StoreError>| {
        assert!(matches!(r, Ok(AppendOutcome::Appended { .. })), "{r:?}")
    };
    appended(
        store
            .append(with_wake(&a, 0, Wake::At(Timestamp(100))))
            .await,
    );
    appended(
        store
            .append(with_wake(&b, 0, Wake::At(Timestamp(50))))
            .await,
    );
    appended(
        store
            .append(with_wake(&other, 0, Wake::At(Timestamp(10))))
            .await,
    );
    assert_eq!(due(49, 10).await, vec![]);
    assert_eq!(
        due(100, 10).await,
        vec![("b".into(), 50), ("a".into(), 100)]
    );
    assert_eq!(due(100, 1).await, vec![("b".into(), 50)]);

    appended(store.append(with_wake(&a, 1, Wake::Never)).await);
    appended(store.append(with_wake(&b, 1, Wake::Unchanged)).await);
    assert_eq!(due(1_000, 10).await, vec![("b".into(), 50)]);

    // A refused append changes no wake-up time.
    let stale = store.append(with_wake(&b, 0, Wake::At(Timestamp(5)))).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    appended(
        store
            .append(with_wake(&b, 2, Wake::At(Timestamp(700))))
            .await,
    );
    assert_eq!(due(699, 10).await, vec![]);
    assert_eq!(due(700, 10).await, vec![("b".into(), 700)]);
}

/// Several streams append in one atomic write: all land, or on a conflict or a recorded key
/// in any of them, none does.
pub async fn appends_to_streams_together<S: EventStore>(store: &S, prefix: &str) {
    let a = StreamId::new("scenario", format!("{prefix}-a"));
    let b = StreamId::new("scenario", format!("{prefix}-b"));
    let c = StreamId::new("scenario", format!("{prefix}-c"));
    let key = format!("{prefix}-joint-1");
    store
        .append(request(&a, 0, 1, None))
        .await
        .expect("first append");
    let together = store
        .append_together(vec![request(&a, 1, 1, Some(&key)), request(&b, 0, 2, None)])
        .await;
    assert_eq!(together, Ok(AppendOutcome::Appended { version: 2 }));
    assert_eq!(store.load(&a, 0).await.expect("load a"), events(&a, 0, 2));
    assert_eq!(store.load(&b, 0).await.expect("load b"), events(&b, 0, 2));
    assert_eq!(store.is_processed(&key).await, Ok(true));

    let stale_first = store
        .append_together(vec![request(&a, 1, 1, None), request(&c, 0, 1, None)])
        .await;
    assert!(
        matches!(&stale_first, Err(StoreError::Conflict { stream, expected: 1, .. }) if *stream == a),
        "{stale_first:?}"
    );
    let stale_second = store
        .append_together(vec![
            request(&c, 0, 1, Some(&format!("{prefix}-joint-2"))),
            request(&b, 1, 1, None),
        ])
        .await;
    assert!(
        matches!(&stale_second, Err(StoreError::Conflict { stream, expected: 1, .. }) if *stream == b),
        "{stale_second:?}"
    );
    assert!(store.load(&c, 0).await.expect("load c").is_empty());
    assert_eq!(
        store.is_processed(&format!("{prefix}-joint-2")).await,
        Ok(false)
    );

    let again = store
        .append_together(vec![request(&c, 0, 1, None), request(&a, 2, 1, Some(&key))])
        .await;
    assert_eq!(again, Ok(AppendOutcome::Duplicate));
    assert!(store.load(&c, 0).await.expect("load c").is_empty());
    assert_eq!(store.load(&a, 0).await.expect("load a").len(), 2);

    let twice = store
        .append_together(vec![request(&c, 0, 1, None), request(&c, 0, 1, None)])
        .await;
    assert!(
        matches!(twice, Err(StoreError::InvalidAppend { .. })),
        "{twice:?}"
    );
}

/// One test per event store scenario for a backend, so a failure names its scenario.
///
/// `$store` is an expression (it may `.await`) giving a fresh store, evaluated in each test;
/// each scenario's streams are kept apart by a prefix of its own. Attributes given before
/// `store:` (such as `#[ignore = "..."]`) go on every test.
///
/// ```ignore
/// sagaflow_eventsourcing::event_store_scenarios! {
///     store: InMemoryEventStore::new()
/// }
/// ```
#[macro_export]
macro_rules! event_store_scenarios {
    ($(#[$attr:meta])* store: $store:expr) => {
        $crate::event_store_scenarios!(@each [$(#[$attr])*] $store;
            appends_and_loads_in_order,
            stale_writer_gets_a_conflict,
            a_claimed_version_must_exist,
            racing_writers_one_wins,
            idempotency_key_is_recorded_once,
            conflict_does_not_record_the_key,
            malformed_appends_are_refused,
            snapshots_keep_the_latest,
            snapshots_in_appends_load_with_their_tail,
            several_keys_in_one_append,
            an_empty_append_expects_its_version,
            wake_times_follow_appends,
            appends_to_streams_together,
        );
        $(#[$attr])*
        #[tokio::test]
        async fn long_streams_load_completely() {
            let store = $store;
            $crate::testkit::store_scenarios::long_streams_load_completely(
                &store,
                "long_streams_load_completely",
                260,
            )
            .await;
        }
    };
    (@each [$($attrs:tt)*] $store:expr;) => {};
    (@each [$($attrs:tt)*] $store:expr; $scenario:ident, $($rest:ident,)*) => {
        $($attrs)*
        #[tokio::test]
        async fn $scenario() {
            let store = $store;
            $crate::testkit::store_scenarios::$scenario(&store, stringify!($scenario)).await;
        }
        $crate::event_store_scenarios!(@each [$($attrs)*] $store; $($rest,)*);
    };
}

/// Polls two futures together on the current task, so the race needs no runtime of its own.
async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    use std::pin::pin;
    use std::task::Poll;
    let mut a = pin!(a);
    let mut b = pin!(b);
    let mut out_a = None;
    let mut out_b = None;
    std::future::poll_fn(|cx| {
        if out_a.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                out_a = Some(v);
            }
        }
        if out_b.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                out_b = Some(v);
            }
        }
        if out_a.is_some() && out_b.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    match (out_a, out_b) {
        (Some(a), Some(b)) => (a, b),
        _ => unreachable!("poll_fn returns Ready only when both outputs are set"),
    }
}
