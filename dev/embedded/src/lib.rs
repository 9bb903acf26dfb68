//! sagaflow on embedded defaults, for `make run` and the tests that need no servers: the
//! deployed handlers of `sagaflow-handlers`, unchanged, over the in-memory event store and read
//! model and an in-process broker that hands each function Kafka trigger batches (per-partition
//! order, batching, at-least-once with seeded lost commits, the partial batch response
//! honoured, the dead-letter topic). The relay is the Lambda relay fed by the store's change
//! feed; the deadline timer is the deployed timer, run on the simulated clock.
//!
//! No AWS SDK and no Kafka client are built for it.

#![warn(missing_docs)]

pub mod broker;
pub mod front_door;
pub mod random;
pub mod system;
pub mod world;

pub use broker::{BrokerConfig, BrokerStats, InProcessBroker, Latency};
pub use front_door::{
    front_door, CancelOrderCommand, GetStockLevels, PlaceError, PlaceOrderCommand, Placement,
};
pub use sagaflow_records::Topics;
pub use system::{DeadLetterRecord, EmbeddedConfig, EmbeddedError, EmbeddedSystem, RunStats};
