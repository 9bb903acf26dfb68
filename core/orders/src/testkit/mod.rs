//! Test kit (feature `testkit`): the analytics read model scenarios every backend runs, and the
//! one-stream warehouse the repository's tests and the bench use as their subject.

pub mod analytics_scenarios;
pub mod warehouse;
