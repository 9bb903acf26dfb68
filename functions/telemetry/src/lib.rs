//! sagaflow's traces. A record's `traceparent` header starts the span that handles it
//! ([`continue_trace`]); what that span records carries the span's own context
//! ([`traceparent_of`]), so the next function's span is its child and an order is one trace
//! from the front door to the last event.
//!
//! The bridge works on `tracing` spans and needs only the OpenTelemetry API: without an
//! OpenTelemetry layer in the subscriber (`make run`), spans have no context and records keep
//! their order's derived one. The `export` feature adds [`export::Tracing`], the SDK the
//! runtimes install, exporting over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

#![warn(missing_docs)]

#[cfg(feature = "export")]
pub mod export;
pub mod propagation;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use propagation::{continue_trace, traceparent_of};
pub use sagaflow_records::TraceParent;
