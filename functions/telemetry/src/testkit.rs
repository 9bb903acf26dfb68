//! Reading a run's spans back: [`OrderTraces`] checks that each order is one trace, that no
//! span of one order sits in another's, and that every parent link follows the message flow:
//! a handler's span is the child of the relay span that published its message, and a relay
//! span is the child of the span that recorded the event it publishes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::SpanData;

/// The spans of a run, by id.
pub struct OrderTraces {
    spans: HashMap<SpanId, SpanData>,
}

/// One span as the checks read it.
struct Read<'a> {
    span: &'a SpanData,
}

impl Read<'_> {
    fn attr(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
            .filter(|v| !v.is_empty())
    }

    fn describe(&self) -> String {
        format!(
            "`{}` (message {}, event {}, causation {})",
            self.span.name,
            self.attr("message_id").unwrap_or_default(),
            self.attr("event_id").unwrap_or_default(),
            self.attr("causation_id").unwrap_or_default()
        )
    }
}

impl OrderTraces {
    /// The spans an exporter received.
    pub fn new(spans: Vec<SpanData>) -> Self {
        Self {
            spans: spans
                .into_iter()
                .map(|s| (s.span_context.span_id(), s))
                .collect(),
        }
    }

    fn of_order(&self, order: &str) -> Vec<Read<'_>> {
        self.spans
            .values()
            .map(|span| Read { span })
            .filter(|r| r.attr("correlation_id").as_deref() == Some(order))
            .collect()
    }

    /// The one trace of `order`'s spans; panics, saying why, unless they share exactly one.
    pub fn trace_of(&self, order: &str) -> TraceId {
        let spans = self.of_order(order);
        assert!(!spans.is_empty(), "no span names order {order}");
        let traces: BTreeSet<String> = spans
            .iter()
            .map(|r| r.span.span_context.trace_id().to_string())
            .collect();
        assert_eq!(traces.len(), 1, "order {order} is in traces {traces:?}");
        spans[0].span.span_context.trace_id()
    }

    /// The functions whose spans handled one of `order`'s records (`function` attribute).
    pub fn functions_of(&self, order: &str) -> BTreeSet<String> {
        self.of_order(order)
            .iter()
            .filter_map(|r| r.attr("function"))
            .collect()
    }

    /// Checks `order`'s trace: nothing of another order in it, and every parent link following
    /// the messages (see the module). Returns how many spans the trace holds.
    pub fn check_order(&self, order: &str) -> usize {
        let trace = self.trace_of(order);
        let in_trace: Vec<Read<'_>> = self
            .spans
            .values()
            .filter(|s| s.span_context.trace_id() == trace)
            .map(|span| Read { span })
            .collect();
        for read in &in_trace {
            if let Some(other) = read.attr("correlation_id") {
                assert_eq!(
                    other,
                    order,
                    "{} of order {other} is in {order}'s trace",
                    read.describe()
                );
            }
        }
        let handled: BTreeSet<String> = in_trace
            .iter()
            .filter_map(|r| r.attr("message_id"))
            .collect();
        let published: BTreeSet<String> =
            in_trace.iter().filter_map(|r| r.attr("event_id")).collect();
        for read in &in_trace {
            let Some(parent) = self
                .spans
                .get(&read.span.parent_span_id)
                .map(|span| Read { span })
            else {
                // A root handles what came from outside: its cause is nothing this trace sent.
                let cause = read.attr("causation_id").unwrap_or_default();
                assert!(
                    !published.contains(&cause) && !handled.contains(&cause),
                    "{} has no parent span, yet its cause {cause} is in the trace",
                    read.describe()
                );
                continue;
            };
            match read.span.name.as_ref() {
                "record" => {
                    // A record's span is the child of the relay span that published it: the
                    // event itself, or the saga event that carried the command.
                    let published_by = parent.attr("event_id");
                    assert!(
                        published_by.is_some()
                            && (published_by == read.attr("message_id")
                                || published_by == read.attr("causation_id")),
                        "{} is the child of {}, which did not publish it",
                        read.describe(),
                        parent.describe()
                    );
                }
                "publish" => {
                    // A relay span is the child of the span that recorded its event: the event
                    // was caused by the message that span handled, or by a command that span
                    // issued in process (a saga start, a choreography reaction).
                    let cause = read.attr("causation_id").unwrap_or_default();
                    assert!(
                        parent.span.name != "publish"
                            && (parent.attr("message_id").as_deref() == Some(cause.as_str())
                                || !handled.contains(&cause)),
                        "{} is the child of {}, which did not record it",
                        read.describe(),
                        parent.describe()
                    );
                }
                _ => {}
            }
        }
        in_trace.len()
    }

    /// How many spans each span name has in `order`'s trace, for a failure message or a note.
    pub fn census(&self, order: &str) -> BTreeMap<String, usize> {
        let mut census = BTreeMap::new();
        for read in self.of_order(order) {
            *census.entry(read.span.name.to_string()).or_default() += 1;
        }
        census
    }
}
