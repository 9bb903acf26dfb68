//! Transient against permanent, said one way: every error that a handler may meet says
//! whether trying the same thing again may succeed, and the functions retry or dead-letter by
//! that alone.

use std::fmt;

/// Whether the same request may succeed if tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transience {
    /// It may: throttling, contention, a timeout, a backend that is down for now.
    Transient,
    /// It will not: the input is wrong, refused, or unreadable.
    Permanent,
}

impl fmt::Display for Transience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transience::Transient => "transient",
            Transience::Permanent => "permanent",
        })
    }
}

/// An error that says whether trying again may help.
pub trait Classified {
    /// Whether the failed request may succeed if tried again.
    fn transience(&self) -> Transience;

    /// Whether the failed request may succeed if tried again.
    fn is_transient(&self) -> bool {
        self.transience() == Transience::Transient
    }
}
