//! How the services connect: the command handler, choreography policies, the saga definitions.

pub mod choreography;
pub mod clock;
pub mod intake;
pub mod sagas;
pub mod services;
pub mod system;

pub use services::{FlowServices, HandledCommand, ServiceError};
