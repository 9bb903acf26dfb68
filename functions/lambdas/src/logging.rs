//! The functions' log output: JSON lines (Text only when Lambda's log format says so), at the
//! level Lambda's advanced logging controls set (`AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else
//! INFO). Each line written during an invocation carries the runtime's span, with the Lambda
//! request id and the X-Ray trace id; each of sagaflow's own lines names its function. Metric
//! lines (CloudWatch Embedded Metric Format) go to the same output.

use lambda_runtime::tracing::subscriber::filter::{EnvFilter, LevelFilter};
use lambda_runtime::tracing::subscriber::fmt::MakeWriter;
use lambda_runtime::tracing::{self, Dispatch};
use sagaflow_handlers::metrics::MetricsSink;
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

/// Installs the functions' subscriber for the whole process, writing to standard output.
pub fn init() {
    let lookup = |name: &str| std::env::var(name).ok();
    // A second install (a test that already has one) keeps the first.
    let _ = tracing::dispatcher::set_global_default(dispatch(lookup, std::io::stdout));
}

/// The subscriber the functions log through, configured from `lookup` (the environment),
/// writing to `writer`.
pub fn dispatch<W>(lookup: impl Fn(&str) -> Option<String>, writer: W) -> Dispatch
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
        Dispatch::new(builder.finish())
    } else {
        Dispatch::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        )
    }
}
