//! Counting DynamoDB requests by operation with an SDK interceptor: what a path costs in
//! requests and capacity units, measured on the wire rather than assumed.
//!
//! The interceptor asks every request for its consumed capacity (`ReturnConsumedCapacity`
//! `TOTAL`), so the units are what the endpoint billed: an update is charged for the whole
//! item it changes, not for the bytes it sent. A response without them (a cancelled
//! transaction, a failed condition) is counted with an estimate from the request's size.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeDeserializationInterceptorContextRef,
    BeforeSerializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::batch_get_item::{BatchGetItemInput, BatchGetItemOutput};
use aws_sdk_dynamodb::operation::batch_write_item::{BatchWriteItemInput, BatchWriteItemOutput};
use aws_sdk_dynamodb::operation::delete_item::{DeleteItemInput, DeleteItemOutput};
use aws_sdk_dynamodb::operation::get_item::{GetItemInput, GetItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
use aws_sdk_dynamodb::operation::scan::{ScanInput, ScanOutput};
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsInput, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_types::config_bag::{Storable, StoreReplace};

/// What one operation cost over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OperationCount {
    /// Requests sent (retries by the SDK included: each is billed).
    pub requests: u64,
    /// Items a write touched: the `TransactItems` of a transaction, one for a single-item write.
    pub items_written: u64,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes (for reads, about the size of the items returned).
    pub response_bytes: u64,
    /// Write request units: as the endpoint reported them, or estimated for a response
    /// without them (a transactional write costs two per KB per item).
    pub write_units: f64,
    /// Read request units: as the endpoint reported them, or estimated for a response
    /// without them (a consistent read costs one per 4 KB returned).
    pub read_units: f64,
    /// Responses whose units were estimated because the endpoint did not report them.
    pub estimated: u64,
    /// Time from sending each request to its response arriving, summed, in microseconds: over
    /// a run's wall time, how busy the endpoint kept the callers waiting.
    pub waited_micros: u64,
}

/// Which operation a request called, when it left and what it was estimated to write, kept in
/// the request's config bag until its response arrives (the request itself is gone by then).
#[derive(Clone, Debug)]
struct SentAt(std::time::Instant, String, WriteCost);

impl Storable for SentAt {
    type Storer = StoreReplace<Self>;
}

/// Counts every DynamoDB request of the clients it is installed on, by operation name.
#[derive(Clone, Debug, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, OperationCount>>>,
    write_units_by_table: Arc<Mutex<BTreeMap<String, f64>>>,
    transaction_items: Arc<Mutex<BTreeMap<String, (u64, u64)>>>,
}

