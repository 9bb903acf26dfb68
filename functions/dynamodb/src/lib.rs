//! Adapters from the sagaflow core to AWS: the DynamoDB event store, the analytics read model's
//! table, table setup, configuration.

#![warn(missing_docs)]

pub mod analytics_store;
mod attributes;
pub mod config;
pub mod dynamo_store;
pub mod push_back;
pub mod tables;

pub use analytics_store::DynamoAnalyticsStore;
pub use config::{aws_shared_config, counting_dynamodb_client, dynamodb_client, AdapterConfig};
pub use dynamo_store::DynamoEventStore;
pub use push_back::{PushBack, PushBackCounts};
