//! Adapters from the sagaflow core to AWS: the DynamoDB event store, table setup, configuration.

#![warn(missing_docs)]

pub mod config;
pub mod dynamo_store;
pub mod tables;

pub use config::{dynamodb_client, AdapterConfig};
pub use dynamo_store::DynamoEventStore;
