//! Between a record's `traceparent` and the `tracing` span that handles it.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use sagaflow_records::TraceParent;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes `span` a child of the remote span `parent` names, in `parent`'s trace; must be called
/// before the span is first entered. Returns false when there is nothing to continue: no
/// OpenTelemetry layer is installed, or the span is disabled.
pub fn continue_trace(span: &Span, parent: &TraceParent) -> bool {
    let flags = if parent.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        flags,
        true,
        TraceState::default(),
    );
    span.set_parent(Context::new().with_remote_span_context(remote))
        .is_ok()
}

/// The context of `span` as the `traceparent` of what it sends, or `None` when the span has
/// none (no OpenTelemetry layer is installed).
pub fn traceparent_of(span: &Span) -> Option<TraceParent> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| TraceParent {
        trace_id: span_context.trace_id().to_bytes(),
        span_id: span_context.span_id().to_bytes(),
        sampled: span_context.is_sampled(),
    })
}
