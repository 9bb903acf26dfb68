//! Event sourcing and CQRS building blocks: events and their upcasters, aggregates, the event
//! store contract and its in-memory store, the repository with optimistic concurrency and
//! snapshots, command envelopes, the mediator, the pipeline of stages and the clock.
//!
//! Nothing here does I/O or knows the order domain: adapters in `functions/` implement
//! [`store::EventStore`] over DynamoDB and carry [`event::StoredEvent`]s over Kafka.

#![warn(missing_docs)]

pub mod aggregate;
pub mod clock;
pub mod command;
pub mod event;
pub mod mediator;
pub mod pipeline;
pub mod repository;
pub mod store;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod transience;
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
pub use transience::{Classified, Transience};
pub use upcast::Upcasters;
