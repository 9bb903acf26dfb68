//! Test kit (feature `testkit`): the catalogue of records that can never succeed, and the
//! harness that delivers a committed trigger payload to a function twice.

pub mod bad_input;
pub mod fixture_run;
