//! The order domain: orders, payments, inventory and shipments (`domain`), how the services
//! connect (`flow`: intake, choreography, the order sagas, the command handler) and the
//! analytics read model (`projection`). Every decision is a function of state, input and time.

#![warn(missing_docs)]

pub mod domain;
pub mod flow;
pub mod projection;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
