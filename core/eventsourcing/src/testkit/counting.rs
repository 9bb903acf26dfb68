//! An event store wrapper that counts the reads and writes reaching the store underneath, so
//! tests can check how many requests a path costs.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::event::{StoredEvent, StreamId, Timestamp};
use crate::store::{AppendOutcome, AppendRequest, DueStream, EventStore, Snapshot, StoreError};

/// Counts the calls that reach `inner`: stream reads (a load with or without its snapshot) and
/// appends.
#[derive(Debug, Default)]
pub struct CountingStore<S> {
    inner: S,
    reads: AtomicU64,
    appends: AtomicU64,
}

impl<S> CountingStore<S> {
    /// Counts the calls to `inner`, from zero.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            reads: AtomicU64::new(0),
            appends: AtomicU64::new(0),
        }
    }

    /// The store underneath.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Stream reads so far: `load`, `load_latest`, `load_snapshot`, `is_processed`.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// Appends so far.
    pub fn appends(&self) -> u64 {
        self.appends.load(Ordering::SeqCst)
    }

    fn read(&self) {
        self.reads.fetch_add(1, Ordering::SeqCst);
    }
}

impl<S: EventStore> EventStore for CountingStore<S> {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append(request).await
    }

    async fn append_together(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<AppendOutcome, StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append_together(requests).await
    }

    async fn load(
        &self,
        stream: &StreamId,
        after_version: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.read();
        self.inner.load(stream, after_version).await
    }

    async fn load_latest(
        &self,
        stream: &StreamId,
        tail_hint: u64,
    ) -> Result<(Option<Snapshot>, Vec<StoredEvent>), StoreError> {
        self.read();
        self.inner.load_latest(stream, tail_hint).await
    }

    async fn is_processed(&self, key: &str) -> Result<bool, StoreError> {
        self.read();
        self.inner.is_processed(key).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.read();
        self.inner.load_snapshot(stream).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.save_snapshot(snapshot).await
    }

    async fn due(
        &self,
        aggregate_type: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueStream>, StoreError> {
        self.read();
        self.inner.due(aggregate_type, now, limit).await
    }
}
