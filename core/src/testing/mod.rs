//! Test fixtures shared by the core and the adapters: given/when/then for aggregates and sagas,
//! and event store and read model scenarios written once and run against every backend.

pub mod analytics_scenarios;
mod counting;
mod fixture;
pub mod store_scenarios;

pub use counting::CountingStore;
pub use fixture::{AggregateFixture, AggregateResult};
