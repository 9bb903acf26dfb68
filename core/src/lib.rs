//! The pure domain of sagaflow: every decision is a function of state, input and time.
//!
//! Nothing here does I/O: adapters in `functions/` implement [`store::EventStore`] over
//! DynamoDB and carry [`event::StoredEvent`]s over Kafka; the core only decides.

#![warn(missing_docs)]

pub mod aggregate;
pub mod clock;
pub mod command;
pub mod domain;
pub mod event;
pub mod flow;
pub mod mediator;
pub mod pipeline;
pub mod projection;
pub mod repository;
pub mod saga;
pub mod store;
pub mod testing;
pub mod upcast;

pub use aggregate::Aggregate;
pub use event::{
    CommandMeta, DecodeError, DomainEvent, EventEnvelope, StoredEvent, StreamId, Timestamp,
};
pub use repository::{CommandOutcome, ConflictRetry, Loaded, Repository, RepositoryError};
pub use store::{
    AppendOutcome, AppendRequest, DueStream, EventStore, InMemoryEventStore, Snapshot, StoreError,
    Wake,
};
pub use upcast::Upcasters;