impl RequestCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counts so far, by operation (`Query`, `TransactWriteItems`, ...).
    pub fn snapshot(&self) -> BTreeMap<String, OperationCount> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Write units so far, by the table written.
    pub fn write_units_by_table(&self) -> BTreeMap<String, f64> {
        self.write_units_by_table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The items transactions wrote so far, by what they write (an event, an idempotency
    /// record, a version check, ...): how many, and their write units estimated from each
    /// item's size in the request (an update is billed for the whole item, so its estimate is
    /// low; the endpoint reports units per table only).
    pub fn transaction_items(&self) -> BTreeMap<String, (u64, u64)> {
        self.transaction_items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Requests so far, every operation together.
    pub fn total_requests(&self) -> u64 {
        self.snapshot().values().map(|c| c.requests).sum()
    }

    /// Sets every count back to zero.
    pub fn reset(&self) {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.write_units_by_table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.transaction_items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The interceptor to add to a DynamoDB client's config.
    pub fn interceptor(&self) -> CountingInterceptor {
        CountingInterceptor {
            counter: self.clone(),
        }
    }

    fn add(&self, operation: &str, change: impl FnOnce(&mut OperationCount)) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        change(counts.entry(operation.to_string()).or_default());
    }
}

/// The interceptor of a [`RequestCounter`].
#[derive(Clone, Debug)]
pub struct CountingInterceptor {
    counter: RequestCounter,
}

/// The operation a request calls, from its `X-Amz-Target` (`DynamoDB_20120810.Query`).
fn operation(target: Option<&str>) -> &str {
    target
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("unknown")
}

/// What a write request costs by its own size: the items it touches, its estimated write
/// units, and the table it writes (every write of ours touches one table).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct WriteCost {
    items: u64,
    units: u64,
    table: Option<String>,
    /// A transaction's items by what they write ([`item_kind`]), each with its estimated units.
    kinds: Vec<(&'static str, u64)>,
}

/// What one item of a transaction writes, read from its key as sagaflow's tables lay them
/// out (`dynamo_store.rs`, `analytics_store.rs`).
fn item_kind(item: &serde_json::Value) -> &'static str {
    let Some((action, write)) = item.as_object().and_then(|o| o.iter().next()) else {
        return "unknown";
    };
    let fields = write.get("Item").or_else(|| write.get("Key"));
    let pk = fields
        .and_then(|f| f.get("pk"))
        .and_then(|pk| pk.get("S"))
        .and_then(|pk| pk.as_str())
        .unwrap_or("");
    let is_snapshot = fields
        .and_then(|f| f.get("kind"))
        .and_then(|k| k.get("S"))
        .is_some_and(|k| k == "snapshot");
    match (action.as_str(), pk) {
        (_, pk) if pk.starts_with("processed#") => "idempotency record",
        ("Delete", pk) if pk.starts_with("wake#") => "wake-up delete",
        (_, pk) if pk.starts_with("wake#") => "wake-up put",
        (_, pk) if pk.starts_with("stream#") => "analytics progress",
        (_, pk) if pk.starts_with("summary#") => "analytics counters",
        ("ConditionCheck", _) => "version check",
        ("Put", _) if is_snapshot => "snapshot",
        ("Put", _) => "event",
        _ => "other",
    }
}

/// Whole KB, at least one: the unit DynamoDB bills writes in.
fn kb(bytes: u64) -> u64 {
    bytes.div_ceil(1024).max(1)
}

/// The write cost of a request whose body is `body`: a transaction costs 2 per KB of each
/// item (each item's size taken from its part of the request), a single write 1 per KB.
fn write_cost(operation: &str, body: &[u8]) -> WriteCost {
    let parsed = || serde_json::from_slice::<serde_json::Value>(body).ok();
    let name = |v: Option<&serde_json::Value>| v.and_then(|t| t.as_str()).map(str::to_string);
    match operation {
        "TransactWriteItems" => {
            let parsed = parsed();
            let items = parsed
                .as_ref()
                .and_then(|v| v.get("TransactItems"))
                .and_then(|t| t.as_array());
            let table = items
                .and_then(|items| items.first())
                .and_then(|item| item.as_object())
                .and_then(|item| item.values().next())
                .and_then(|write| name(write.get("TableName")));
            let kinds: Vec<(&'static str, u64)> = items
                .map(|items| {
                    items
                        .iter()
                        .map(|item| (item_kind(item), 2 * kb(item.to_string().len() as u64)))
                        .collect()
                })
                .unwrap_or_default();
            WriteCost {
                items: kinds.len().max(1) as u64,
                units: kinds.iter().map(|(_, units)| units).sum::<u64>().max(2),
                table,
                kinds,
            }
        }
        "PutItem" | "UpdateItem" | "DeleteItem" => WriteCost {
            items: 1,
            units: kb(body.len() as u64),
            table: parsed().and_then(|v| name(v.get("TableName"))),
            kinds: Vec::new(),
        },
        "BatchWriteItem" => {
            let parsed = parsed();
            let tables = parsed
                .as_ref()
                .and_then(|v| v.get("RequestItems"))
                .and_then(|r| r.as_object());
            let items = tables
                .map(|tables| {
                    tables
                        .values()
                        .filter_map(|w| w.as_array().map(Vec::len))
                        .sum::<usize>()
                })
                .unwrap_or(1) as u64;
            WriteCost {
                items,
                units: items * kb(body.len() as u64 / items.max(1)),
                table: tables.and_then(|t| t.keys().next().cloned()),
                kinds: Vec::new(),
            }
        }
        _ => WriteCost::default(),
    }
}

const READS: [&str; 4] = ["Query", "GetItem", "Scan", "BatchGetItem"];

/// Sets `ReturnConsumedCapacity` `TOTAL` on the type-erased `$input` of whichever operation
/// it is (the input types are only named by the SDK's runtime crate, hence a macro).
macro_rules! ask_for_capacity {
    ($input:expr; $($operation:ty),*) => {
        $(if let Some(input) = $input.downcast_mut::<$operation>() {
            input.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
        })*
    };
}

/// The capacity the type-erased `$output` reports, per table, if it reports any.
macro_rules! reported_capacity {
    ($output:expr; one: $($one:ty),*; many: $($many:ty),*) => {{
        let mut reported: Vec<ConsumedCapacity> = Vec::new();
        $(if let Some(output) = $output.downcast_ref::<$one>() {
            reported.extend(output.consumed_capacity().cloned());
        })*
        $(if let Some(output) = $output.downcast_ref::<$many>() {
            reported.extend(output.consumed_capacity().iter().cloned());
        })*
        reported
    }};
}

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "sagaflow-request-counter"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        ask_for_capacity!(context.input_mut();
            TransactWriteItemsInput, PutItemInput, UpdateItemInput, DeleteItemInput,
            BatchWriteItemInput, QueryInput, GetItemInput, BatchGetItemInput, ScanInput);
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let operation = operation(request.headers().get("x-amz-target"));
        let body = request.body().bytes().unwrap_or_default();
        let cost = write_cost(operation, body);
        self.counter.add(operation, |c| {
            c.requests += 1;
            c.items_written += cost.items;
            c.request_bytes += body.len() as u64;
        });
        if !cost.kinds.is_empty() {
            let mut by_kind = self
                .counter
                .transaction_items
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (kind, units) in &cost.kinds {
                let entry = by_kind.entry((*kind).to_string()).or_default();
                entry.0 += 1;
                entry.1 += units;
            }
        }
        cfg.interceptor_state().store_put(SentAt(
            std::time::Instant::now(),
            operation.to_string(),
            cost,
        ));
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(SentAt(sent, operation, _)) = cfg.load::<SentAt>() else {
            return Ok(());
        };
        let waited = sent.elapsed().as_micros() as u64;
        // The body still streams at this point; its length is in the header.
        let bytes = context
            .response()
            .headers()
            .get("content-length")
            .and_then(|l| l.parse::<u64>().ok())
            .unwrap_or(0);
        self.counter.add(operation, |c| {
            c.waited_micros += waited;
            c.response_bytes += bytes;
        });
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(SentAt(_, operation, cost)) = cfg.load::<SentAt>() else {
            return Ok(());
        };
        let reported = match context.output_or_error() {
            Ok(output) => reported_capacity!(output;
                one: PutItemOutput, UpdateItemOutput, DeleteItemOutput, QueryOutput,
                    GetItemOutput, ScanOutput;
                many: TransactWriteItemsOutput, BatchWriteItemOutput, BatchGetItemOutput),
            Err(_) => Vec::new(),
        };
        let is_read = READS.contains(&operation.as_str());
        let mut by_table = self
            .counter
            .write_units_by_table
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if reported.is_empty() {
            // Billed all the same: a failed condition or a cancelled transaction consumes
            // what the write would have.
            let response_bytes = context
                .response()
                .body()
                .bytes()
                .map_or(0, |b| b.len() as u64);
            self.counter.add(operation, |c| {
                c.estimated += 1;
                if is_read {
                    c.read_units += response_bytes.div_ceil(4096).max(1) as f64;
                } else {
                    c.write_units += cost.units as f64;
                }
            });
            if let (false, Some(table)) = (is_read, &cost.table) {
                *by_table.entry(table.clone()).or_default() += cost.units as f64;
            }
            return Ok(());
        }
        for capacity in &reported {
            let units = capacity.capacity_units().unwrap_or(0.0);
            self.counter.add(operation, |c| {
                if is_read {
                    c.read_units += units;
                } else {
                    c.write_units += units;
                }
            });
            if let (false, Some(table)) = (is_read, capacity.table_name()) {
                *by_table.entry(table.to_string()).or_default() += units;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_and_units_come_from_the_request() {
        assert_eq!(operation(Some("DynamoDB_20120810.Query")), "Query");
        assert_eq!(operation(None), "unknown");
        let body = br#"{"TransactItems":[{"Put":{"TableName":"t-events","Item":{"pk":{"S":"order#o-1"}}}},{"Put":{"Item":{"pk":{"S":"processed#k"}}}},{"ConditionCheck":{"Key":{"pk":{"S":"order#o-1"}}}}]}"#;
        assert_eq!(
            write_cost("TransactWriteItems", body),
            WriteCost {
                items: 3,
                units: 6,
                table: Some("t-events".into()),
                kinds: vec![
                    ("event", 2),
                    ("idempotency record", 2),
                    ("version check", 2)
                ],
            }
        );
        // Each item is billed by its own size: a 1.5 KB event beside a small record.
        let envelope = "x".repeat(1500);
        let body = format!(
            r#"{{"TransactItems":[{{"Put":{{"TableName":"t-events","Item":{{"pk":{{"S":"order#o-1"}},"envelope":{{"S":"{envelope}"}}}}}}}},{{"Put":{{"Item":{{"pk":{{"S":"processed#k"}}}}}}}}]}}"#
        );
        let cost = write_cost("TransactWriteItems", body.as_bytes());
        assert_eq!(cost.kinds, vec![("event", 4), ("idempotency record", 2)]);
        assert_eq!(cost.units, 6);
        let big = vec![b' '; 3000];
        assert_eq!(
            write_cost("PutItem", &big),
            WriteCost {
                items: 1,
                units: 3,
                table: None,
                kinds: Vec::new(),
            }
        );
        let put = br#"{"TableName":"t-analytics","Item":{}}"#;
        assert_eq!(
            write_cost("PutItem", put).table.as_deref(),
            Some("t-analytics")
        );
        assert_eq!(write_cost("Query", body.as_bytes()), WriteCost::default());
    }
}
