//! Test kit (feature `testkit`): the analytics read model scenarios every backend runs.

pub mod analytics_scenarios;
