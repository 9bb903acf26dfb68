//! The core's `EventStore` on DynamoDB: one item per event, appended in one conditional
//! transaction together with the idempotency record of the command that produced them.
//!
//! Each event is put on the condition that its sequence is free, which refuses a writer that
//! is behind. A writer that claims a version the stream never reached would leave a gap, so
//! the transaction also checks that the expected version's event exists, unless the request
//! says the version came from this store ([`AppendRequest::expected_from_store`]).
//!
//! Item layout of the events table (`pk` string, `sk` number):
//!
//! | item | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | event | `<aggregate_type>#<aggregate_id>` | sequence | `kind`=`event`, `event_id`, `event_type`, `envelope` (the JSON form of the event) |
//! | processed command | `processed#<idempotency key>` | 0 | `kind`=`processed`, `expires_at` (TTL, epoch seconds) |
//! | snapshot | `<aggregate_type>#<aggregate_id>` | version + 0.5 | `kind`=`snapshot`, `version`, `state_version`, `state`, `taken_at` |
//! | wake-up time | `wake#<aggregate_type>#<aggregate_id>` | 0 | `kind`=`wake`, `aggregate_type`, `aggregate_id`, `wake_shard`, `wake_at` |
//!
//! Wake-up items exist only while a stream waits (a saga on a step's deadline); they are put or
//! deleted in the same transaction as the events that change the wait, and the sparse index
//! [`WAKE_INDEX`] (`wake_shard`, `wake_at`) lets a timer query what is due without a scan.
//!
//! A snapshot sits in its stream's partition just after the event it includes, so one query
//! read newest first ([`EventStore::load_latest`]) returns the events after the latest snapshot
//! and the snapshot itself: loading an aggregate is one request. It is written in the same
//! transaction as the events that crossed the snapshot interval. Older snapshots stay (one per
//! interval, never read again once a newer one exists).
//!
//! The table's stream (new images) feeds the outbox relay, which publishes `event` items only.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;

use crate::attributes::{fnv1a, get_n, get_s, n, s, sdk_failure};
use crate::push_back::PushBack;
use sagaflow_eventsourcing::store::{
    validate_together, AppendOutcome, AppendRequest, DueStream, EventStore, Snapshot, StoreError,
    Wake,
};
use sagaflow_eventsourcing::StoredEvent;
use sagaflow_eventsourcing::StreamId;
use sagaflow_eventsourcing::Timestamp;
use sagaflow_eventsourcing::Transience;

/// DynamoDB allows at most this many items in one `TransactWriteItems` call.
pub const MAX_TRANSACTION_ITEMS: usize = 100;
/// The largest envelope stored in one item; DynamoDB's item limit is 400 KB including names.
pub const MAX_ENVELOPE_BYTES: usize = 350 * 1024;
/// How long an idempotency record is kept: far longer than any redelivery window.
pub const PROCESSED_TTL_SECONDS: i64 = 7 * 24 * 3600;
/// The sparse global secondary index of wake-up times (`wake_shard` hash, `wake_at` range).
pub const WAKE_INDEX: &str = "wake-index";
/// How many index partitions the wake-up times of one aggregate type are spread over.
pub const WAKE_SHARDS: u64 = 4;

/// The items of one `TransactWriteItems` call with where each part of it is.
struct Transaction {
    items: Vec<TransactWriteItem>,
    /// Per stream, the range of its idempotency records among `items`.
    processed: Vec<std::ops::Range<usize>>,
    /// Per stream, the range of all its items.
    streams: Vec<std::ops::Range<usize>>,
}

/// An event store in one DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoEventStore {
    client: Client,
    table: String,
    push_back: Arc<PushBack>,
}

/// The partition key of a stream's event items.
pub fn stream_key(stream: &StreamId) -> String {
    format!("{}#{}", stream.aggregate_type, stream.aggregate_id)
}

fn wake_key(stream: &StreamId) -> String {
    format!("wake#{}", stream_key(stream))
}

