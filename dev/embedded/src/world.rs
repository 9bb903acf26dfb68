//! The simulated world around the functions: what is slow. A payment provider that answers
//! late is a charge whose delivery to the payment function waits, as if the provider held the
//! function's call that long; the orchestrated saga's deadline fires meanwhile.

use std::sync::Arc;

use sagaflow_eventsourcing::command::CommandEnvelope;
use sagaflow_records::{OutboundRecord, Topics};

use crate::broker::Latency;

/// A payment method whose provider answers only after [`SLOW_PROVIDER_DELAY_MS`]: longer than
/// both attempts of the saga's payment step (30 s and 60 s at the default timeout), so an
/// orchestrated order with it times out and compensates.
pub const SLOW_METHOD: &str = "card-slow";
/// How long the slow provider holds a charge, in milliseconds.
pub const SLOW_PROVIDER_DELAY_MS: i64 = 150_000;

/// The latency of the slow provider: charges with [`SLOW_METHOD`] on the payment commands
/// topic of `topics` wait [`SLOW_PROVIDER_DELAY_MS`]; everything else goes at once.
pub fn slow_provider(topics: &Topics) -> Latency {
    let payment_commands = topics.commands("payment");
    Arc::new(move |record: &OutboundRecord| {
        if record.topic != payment_commands {
            return 0;
        }
        match CommandEnvelope::from_json(&record.value) {
            Ok(command)
                if command.command_type == "payment.charge"
                    && command.payload.get("method").and_then(|m| m.as_str())
                        == Some(SLOW_METHOD) =>
            {
                SLOW_PROVIDER_DELAY_MS
            }
            _ => 0,
        }
    })
}
