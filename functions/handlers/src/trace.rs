//! One span per record: it continues the trace the record's `traceparent` header names (or,
//! for a record without one, its order's derived trace), the record's message takes the span's
//! own context, and so does everything the handling records, so the next function's span is
//! this one's grandchild through the relay's. Retried and dead-lettered records end their span
//! as an error with the reason.

use sagaflow_lambda_kafka::{InboundRecord, RecordOutcome};
use sagaflow_records::records::TRACEPARENT_HEADER;
use sagaflow_records::TraceParent;
use sagaflow_telemetry::{continue_trace, traceparent_of};
use tracing::field::Empty;
use tracing::Span;

use crate::inbound::Inbound;
use crate::log::{self, MessageIds};
use crate::record_error::RecordError;

/// The span of one record's handling and the ids its log lines name.
#[derive(Debug)]
pub struct RecordTrace {
    ids: MessageIds,
    span: Span,
}

impl RecordTrace {
    /// Begins the span of `record` as `function` read it (`prepared`), and gives the message
    /// read the span's context, so what it causes continues this trace.
    pub fn begin(
        function: &str,
        record: &InboundRecord,
        prepared: &mut Result<Inbound, RecordError>,
    ) -> Self {
        let ids = MessageIds::of_prepared(record, prepared);
        let what = ids
            .message_type
            .as_deref()
            .unwrap_or(record.id.topic.as_str());
        let span = tracing::info_span!(
            "record",
            otel.name = %format_args!("{function} {what}"),
            otel.kind = "consumer",
            otel.status_code = Empty,
            otel.status_description = Empty,
            function,
            topic = %record.id.topic,
            partition = record.id.partition,
            offset = record.id.offset,
            message_id = ids.message_id.as_deref().unwrap_or(""),
            message_type = ids.message_type.as_deref().unwrap_or(""),
            correlation_id = ids.correlation_id.as_deref().unwrap_or(""),
            causation_id = ids.causation_id.as_deref().unwrap_or(""),
            trace_id = Empty,
        );
        if let Some(parent) = parent_of(record, &ids) {
            continue_trace(&span, &parent);
            span.record("trace_id", parent.trace_id_hex().as_str());
        }
        if let Ok(inbound) = prepared {
            inbound.set_trace_context(traceparent_of(&span).map(|t| t.to_string()));
        }
        Self { ids, span }
    }

    /// The span, to run the record's work in.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The ids its log lines name.
    pub fn ids(&self) -> &MessageIds {
        &self.ids
    }

    /// What the record's result means for it ([`log::settle`]), logged in its span; a failure
    /// ends the span as an error.
    pub fn settle(
        &self,
        function: &str,
        record: &InboundRecord,
        result: Result<(), RecordError>,
    ) -> RecordOutcome {
        if let Err(error) = &result {
            self.span.record("otel.status_code", "ERROR");
            let reason = log::without_quoted_values(&error.reason());
            self.span.record("otel.status_description", reason.as_str());
        }
        self.span
            .in_scope(|| log::settle(function, record, &self.ids, result))
    }
}

/// The context a record continues: its `traceparent` header when valid, else its order's
/// derived trace when the ids are known; a record with neither starts a trace of its own.
fn parent_of(record: &InboundRecord, ids: &MessageIds) -> Option<TraceParent> {
    let header = record
        .header_values(TRACEPARENT_HEADER)
        .next()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(TraceParent::parse);
    header.or_else(|| match (&ids.correlation_id, &ids.message_id) {
        (Some(correlation), Some(message)) => Some(TraceParent::derived(correlation, message)),
        _ => None,
    })
}

/// The span of a saga's deadline tick, in its order's trace (the saga's id is its order's).
pub fn tick_span(saga_id: &str) -> (Span, Option<String>) {
    let span = tracing::info_span!(
        "tick",
        otel.name = "deadline saga.tick",
        function = "deadline",
        saga_id,
        correlation_id = saga_id,
    );
    continue_trace(
        &span,
        &TraceParent::derived(saga_id, &format!("saga:{saga_id}")),
    );
    let context = traceparent_of(&span).map(|t| t.to_string());
    (span, context)
}
