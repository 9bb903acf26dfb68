//! sagaflow's records as they travel on Kafka, with no Kafka client: topic names, the key and
//! headers of each event and command, and [`Publisher`], the one thing a handler needs to send
//! them. rdkafka implements it on AWS and on the local servers (`sagaflow-kafka`), the
//! in-process broker in `make run` (`sagaflow-embedded`).

#![warn(missing_docs)]

pub mod publisher;
pub mod records;
pub mod topics;
pub mod topology;
pub mod trace_context;

pub use publisher::{PublishFailure, PublishFuture, Publisher};
pub use records::{command_record, event_record, OutboundRecord};
pub use topics::Topics;
pub use trace_context::TraceParent;
