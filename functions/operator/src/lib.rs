//! The `sagaflow` command's parts: an order's timeline across its streams ([`timeline`]) and the
//! dead-letter topic read, shown and redriven ([`letters`]), over the same tables and topics the
//! functions use, configured the same way ([`settings`]).

#![warn(missing_docs)]

pub mod error;
pub mod letters;
pub mod settings;
pub mod time;
pub mod timeline;

pub use error::OperatorError;
