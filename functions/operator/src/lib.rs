//! The `sagaflow` command's parts: an order's timeline across its streams ([`timeline`]) and the
//! dead-letter topic read, shown and redriven ([`letters`]), over the same tables and topics the
//! functions use, configured the same way ([`settings`]); the sagas that need a person
//! ([`sagas`]); the analytics rebuilt and compared ([`replay`]); the front door ([`place`]); the orders ([`orders`]); and the web console over all of them
//! ([`console`]).

#![warn(missing_docs)]

pub mod console;
pub mod deployment;
pub mod error;
pub mod letters;
pub mod orders;
pub mod place;
pub mod replay;
pub mod sagas;
pub mod settings;
pub mod time;
pub mod timeline;

pub use error::OperatorError;
