//! The functions' log output: JSON lines (Text only when Lambda's log format says so), at the
//! level Lambda's advanced logging controls set (`AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else
//! INFO). Each line written during an invocation carries the runtime's span, with the Lambda
//! request id and the X-Ray trace id, and the record's span with its ids and trace id; each of
//! sagaflow's own lines names its function. Metric lines (CloudWatch Embedded Metric Format)
//! go to the same output. Spans are OpenTelemetry spans too, exported when an OTLP endpoint
//! is set (`sagaflow-telemetry`).

use lambda_runtime::tracing::subscriber::filter::{EnvFilter, LevelFilter};
use lambda_runtime::tracing::subscriber::fmt::MakeWriter;
use lambda_runtime::tracing::subscriber::layer::SubscriberExt;
use lambda_runtime::tracing::{self, Dispatch};
use sagaflow_handlers::metrics::MetricsSink;
use sagaflow_telemetry::export::Tracing;
use serde_json::Value;

/// Metric lines on standard output, where CloudWatch Logs finds and extracts them (EMF).
#[derive(Clone, Copy, Debug, Default)]
pub struct StdoutMetrics;

impl MetricsSink for StdoutMetrics {
    fn emit(&self, line: Value) {
        use std::io::Write;
        // One write of the whole line, so another thread's log line cannot cut into it.
        let mut text = line.to_string();
        text.push('\n');
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
}

/// Installs the functions' subscriber for the whole process, writing to standard output, with
/// the OpenTelemetry SDK for `function`'s spans; returns the SDK, for the runtime to flush
/// after each invocation. A malformed OTLP endpoint is logged and leaves spans unexported: a
/// function must not stop because its traces cannot leave.
pub fn init(function: &str) -> Tracing {
    let lookup = |name: &str| std::env::var(name).ok();
    let service = format!("sagaflow-{function}");
    let (tracing, setup_error) = match Tracing::from_env(&service, lookup) {
        Ok(tracing) => (tracing, None),
        Err(error) => (Tracing::unexported(&service), Some(error)),
    };
    // A second install (a test that already has one) keeps the first.
    let _ = tracing::dispatcher::set_global_default(traced_dispatch(
        lookup,
        std::io::stdout,
        Some(&tracing),
    ));
    if let Some(error) = setup_error {
        tracing::error!(
            function,
            error = %error,
            source = %std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default(),
            "traces will not be exported"
        );
    }
    tracing
}

/// The subscriber the functions log through, configured from `lookup` (the environment),
/// writing to `writer`, without OpenTelemetry.
pub fn dispatch<W>(lookup: impl Fn(&str) -> Option<String>, writer: W) -> Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    traced_dispatch(lookup, writer, None)
}

/// The subscriber the functions log through, its spans also OpenTelemetry spans of `tracing`
/// when given. Each JSON line lists the spans it was written in, outermost first: the
/// runtime's (the Lambda request id, the X-Ray trace id), then the record's (its ids, the
/// trace id).
pub fn traced_dispatch<W>(
    lookup: impl Fn(&str) -> Option<String>,
    writer: W,
    tracing: Option<&Tracing>,
) -> Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let level = lookup("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|| lookup("RUST_LOG"))
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .parse_lossy("");
    let text = lookup("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("text"));
    let builder = lambda_runtime::tracing::subscriber::fmt()
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(writer);
    if text {
        let subscriber = builder.finish();
        Dispatch::new(subscriber.with(tracing.map(Tracing::layer)))
    } else {
        let subscriber = builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .finish();
        Dispatch::new(subscriber.with(tracing.map(Tracing::layer)))
    }
}
