//! Time as the handlers see it: a [`Clock`] they are given. Deployed functions read the wall
//! clock; `make run` gives them a [`SimClock`], whose time moves only when the runtime says so,
//! so a run is reproducible and saga deadlines can be reached without waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::event::Timestamp;

/// Where a handler reads the current time.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// A shared, manually advanced clock.
#[derive(Clone, Debug, Default)]
pub struct SimClock {
    millis: Arc<AtomicI64>,
}

impl SimClock {
    /// A clock showing `start`.
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            millis: Arc::new(AtomicI64::new(start.as_millis())),
        }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        Timestamp(self.millis.load(Ordering::SeqCst))
    }

    /// Moves time forward by `millis`.
    pub fn advance(&self, millis: i64) {
        self.millis.fetch_add(millis.max(0), Ordering::SeqCst);
    }

    /// Moves time forward to `at`, never backwards.
    pub fn advance_to(&self, at: Timestamp) {
        self.millis.fetch_max(at.as_millis(), Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        SimClock::now(self)
    }
}
