//! Creating the tables the adapters use, for local endpoints and tests; `infra/` declares the
//! same keys for AWS.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

use crate::dynamo_store::WAKE_INDEX;

/// Why a table could not be made ready.
#[derive(Debug, thiserror::Error)]
#[error("cannot create table {table}: {reason}")]
pub struct TableError {
    /// The table.
    pub table: String,
    /// What DynamoDB said.
    pub reason: String,
}

/// Creates the events table (`pk` string, `sk` number, new-image stream, TTL on `expires_at`,
/// and the sparse wake-up index on `wake_shard`/`wake_at`) unless it exists.
pub async fn ensure_events_table(client: &Client, table: &str) -> Result<(), TableError> {
    let err = |reason: String| TableError {
        table: table.to_string(),
        reason,
    };
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .map_err(|e| err(e.to_string()))
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| err(e.to_string()))
    };
    let created = client
        .create_table()
        .table_name(table)
        .attribute_definitions(attribute("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("sk", ScalarAttributeType::N)?)
        .attribute_definitions(attribute("wake_shard", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("wake_at", ScalarAttributeType::N)?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(WAKE_INDEX)
                .key_schema(key("wake_shard", KeyType::Hash)?)
                .key_schema(key("wake_at", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .non_key_attributes("aggregate_type")
                        .non_key_attributes("aggregate_id")
                        .build(),
                )
                .build()
                .map_err(|e| err(e.to_string()))?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .map_err(|e| err(e.to_string()))?,
        )
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(SdkError::ServiceError(e)) if e.err().is_resource_in_use_exception() => return Ok(()),
        Err(e) => return Err(err(format!("{e:?}"))),
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()
                .map_err(|e| err(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| err(format!("{e:?}")))?;
    Ok(())
}

/// Creates the analytics table (`pk` string, no sort key, no stream) unless it exists.
pub async fn ensure_analytics_table(client: &Client, table: &str) -> Result<(), TableError> {
    let err = |reason: String| TableError {
        table: table.to_string(),
        reason,
    };
    let created = client
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| err(e.to_string()))?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| err(e.to_string()))?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(SdkError::ServiceError(e)) if e.err().is_resource_in_use_exception() => Ok(()),
        Err(e) => Err(err(format!("{e:?}"))),
    }
}
