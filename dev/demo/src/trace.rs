//! `--trace ORDER`: every log line the functions wrote about one order, in the order they were
//! written: each record done, retried or dead-lettered, and each saga transition, at DEBUG.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// The lines of one order, collected as the functions write them.
#[derive(Clone)]
pub struct OrderTrace {
    order_id: String,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl OrderTrace {
    /// Starts collecting the lines of `order_id` for the rest of the process.
    pub fn install(order_id: &str) -> Result<Self, String> {
        let trace = Self {
            order_id: order_id.to_string(),
            lines: Arc::default(),
        };
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(trace.clone()))
            .map_err(|e| e.to_string())?;
        Ok(trace)
    }

    /// Prints what was collected, one JSON line each.
    pub fn print(&self) {
        let lines = self.lines.lock().map(|l| l.clone()).unwrap_or_default();
        println!(
            "\nLog lines of {} ({}), as the functions wrote them:",
            self.order_id,
            lines.len()
        );
        for line in lines {
            println!("  {line}");
        }
    }
}

impl<S: Subscriber> Layer<S> for OrderTrace {
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        metadata.target().starts_with("sagaflow") && *metadata.level() <= tracing::Level::DEBUG
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let fields = sagaflow_handlers::log::fields(event);
        let of_order = ["correlation_id", "saga_id"]
            .iter()
            .any(|key| fields.get(*key).and_then(Value::as_str) == Some(&self.order_id));
        if of_order {
            if let Ok(mut lines) = self.lines.lock() {
                lines.push(Value::Object(fields));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_traced_orders_lines_are_kept_debug_ones_included() {
        let trace = OrderTrace {
            order_id: "ord-1".into(),
            lines: Arc::default(),
        };
        let subscriber = tracing_subscriber::registry().with(trace.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(correlation_id = "ord-1", "record done");
            tracing::info!(saga_id = "ord-1", "saga transition");
            tracing::error!(correlation_id = "ord-2", "record dead-lettered");
            tracing::trace!(correlation_id = "ord-1", "below DEBUG");
        });
        let lines = trace.lines.lock().unwrap().clone();
        let messages: Vec<&str> = lines
            .iter()
            .map(|l| l["message"].as_str().unwrap())
            .collect();
        assert_eq!(messages, ["record done", "saga transition"]);
    }
}
