//! sagaflow on Kafka through rdkafka: the idempotent producer (a [`sagaflow_records::Publisher`]),
//! topic creation and the client settings. The record format itself is `sagaflow-records`,
//! re-exported here.

#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod msk_iam;
pub mod producer;

pub use config::KafkaConfig;
pub use producer::{EventPublisher, PublishError};
pub use sagaflow_records::{command_record, event_record, records, topics, OutboundRecord, Topics};
