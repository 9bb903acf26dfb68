//! A span continues the trace of the record it handles, and what it sends names it; spans leave
//! the process over OTLP/HTTP to the endpoint the environment names.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use opentelemetry_sdk::trace::InMemorySpanExporter;
use sagaflow_telemetry::export::Tracing;
use sagaflow_telemetry::{continue_trace, traceparent_of, TraceParent};
use tracing_subscriber::layer::SubscriberExt;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_span_continues_the_records_trace_and_what_it_sends_names_it_as_parent() {
    let exporter = InMemorySpanExporter::default();
    let tracing = Tracing::with_exporter("sagaflow-test", exporter.clone());
    let subscriber = tracing_subscriber::registry().with(tracing.layer());
    let parent = TraceParent::parse(PARENT).unwrap();
    let (sent, second_sent) = tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("record", message_id = "cmd-1");
        assert!(continue_trace(&span, &parent));
        let sent = traceparent_of(&span).unwrap();
        drop(span);
        let other = tracing::info_span!("record", message_id = "cmd-2");
        continue_trace(&other, &TraceParent::derived("ord-2", "cmd-2"));
        let second = traceparent_of(&other).unwrap();
        (sent, second)
    });
    assert_eq!(sent.trace_id, parent.trace_id, "the same trace");
    assert_ne!(sent.span_id, parent.span_id, "a span of its own");
    assert_ne!(
        second_sent.trace_id, parent.trace_id,
        "another order, another trace"
    );
    let spans = exporter.get_finished_spans().unwrap();
    let record = spans
        .iter()
        .find(|s| s.span_context.span_id().to_bytes() == sent.span_id)
        .expect("the ended span was exported");
    assert_eq!(record.parent_span_id.to_bytes(), parent.span_id);
    assert!(record.parent_span_is_remote);
    assert_eq!(record.span_context.trace_id().to_bytes(), parent.trace_id);
}

#[test]
fn without_an_opentelemetry_layer_there_is_no_context_to_continue_or_send() {
    let subscriber = tracing_subscriber::registry();
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("record");
        assert!(!continue_trace(&span, &TraceParent::parse(PARENT).unwrap()));
        assert_eq!(traceparent_of(&span), None);
    });
}

#[test]
fn no_endpoint_exports_nothing_and_a_disabled_sdk_ignores_the_endpoint() {
    let none = Tracing::from_env("payment", |_| None).unwrap();
    assert_eq!(none.endpoint(), None);
    let disabled = Tracing::from_env("payment", |name| match name {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://127.0.0.1:4318".into()),
        "OTEL_SDK_DISABLED" => Some("true".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(disabled.endpoint(), None);
    let traces = Tracing::from_env("payment", |name| match name {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://127.0.0.1:4318/".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(traces.endpoint(), Some("http://127.0.0.1:4318/v1/traces"));
}

/// One HTTP request as a collector receives it.
struct Received {
    request_line: String,
    headers: Vec<String>,
    body: Vec<u8>,
}

/// Accepts one request on `listener`, answers 200 with an empty OTLP response.
fn receive_one(listener: TcpListener, out: mpsc::Sender<Received>) {
    let (stream, _) = listener.accept().unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        headers.push(line.trim().to_ascii_lowercase());
    }
    let length: usize = headers
        .iter()
        .find_map(|h| h.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let mut stream = stream;
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )
        .unwrap();
    out.send(Received {
        request_line,
        headers,
        body,
    })
    .unwrap();
}

#[test]
fn spans_are_posted_as_otlp_protobuf_to_the_endpoint_when_flushed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || receive_one(listener, tx));
    let tracing = Tracing::from_env("sagaflow-payment", |name| match name {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(format!("http://127.0.0.1:{port}")),
        _ => None,
    })
    .unwrap();
    let subscriber = tracing_subscriber::registry().with(tracing.layer());
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("record", otel.name = "payment payment.charge");
        continue_trace(&span, &TraceParent::parse(PARENT).unwrap());
        let _entered = span.enter();
    });
    tracing.flush();
    let received = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the collector received the spans");
    assert!(
        received.request_line.starts_with("POST /v1/traces "),
        "{}",
        received.request_line
    );
    assert!(
        received
            .headers
            .iter()
            .any(|h| h == "content-type: application/x-protobuf"),
        "{:?}",
        received.headers
    );
    let contains = |needle: &[u8]| received.body.windows(needle.len()).any(|w| w == needle);
    let parent = TraceParent::parse(PARENT).unwrap();
    assert!(contains(&parent.trace_id), "the trace id is in the export");
    assert!(contains(&parent.span_id), "so is the parent span id");
    assert!(contains(b"payment payment.charge"), "and the span's name");
    assert!(contains(b"sagaflow-payment"), "and the service");
}
