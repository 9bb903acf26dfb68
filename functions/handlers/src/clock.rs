//! The wall clock, read at the edge: the core itself never reads time. Handlers take any
//! [`Clock`], so `make run` drives the same handlers on its simulated clock.

use std::time::{SystemTime, UNIX_EPOCH};

pub use sagaflow_eventsourcing::clock::Clock;
use sagaflow_eventsourcing::Timestamp;

/// Now, in milliseconds since the Unix epoch.
pub fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp(millis)
}

/// The system's wall clock: what every deployed function runs on.
#[derive(Clone, Copy, Debug, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now(&self) -> Timestamp {
        now()
    }
}
