//! The request counter reports the units DynamoDB bills, not the bytes a request sends: an
//! update is charged for the whole item it changes, and a transaction twice per KB of each.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TransactWriteItem,
};
use sagaflow_local_trigger::RequestCounter;

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn an_update_is_counted_for_the_whole_item_it_changes() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: start the local servers with `make up` (or run `make test`)"
    );
    let counter = RequestCounter::new();
    let shared = sagaflow_dynamodb::config::aws_shared_config().await;
    let config = aws_sdk_dynamodb::config::Builder::from(&shared)
        .interceptor(counter.interceptor())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let table = format!("request-count-{}", std::process::id());
    client
        .create_table()
        .table_name(&table)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    counter.reset();

    // A 2.5 KB item, then an update that sends a few bytes: both are billed 3 units.
    client
        .put_item()
        .table_name(&table)
        .item("pk", s("big"))
        .item("body", s(&"x".repeat(2500)))
        .send()
        .await
        .unwrap();
    client
        .update_item()
        .table_name(&table)
        .key("pk", s("big"))
        .update_expression("SET n = :n")
        .expression_attribute_values(":n", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    // A transaction of the small item and a new one: 2 units per KB of each item.
    let put = |pk: &str| {
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&table)
                    .item("pk", s(pk))
                    .build()
                    .unwrap(),
            )
            .build()
    };
    client
        .transact_write_items()
        .transact_items(put("small-1"))
        .transact_items(put("small-2"))
        .send()
        .await
        .unwrap();
    client
        .get_item()
        .table_name(&table)
        .key("pk", s("big"))
        .consistent_read(true)
        .send()
        .await
        .unwrap();

    let counts = counter.snapshot();
    assert_eq!(counts["PutItem"].write_units, 3.0);
    assert_eq!(counts["UpdateItem"].write_units, 3.0);
    assert_eq!(counts["TransactWriteItems"].write_units, 4.0);
    assert_eq!(counts["GetItem"].read_units, 1.0);
    assert!(counts.values().all(|c| c.estimated == 0), "{counts:?}");
    assert_eq!(counter.write_units_by_table()[&table], 10.0);
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
}
