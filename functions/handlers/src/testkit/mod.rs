//! Test kit (feature `testkit`): the catalogue of records that can never succeed, the harness
//! that delivers a committed trigger payload to a function twice, and the EMF line check.

pub mod bad_input;
pub mod emf;
pub mod fixture_run;
