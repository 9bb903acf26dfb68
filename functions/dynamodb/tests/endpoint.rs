//! What sagaflow relies on the DynamoDB endpoint to do as DynamoDB does, checked against the
//! local endpoint the tests run on. Each test names a behaviour that moto, the endpoint these
//! tests used to run on, got wrong: a local endpoint that got it wrong again would let the
//! store's tests pass on a DynamoDB that does not exist.

mod common;

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodbstreams::types::{OperationType, ShardIteratorType};
use sagaflow_dynamodb::dynamo_store::MAX_TRANSACTION_ITEMS;
use sagaflow_dynamodb::tables::ensure_events_table;

/// A client and a fresh events table (with its stream).
async fn table(name: &str) -> (Client, String) {
    let client = common::local_client().await;
    let table = common::table_name("endpoint", name);
    ensure_events_table(&client, &table).await.unwrap();
    (client, table)
}

fn key(pk: &str, sk: u64) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_string(), AttributeValue::S(pk.into())),
        ("sk".to_string(), AttributeValue::N(sk.to_string())),
    ])
}

fn put(table: &str, pk: &str, sk: u64) -> Put {
    Put::builder()
        .table_name(table)
        .set_item(Some(key(pk, sk)))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .unwrap()
}

/// A counter at `pk`, raised by one: applied twice, it reads 2.
fn raise(table: &str, pk: &str) -> TransactWriteItem {
    TransactWriteItem::builder()
        .update(
            Update::builder()
                .table_name(table)
                .set_key(Some(key(pk, 0)))
                .update_expression("ADD n :one")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .build()
                .unwrap(),
        )
        .build()
}

async fn counter(client: &Client, table: &str, pk: &str) -> Option<String> {
    let item = client
        .get_item()
        .table_name(table)
        .set_key(Some(key(pk, 0)))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    item.item()
        .and_then(|i| i.get("n"))
        .and_then(|n| n.as_n().ok())
        .cloned()
}

/// Every record of the table's stream, as (operation, partition key).
async fn stream_records(client: &Client, table: &str) -> Vec<(OperationType, String)> {
    let streams = aws_sdk_dynamodbstreams::Client::new(
        &aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await,
    );
    let described = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap();
    let arn = described
        .table()
        .and_then(|t| t.latest_stream_arn())
        .expect("the events table has a stream")
        .to_string();
    let stream = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap();
    let mut records = Vec::new();
    for shard in stream
        .stream_description()
        .map(|d| d.shards())
        .unwrap_or_default()
    {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard.shard_id().unwrap())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .map(str::to_string);
        // An open shard always hands back a next iterator: stop at the first empty page.
        while let Some(current) = iterator {
            let page = streams
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .unwrap();
            if page.records().is_empty() {
                break;
            }
            for record in page.records() {
                let pk = record
                    .dynamodb()
                    .and_then(|c| c.keys())
                    .and_then(|k| k.get("pk"))
                    .and_then(|v| match v {
                        aws_sdk_dynamodbstreams::types::AttributeValue::S(s) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                records.push((record.event_name().cloned().unwrap(), pk));
            }
            iterator = page.next_shard_iterator().map(str::to_string);
        }
    }
    records
}

/// The SDK sends a `ClientRequestToken` with every transaction and sends the same one again
/// when it retries (a throttled or timed-out request whose answer was lost): DynamoDB applies
/// such a transaction once. moto applied it twice.
#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn a_transaction_sent_again_with_its_token_is_applied_once() {
    let (client, table) = table("token").await;
    // Tokens live for ten minutes across the endpoint: each run of the test needs its own.
    let raise_with = |token: &'static str| {
        client
            .transact_write_items()
            .transact_items(raise(&table, "counter"))
            .client_request_token(format!("{token}-{}", std::process::id()))
            .send()
    };
    for _ in 0..2 {
        raise_with("same-request").await.unwrap();
    }
    assert_eq!(
        counter(&client, &table, "counter").await.as_deref(),
        Some("1")
    );
    // A new token is a new request.
    raise_with("new-request").await.unwrap();
    assert_eq!(
        counter(&client, &table, "counter").await.as_deref(),
        Some("2")
    );
}