/// The index partition of a stream's wake-up time: its aggregate type and a stable hash bucket.
fn wake_shard(stream: &StreamId) -> String {
    let hash = fnv1a(stream_key(stream).as_bytes());
    format!("{}#{}", stream.aggregate_type, hash % WAKE_SHARDS)
}

fn processed_key(key: &str) -> String {
    format!("processed#{key}")
}

/// The sort key of the snapshot that includes `version`: between that event and the next.
fn snapshot_sort_key(version: u64) -> AttributeValue {
    AttributeValue::N(format!("{version}.5"))
}

fn is_snapshot(item: &HashMap<String, AttributeValue>) -> bool {
    get_s(item, "kind") == Some("snapshot")
}

/// Classifies an SDK error as the store's error.
fn unavailable<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    operation: &str,
    error: &SdkError<E, R>,
) -> StoreError {
    sdk_failure(operation, error).into()
}

fn build_error(stream: &StreamId, error: impl std::fmt::Display) -> StoreError {
    StoreError::InvalidAppend {
        stream: stream.clone(),
        reason: format!("cannot build the DynamoDB request: {error}"),
    }
}

impl DynamoEventStore {
    /// A store over `table` using `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            push_back: Arc::default(),
        }
    }

    /// The same store counting its conflicts into `push_back` (the function's, which its
    /// client's interceptor counts throttles into).
    pub fn with_push_back(mut self, push_back: Arc<PushBack>) -> Self {
        self.push_back = push_back;
        self
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The highest sequence of `stream` (0 when empty), read consistently.
    pub async fn current_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(stream_key(stream)))
            .scan_index_forward(false)
            // The newest item may be a snapshot; the one below it is then the newest event.
            .limit(2)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("Query", &e))?;
        Ok(out
            .items()
            .iter()
            .find(|item| !is_snapshot(item))
            .and_then(|item| get_n::<u64>(item, "sk"))
            .unwrap_or(0))
    }

    /// The item `pk` / `sk = 0` (idempotency records and snapshots), read consistently.
    /// Every event in the table, each stream in sequence order: the source for rebuilding read
    /// models and for checking them. A full `Scan` (consistent, paged): a tool, not a hot path.
    pub async fn all_events(&self) -> Result<Vec<StoredEvent>, StoreError> {
        self.scan_events(None).await
    }

    /// Every event of the streams of `aggregate_type` (`order`, `saga`, ...), each stream in
    /// sequence order: a full `Scan` that returns only those streams' events.
    pub async fn events_of_type(
        &self,
        aggregate_type: &str,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.scan_events(Some(aggregate_type)).await
    }

    async fn scan_events(
        &self,
        aggregate_type: Option<&str>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events = Vec::new();
        let mut start = None;
        loop {
            let scan = self
                .client
                .scan()
                .table_name(&self.table)
                .expression_attribute_values(":event", s("event"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            let scan = match aggregate_type {
                Some(kind) => scan
                    .filter_expression("kind = :event AND begins_with(pk, :streams)")
                    .expression_attribute_values(":streams", s(format!("{kind}#"))),
                None => scan.filter_expression("kind = :event"),
            };
            let page = scan.send().await.map_err(|e| unavailable("Scan", &e))?;
            for item in page.items() {
                let pk = get_s(item, "pk").unwrap_or("?");
                let corrupt = |reason: String| StoreError::Corrupt {
                    stream: StreamId::new("table", pk),
                    reason,
                };
                let envelope = get_s(item, "envelope")
                    .ok_or_else(|| corrupt(format!("item {:?} has no envelope", item.get("sk"))))?;
                events.push(
                    StoredEvent::from_json(envelope.as_bytes())
                        .map_err(|e| corrupt(e.to_string()))?,
                );
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        events.sort_by(|a, b| {
            (&a.aggregate_type, &a.aggregate_id, a.sequence).cmp(&(
                &b.aggregate_type,
                &b.aggregate_id,
                b.sequence,
            ))
        });
        Ok(events)
    }

    async fn due_in_shard(
        &self,
        shard: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueStream>, StoreError> {
        let mut due = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(WAKE_INDEX)
                .key_condition_expression("wake_shard = :shard AND wake_at <= :now")
                .expression_attribute_values(":shard", s(shard))
                .expression_attribute_values(":now", n(now.as_millis()))
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("Query", &e))?;
            for item in page.items() {
                let (Some(kind), Some(id), Some(at)) = (
                    get_s(item, "aggregate_type"),
                    get_s(item, "aggregate_id"),
                    get_n::<i64>(item, "wake_at"),
                ) else {
                    return Err(StoreError::Corrupt {
                        stream: StreamId::new("wake", shard),
                        reason: format!("wake-up item without its stream: {:?}", item.get("pk")),
                    });
                };
                due.push(DueStream {
                    stream: StreamId::new(kind, id),
                    wake_at: Timestamp(at),
                });
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() && due.len() < limit => start = Some(key.clone()),
                _ => break,
            }
        }
        Ok(due)
    }

    async fn get_single(
        &self,
        pk: String,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", n(0))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", &e))?;
        Ok(out.item)
    }

    fn event_item(&self, event: &StoredEvent) -> Result<TransactWriteItem, StoreError> {
        let stream = event.stream_id();
        let envelope = String::from_utf8(event.to_json()).map_err(|e| build_error(&stream, e))?;
        if envelope.len() > MAX_ENVELOPE_BYTES {
            return Err(StoreError::InvalidAppend {
                stream,
                reason: format!(
                    "event {} is {} bytes, over the {MAX_ENVELOPE_BYTES}-byte item limit",
                    event.event_id,
                    envelope.len()
                ),
            });
        }
        let put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(stream_key(&stream)))
            .item("sk", n(event.sequence))
            .item("kind", s("event"))
            .item("event_id", s(&event.event_id))
            .item("event_type", s(&event.event_type))
            .item("envelope", s(envelope))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| build_error(&stream, e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The put or delete of the stream's wake-up item that the request asks for, if any.
    fn wake_item(&self, request: &AppendRequest) -> Result<Option<TransactWriteItem>, StoreError> {
        Ok(match request.wake {
            Wake::Unchanged => None,
            Wake::At(at) => Some(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .item("pk", s(wake_key(&request.stream)))
                            .item("sk", n(0))
                            .item("kind", s("wake"))
                            .item("aggregate_type", s(&request.stream.aggregate_type))
                            .item("aggregate_id", s(&request.stream.aggregate_id))
                            .item("wake_shard", s(wake_shard(&request.stream)))
                            .item("wake_at", n(at.as_millis()))
                            .build()
                            .map_err(|e| build_error(&request.stream, e))?,
                    )
                    .build(),
            ),
            Wake::Never => Some(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.table)
                            .key("pk", s(wake_key(&request.stream)))
                            .key("sk", n(0))
                            .build()
                            .map_err(|e| build_error(&request.stream, e))?,
                    )
                    .build(),
            ),
        })
    }

    /// One stream's part of a transaction: its version check, its events, `keys` (the
    /// idempotency records this part carries) and its wake-up and snapshot items. Returns the
    /// range of the idempotency records among `items`.
    fn stream_items(
        &self,
        request: &AppendRequest,
        keys: &[&String],
        now: Timestamp,
        items: &mut Vec<TransactWriteItem>,
    ) -> Result<std::ops::Range<usize>, StoreError> {
        // Without this check a writer that believes the stream is longer than it is could
        // leave a gap; the conditional puts alone only catch writers that are behind. A
        // version this store reported cannot be ahead (streams only grow), so it goes unchecked.
        if request.expected_version > 0 && !request.expected_from_store {
            let check = ConditionCheck::builder()
                .table_name(&self.table)
                .key("pk", s(stream_key(&request.stream)))
                .key("sk", n(request.expected_version))
                .condition_expression("attribute_exists(pk)")
                .build()
                .map_err(|e| build_error(&request.stream, e))?;
            items.push(TransactWriteItem::builder().condition_check(check).build());
        }
        for event in &request.events {
            items.push(self.event_item(event)?);
        }
        if request.events.is_empty() {
            // Recording a key without events says "decided on this version, nothing to add":
            // true only if no event came after it, which the event puts would otherwise check.
            let check = ConditionCheck::builder()
                .table_name(&self.table)
                .key("pk", s(stream_key(&request.stream)))
                .key("sk", n(request.expected_version + 1))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| build_error(&request.stream, e))?;
            items.push(TransactWriteItem::builder().condition_check(check).build());
        }
        let first_processed = items.len();
        for key in keys {
            let expires = now.as_millis() / 1000 + PROCESSED_TTL_SECONDS;
            let put = Put::builder()
                .table_name(&self.table)
                .item("pk", s(processed_key(key)))
                .item("sk", n(0))
                .item("kind", s("processed"))
                .item("expires_at", n(expires))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| build_error(&request.stream, e))?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let processed = first_processed..items.len();
        if let Some(item) = self.wake_item(request)? {
            items.push(item);
        }
        if let Some(snapshot) = &request.snapshot {
            items.push(
                TransactWriteItem::builder()
                    .put(self.snapshot_put(snapshot)?)
                    .build(),
            );
        }
        Ok(processed)
    }

    /// The whole transaction of an append to `requests`' streams: their items in order, the
    /// ranges of the idempotency records, and each stream's range (to name the one that failed).
    fn transaction(
        &self,
        requests: &[AppendRequest],
        now: Timestamp,
    ) -> Result<Transaction, StoreError> {
        let mut items = Vec::new();
        let mut processed = Vec::new();
        let mut streams = Vec::with_capacity(requests.len());
        // DynamoDB refuses a transaction that touches one item twice; a key listed twice, in
        // one request or in two, is recorded once.
        let mut recorded: Vec<&String> = Vec::new();
        for request in requests {
            let start = items.len();
            let mut keys = Vec::with_capacity(request.idempotency_keys.len());
            for key in &request.idempotency_keys {
                if !recorded.contains(&key) {
                    recorded.push(key);
                    keys.push(key);
                }
            }
            processed.push(self.stream_items(request, &keys, now, &mut items)?);
            streams.push(start..items.len());
        }
        if items.len() > MAX_TRANSACTION_ITEMS {
            let events: usize = requests.iter().map(|r| r.events.len()).sum();
            return Err(StoreError::InvalidAppend {
                stream: requests[0].stream.clone(),
                reason: format!(
                    "{events} events in {} streams and {} keys need {} transaction items, DynamoDB allows {MAX_TRANSACTION_ITEMS}: append fewer at once",
                    requests.len(),
                    recorded.len(),
                    items.len()
                ),
            });
        }
        Ok(Transaction {
            items,
            processed,
            streams,
        })
    }

    /// The put of a snapshot item, in its stream's partition just after its version.
    fn snapshot_put(&self, snapshot: &Snapshot) -> Result<Put, StoreError> {
        let state =
            serde_json::to_string(&snapshot.state).map_err(|e| build_error(&snapshot.stream, e))?;
        Put::builder()
            .table_name(&self.table)
            .item("pk", s(stream_key(&snapshot.stream)))
            .item("sk", snapshot_sort_key(snapshot.version))
            .item("kind", s("snapshot"))
            .item("version", n(snapshot.version))
            .item("state_version", n(snapshot.state_version))
            .item("state", s(state))
            .item("taken_at", n(snapshot.taken_at.as_millis()))
            .build()
            .map_err(|e| build_error(&snapshot.stream, e))
    }

    /// Reads a snapshot item back.
    fn snapshot_of(
        stream: &StreamId,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<Snapshot, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt {
            stream: stream.clone(),
            reason: format!("snapshot item has no valid `{what}`"),
        };
        let state = get_s(item, "state").ok_or_else(|| corrupt("state"))?;
        Ok(Snapshot {
            stream: stream.clone(),
            version: get_n(item, "version").ok_or_else(|| corrupt("version"))?,
            state_version: get_n(item, "state_version").ok_or_else(|| corrupt("state_version"))?,
            state: serde_json::from_str(state).map_err(|_| corrupt("state"))?,
            taken_at: Timestamp(get_n(item, "taken_at").ok_or_else(|| corrupt("taken_at"))?),
        })
    }

    /// Reads an event item back.
    fn event_of(
        stream: &StreamId,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<StoredEvent, StoreError> {
        let envelope = get_s(item, "envelope").ok_or_else(|| StoreError::Corrupt {
            stream: stream.clone(),
            reason: format!("item {:?} has no envelope", item.get("sk")),
        })?;
        StoredEvent::from_json(envelope.as_bytes()).map_err(|e| StoreError::Corrupt {
            stream: stream.clone(),
            reason: e.to_string(),
        })
    }

    /// Reads `stream` newest first until `stop` says an item ends the read, or the stream
    /// does; the first page holds at most `first_page` items.
    async fn read_newest_first(
        &self,
        stream: &StreamId,
        first_page: Option<i32>,
        filter_snapshots: bool,
        mut visit: impl FnMut(&HashMap<String, AttributeValue>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        let mut limit = first_page;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(stream_key(stream)))
                .scan_index_forward(false)
                .consistent_read(true)
                .set_limit(limit.take())
                .set_exclusive_start_key(start.take());
            if filter_snapshots {
                query = query
                    .filter_expression("kind = :snapshot")
                    .expression_attribute_values(":snapshot", s("snapshot"));
            }
            let page = query.send().await.map_err(|e| unavailable("Query", &e))?;
            for item in page.items() {
                if visit(item)? {
                    return Ok(());
                }
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(()),
            }
        }
    }

    async fn conflict(&self, request: &AppendRequest) -> StoreError {
        self.push_back.conflict();
        let actual = self
            .current_version(&request.stream)
            .await
            .unwrap_or(request.expected_version + 1);
        StoreError::Conflict {
            stream: request.stream.clone(),
            expected: request.expected_version,
            actual,
        }
    }
}

