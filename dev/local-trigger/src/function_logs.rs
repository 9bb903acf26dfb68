//! Each function's log lines in a file of its own, as each Lambda function has its own log
//! group: `<dir>/<function>.jsonl`, JSON lines with the fields the functions log on Lambda.
//! `make run-local` and `make chaos` run every function in one process, so a layer routes each
//! line by its `function` field; lines without one (the batch library's) go to `runtime.jsonl`.
//! The same subscriber carries the functions' OpenTelemetry layer, as on Lambda, exporting
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (a local Jaeger or collector).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use sagaflow_telemetry::export::Tracing;
use serde_json::Value;
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Where the logs go unless `SAGAFLOW_LOG_DIR` says otherwise.
pub const DEFAULT_DIR: &str = ".run/logs";

/// The layer that writes each function's lines to its file.
pub struct FunctionLogs {
    dir: PathBuf,
    files: Mutex<HashMap<String, File>>,
}

impl FunctionLogs {
    /// Logs under `dir`, which is created; files from an earlier run are started afresh.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "jsonl") {
                std::fs::remove_file(path)?;
            }
        }
        Ok(Self {
            dir,
            files: Mutex::new(HashMap::new()),
        })
    }

    /// The folder the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write(&self, function: &str, line: &Value) {
        let Ok(mut files) = self.files.lock() else {
            return;
        };
        let file = match files.get_mut(function) {
            Some(file) => file,
            None => {
                // A name from a log field becomes a file name only when it is a plain word.
                let name = if function
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    function
                } else {
                    "runtime"
                };
                let path = self.dir.join(format!("{name}.jsonl"));
                let Ok(file) = OpenOptions::new().create(true).append(true).open(path) else {
                    return;
                };
                files.entry(function.to_string()).or_insert(file)
            }
        };
        let _ = writeln!(file, "{line}");
    }
}

impl<S: Subscriber> Layer<S> for FunctionLogs {
    /// sagaflow's own lines at INFO and above, as on Lambda; not the AWS SDK's or the HTTP
    /// client's, which log every request at lower levels.
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        metadata.target().starts_with("sagaflow") && *metadata.level() <= tracing::Level::INFO
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = sagaflow_handlers::log::fields(event);
        fields.insert(
            "timestamp_ms".into(),
            Value::from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            ),
        );
        let function = fields
            .get("function")
            .and_then(Value::as_str)
            .filter(|f| !f.is_empty())
            .unwrap_or("runtime")
            .to_string();
        self.write(&function, &Value::Object(fields));
    }
}

/// Sends the spans still buffered when it is dropped (at the end of `main`).
pub struct FlushOnDrop(Tracing);

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.0.flush();
    }
}

/// Installs the layer for the whole process under `SAGAFLOW_LOG_DIR` (or [`DEFAULT_DIR`]),
/// with `tracing`'s OpenTelemetry layer at INFO as the functions have it; returns where the
/// logs are.
pub fn install(tracing: &Tracing) -> std::io::Result<PathBuf> {
    let dir = std::env::var("SAGAFLOW_LOG_DIR").unwrap_or_else(|_| DEFAULT_DIR.to_string());
    let logs = FunctionLogs::new(dir)?;
    let dir = logs.dir().to_path_buf();
    let subscriber = tracing_subscriber::registry()
        .with(logs)
        .with(tracing.layer().with_filter(LevelFilter::INFO));
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(dir)
}

/// [`install`], saying on the console where the logs go (and the spans, when exported), or
/// why they do not; keep what it returns until the end of `main`.
pub fn install_and_say(tool: &str) -> FlushOnDrop {
    let tracing = Tracing::from_env("sagaflow-local", |name| std::env::var(name).ok())
        .unwrap_or_else(|e| {
            eprintln!("{tool}: traces will not be exported: {e}");
            Tracing::unexported("sagaflow-local")
        });
    match install(&tracing) {
        Ok(dir) => println!(
            "each function's JSON log: {}/<function>.jsonl",
            dir.display()
        ),
        Err(e) => eprintln!("{tool}: cannot write the function logs: {e}"),
    }
    if let Some(endpoint) = tracing.endpoint() {
        println!("spans: exported to {endpoint}");
    }
    FlushOnDrop(tracing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_function_gets_its_own_file_of_json_lines() {
        let dir = std::env::temp_dir().join(format!("sagaflow-logs-{}", std::process::id()));
        let logs = FunctionLogs::new(&dir).unwrap();
        let subscriber = tracing_subscriber::registry().with(logs);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(function = "payment", records = 3_u64, "batch");
            tracing::error!(function = "order", reason = %"bad", "record dead-lettered");
            tracing::warn!("no function");
            tracing::debug!(function = "payment", "below the level");
            tracing::info!(target: "aws_smithy_runtime", function = "payment", "not ours");
        });
        let read = |name: &str| -> Vec<Value> {
            std::fs::read_to_string(dir.join(name))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let payment = read("payment.jsonl");
        assert_eq!(payment.len(), 1);
        assert_eq!(payment[0]["message"], "batch");
        assert_eq!(payment[0]["records"], 3);
        assert_eq!(payment[0]["level"], "INFO");
        assert_eq!(read("order.jsonl")[0]["reason"], "bad");
        assert_eq!(read("runtime.jsonl")[0]["message"], "no function");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