/// DynamoDB refuses a batch of more than 25 writes and a transaction of more than 100 items,
/// which is why the store checks `MAX_TRANSACTION_ITEMS` itself. moto took 26 writes.
#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn batches_and_transactions_over_their_limits_are_refused() {
    let (client, table) = table("limits").await;
    let writes: Vec<WriteRequest> = (0..26)
        .map(|i| {
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(key("batch", i)))
                        .build()
                        .unwrap(),
                )
                .build()
        })
        .collect();
    let refused = client
        .batch_write_item()
        .request_items(&table, writes)
        .send()
        .await
        .expect_err("a 26-write batch is refused");
    assert_eq!(refused.code(), Some("ValidationException"), "{refused:?}");

    let items: Vec<TransactWriteItem> = (0..=MAX_TRANSACTION_ITEMS as u64)
        .map(|i| {
            TransactWriteItem::builder()
                .put(put(&table, "tx", i))
                .build()
        })
        .collect();
    let refused = client
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await
        .expect_err("a transaction over 100 items is refused");
    assert_eq!(refused.code(), Some("ValidationException"), "{refused:?}");
    let written = client
        .query()
        .table_name(&table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("tx".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(written.count(), 0, "a refused transaction writes nothing");
}

/// The relay publishes one Kafka record per stream record, so the stream must hold exactly
/// one record per applied write and none for a write DynamoDB refused. moto gave two INSERT
/// records for an update that created its item, and records for rejected writes.
#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn the_stream_holds_one_record_per_applied_write_and_none_for_refused_ones() {
    let (client, table) = table("stream").await;
    // An update that creates its item, then one that changes it.
    for _ in 0..2 {
        client
            .transact_write_items()
            .transact_items(raise(&table, "created-by-update"))
            .send()
            .await
            .unwrap();
    }
    // A put, then the same put refused by its condition, alone and inside a transaction.
    client
        .put_item()
        .table_name(&table)
        .set_item(Some(key("put", 1)))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .unwrap();
    let refused = client
        .put_item()
        .table_name(&table)
        .set_item(Some(key("put", 1)))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .expect_err("the condition refuses the second put");
    assert_eq!(refused.code(), Some("ConditionalCheckFailedException"));
    let cancelled = client
        .transact_write_items()
        .transact_items(
            TransactWriteItem::builder()
                .put(put(&table, "never", 1))
                .build(),
        )
        .transact_items(
            TransactWriteItem::builder()
                .put(put(&table, "put", 1))
                .build(),
        )
        .send()
        .await
        .expect_err("the transaction is cancelled by its second item");
    assert_eq!(cancelled.code(), Some("TransactionCanceledException"));

    let records = stream_records(&client, &table).await;
    assert_eq!(
        records,
        vec![
            (OperationType::Insert, "created-by-update".to_string()),
            (OperationType::Modify, "created-by-update".to_string()),
            (OperationType::Insert, "put".to_string()),
        ]
    );
}

/// An item over 400 KB is refused, so the store must keep events below it. moto's limit
/// checks were not the service's.
#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn an_item_over_400_kb_is_refused() {
    let (client, table) = table("size").await;
    let mut item = key("big", 1);
    item.insert("blob".into(), AttributeValue::S("x".repeat(410 * 1024)));
    let refused = client
        .put_item()
        .table_name(&table)
        .set_item(Some(item))
        .send()
        .await
        .expect_err("an item over 400 KB is refused");
    assert_eq!(refused.code(), Some("ValidationException"), "{refused:?}");
}

/// A query page stops at 1 MB of items, however many match: 30 items of 100 KB take more than
/// one page, and the items of every page together are all of them. How many fit in the first
/// page differs between DynamoDB, DynamoDB Local, moto and dynoxide, so only the cut itself is
/// checked: code that pages must never assume a page size.
#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn a_query_page_is_cut_at_one_megabyte() {
    let (client, table) = table("pages").await;
    let blob = "y".repeat(100 * 1024);
    for sk in 1..=30 {
        let mut item = key("pages", sk);
        item.insert("blob".into(), AttributeValue::S(blob.clone()));
        client
            .put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
    let (mut pages, mut seen, mut start) = (0, 0, None);
    loop {
        let page = client
            .query()
            .table_name(&table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S("pages".into()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(
            page.count() <= 11,
            "a page holds at most 1 MB: {} items",
            page.count()
        );
        seen += page.count();
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    assert!(pages >= 3, "30 items of 100 KB took {pages} pages");
    assert_eq!(seen, 30);
}
