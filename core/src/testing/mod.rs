//! Test fixtures shared by the core and the adapters: given/when/then for aggregates and sagas,
//! and event store scenarios written once and run against every backend.

mod fixture;
pub mod store_scenarios;

pub use fixture::{AggregateFixture, AggregateResult};