impl EventStore for DynamoEventStore {
    async fn append_together(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<AppendOutcome, StoreError> {
        validate_together(&requests)?;
        let first = &requests[0];
        let version = first.expected_version + first.events.len() as u64;
        if requests
            .iter()
            .all(|r| r.events.is_empty() && r.idempotency_keys.is_empty() && r.snapshot.is_none())
        {
            return Ok(AppendOutcome::Appended { version });
        }
        let now = requests
            .iter()
            .find_map(|r| r.events.first())
            .map_or(Timestamp(0), |e| e.occurred_at);
        let transaction = self.transaction(&requests, now)?;
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(transaction.items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(AppendOutcome::Appended { version }),
            Err(SdkError::ServiceError(service)) => match service.err() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                    let reasons = cancelled.cancellation_reasons();
                    let failed = |i: usize| {
                        reasons
                            .get(i)
                            .and_then(|r| r.code())
                            .is_some_and(|code| code == "ConditionalCheckFailed")
                    };
                    if transaction
                        .processed
                        .iter()
                        .any(|range| range.clone().any(failed))
                    {
                        return Ok(AppendOutcome::Duplicate);
                    }
                    if let Some(conflicted) = transaction
                        .streams
                        .iter()
                        .position(|range| range.clone().any(failed))
                    {
                        return Err(self.conflict(&requests[conflicted]).await);
                    }
                    // Cancelled for contention or throttling, not for a broken condition.
                    let codes: Vec<&str> = reasons.iter().filter_map(|r| r.code()).collect();
                    Err(StoreError::Unavailable {
                        reason: format!("TransactWriteItems cancelled: {codes:?}"),
                        transience: Transience::Transient,
                    })
                }
                _ => Err(unavailable(
                    "TransactWriteItems",
                    &SdkError::ServiceError(service),
                )),
            },
            Err(other) => Err(unavailable("TransactWriteItems", &other)),
        }
    }

    async fn load(
        &self,
        stream: &StreamId,
        after_version: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk > :after")
                .expression_attribute_values(":pk", s(stream_key(stream)))
                .expression_attribute_values(":after", n(after_version))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("Query", &e))?;
            for item in page.items().iter().filter(|item| !is_snapshot(item)) {
                events.push(Self::event_of(stream, item)?);
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        Ok(events)
    }

    async fn due(
        &self,
        aggregate_type: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueStream>, StoreError> {
        let mut due = Vec::new();
        for shard in 0..WAKE_SHARDS {
            let shard = format!("{aggregate_type}#{shard}");
            due.extend(self.due_in_shard(&shard, now, limit).await?);
        }
        Ok(DueStream::earliest(due, limit))
    }

    async fn is_processed(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.get_single(processed_key(key)).await?.is_some())
    }

    async fn load_latest(
        &self,
        stream: &StreamId,
        tail_hint: u64,
    ) -> Result<(Option<Snapshot>, Vec<StoredEvent>), StoreError> {
        let mut snapshot = None;
        let mut events = Vec::new();
        // The tail and the snapshot below it fit the first page when the hint is right; a
        // stream without a snapshot is read on, whole.
        let first_page = i32::try_from(tail_hint.saturating_add(2)).unwrap_or(i32::MAX);
        self.read_newest_first(stream, Some(first_page), false, |item| {
            if is_snapshot(item) {
                snapshot = Some(Self::snapshot_of(stream, item)?);
                return Ok(true);
            }
            events.push(Self::event_of(stream, item)?);
            Ok(false)
        })
        .await?;
        events.reverse();
        Ok((snapshot, events))
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        let mut snapshot = None;
        self.read_newest_first(stream, None, true, |item| {
            snapshot = Some(Self::snapshot_of(stream, item)?);
            Ok(true)
        })
        .await?;
        Ok(snapshot)
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        // Each version has its own item and readers take the newest, so a late write of an
        // older snapshot can never hide a newer one.
        let put = self.snapshot_put(&snapshot)?;
        self.client
            .put_item()
            .set_item(Some(put.item))
            .table_name(&self.table)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| unavailable("PutItem", &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagaflow_eventsourcing::event::{event_id_for, EventEnvelope};

    fn offline_store() -> DynamoEventStore {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        DynamoEventStore::new(Client::from_conf(config), "t-events")
    }

    fn request(expected_from_store: bool) -> AppendRequest {
        let stream = StreamId::new("order", "o-1");
        AppendRequest {
            stream: stream.clone(),
            expected_version: 4,
            expected_from_store,
            events: vec![EventEnvelope {
                trace_context: None,
                event_id: event_id_for(&stream, 5),
                aggregate_type: "order".into(),
                aggregate_id: "o-1".into(),
                sequence: 5,
                event_type: "order.completed".into(),
                schema_version: 1,
                occurred_at: Timestamp(1),
                correlation_id: "o-1".into(),
                causation_id: "c-1".into(),
                payload: serde_json::json!({}),
            }],
            idempotency_keys: vec!["command:c-1".into()],
            wake: Wake::Unchanged,
            snapshot: None,
        }
    }

    fn checks(transaction: &Transaction) -> usize {
        transaction
            .items
            .iter()
            .filter(|item| item.condition_check.is_some())
            .count()
    }

    #[test]
    fn a_version_the_store_reported_is_not_checked_again() {
        let store = offline_store();
        let claimed = store.transaction(&[request(false)], Timestamp(1)).unwrap();
        assert_eq!((claimed.items.len(), checks(&claimed)), (3, 1));
        let reported = store.transaction(&[request(true)], Timestamp(1)).unwrap();
        assert_eq!((reported.items.len(), checks(&reported)), (2, 0));
        // Writing nothing still holds the stream to its version, reported or not.
        let mut empty = request(true);
        empty.events.clear();
        let held = store.transaction(&[empty], Timestamp(1)).unwrap();
        assert_eq!((held.items.len(), checks(&held)), (2, 1));
    }
}
