//! Test kit (feature `testkit`): given/when/then for aggregates, a request-counting store, and
//! the event store scenarios written once and run against every backend.

mod counting;
mod fixture;
pub mod store_scenarios;

pub use counting::CountingStore;
pub use fixture::{AggregateFixture, AggregateResult};
