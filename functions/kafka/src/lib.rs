//! sagaflow on Kafka: topic names, the record format of events and commands, an idempotent
//! producer, and topic creation.

#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod producer;
pub mod records;
pub mod topics;

pub use config::KafkaConfig;
pub use producer::{EventPublisher, PublishError};
pub use records::{command_record, event_record, OutboundRecord};
pub use topics::Topics;
