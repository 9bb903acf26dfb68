//! Section 4, function init: how long each function binary takes from process start until it
//! asks a Lambda Runtime API for its first invocation, how long until it answers that first
//! invocation (an empty batch of its trigger), and how big each bootstrap is. Init reads the
//! settings and starts the rest in the background (`FunctionContext::build`: both clients, the
//! `DescribeTable` check, the Kafka producer and its warm-up); the first invocation waits for
//! what is left of it, so the first answer shows what init no longer awaits.
//!
//! The Runtime API is a few lines here rather than cargo-lambda's emulator: what is measured
//! is when the first `GET /2018-06-01/runtime/invocation/next` arrives and when the answer to
//! the event it is handed is posted, and nothing must sit between the process and those
//! requests but the loopback.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sagaflow_dynamodb::config::{ANALYTICS_TABLE_VAR, EVENTS_TABLE_VAR, STEP_TIMEOUT_VAR};
use sagaflow_dynamodb::dynamodb_client;
use sagaflow_dynamodb::tables::{ensure_analytics_table, ensure_events_table};
use sagaflow_kafka::{EventPublisher, KafkaConfig};
use sagaflow_records::topology::{Function, Trigger, FUNCTIONS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::settings::Settings;
use crate::stats::median;

/// The request a function's runtime sends once init is over.
const NEXT_INVOCATION: &str = "/2018-06-01/runtime/invocation/next";
/// The init budget the figures are held to.
const TARGET_MS: f64 = 20.0;
/// How far above its start floor a function's init may be: init awaits no round trip.
const ABOVE_FLOOR_TARGET_MS: f64 = 5.0;
/// Longer than the Kafka warm-up's own 10 s metadata timeout, so a slow broker shows up as the
/// function's error rather than as ours.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Request heads longer than this are not the Runtime API client's.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// What section 4 measured.
#[derive(Clone, Debug)]
pub struct InitFigures {
    /// Samples per function (after one discarded warm-up start).
    pub samples: usize,
    /// One row per function binary.
    pub functions: Vec<FunctionInit>,
    /// The same init steps timed inside the bench process, medians in ms.
    pub steps: InitSteps,
    /// Whether every function's median init is within the target.
    pub target_met: bool,
}

/// One function's init figures and size.
#[derive(Clone, Debug)]
pub struct FunctionInit {
    /// The binary's name (`order`, `relay`, ...).
    pub bin: String,
    /// Median ms from process spawn to its first `invocation/next`.
    pub median_ms: f64,
    /// Median ms from process spawn to its answer to the first invocation, an empty batch:
    /// init, and what the first invocation waits for of the start begun in init.
    pub answer_ms: f64,
    /// The slowest sample, in ms.
    pub max_ms: f64,
    /// Median ms from spawn to exit when config is refused before any client is built: the
    /// cost of starting the process at all.
    pub floor_ms: f64,
    /// Size of the host release binary in bytes.
    pub binary_bytes: u64,
    /// The deployable bundle's size, as found or made.
    pub bundle: Bundle,
}

/// Where the bundle size comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bundle {
    /// `target/lambda/<bin>/bootstrap.zip` from `make package` (arm64), in bytes.
    Packaged(u64),
    /// The host release binary zipped here with the `zip` CLI, in bytes.
    HostZip(u64),
    /// No package and no `zip` CLI: only the binary's size is known.
    Unknown,
}

/// The start steps of `FunctionContext::build`, timed in this process with fresh clients.
#[derive(Clone, Debug, Default)]
pub struct InitSteps {
    /// Loading the AWS config (region, credentials, endpoint) and building the client.
    pub aws_config_ms: f64,
    /// The first DescribeTable, which opens the connection.
    pub describe_table_ms: f64,
    /// Creating the producer and fetching the cluster metadata.
    pub kafka_warm_ms: f64,
    /// Building the log subscriber and writing the `function ready` line (in every function
    /// since the logs came in; awaited in init).
    pub logging_ms: f64,
    /// The same with the tracer provider and its OpenTelemetry layer, as init builds it now
    /// (no OTLP endpoint: no exporter).
    pub traced_logging_ms: f64,
}

/// Runs section 4 and prints its table.
pub async fn run(settings: &Settings) -> Result<InitFigures, String> {
    let samples = if settings.quick { 3 } else { 7 };
    let release = release_dir()?;
    let missing: Vec<&str> = FUNCTIONS
        .iter()
        .filter(|f| !release.join(f.binary).is_file())
        .map(|f| f.binary)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "no release build of {} in {}: run `cargo build --release -p sagaflow-lambdas`",
            missing.join(", "),
            release.display()
        ));
    }
    if std::env::var("AWS_ENDPOINT_URL").map_or(true, |v| v.trim().is_empty()) {
        // Without it the functions would look for the tables in a real AWS account.
        return Err(
            "AWS_ENDPOINT_URL is not set: export the local servers' env (.run/env, make up)".into(),
        );
    }

    let tables = Tables::create().await?;
    let zip_dir = std::env::temp_dir().join(format!("sagaflow-bench-init-{}", std::process::id()));
    let outcome = measure(samples, &release, &tables, &zip_dir).await;
    tables.delete().await;
    let _ = std::fs::remove_dir_all(&zip_dir);
    let figures = outcome?;
    print(&figures, settings);
    Ok(figures)
}

async fn measure(
    samples: usize,
    release: &Path,
    tables: &Tables,
    zip_dir: &Path,
) -> Result<InitFigures, String> {
    let zip_cli = zip_available();
    let mut functions = Vec::new();
    for function in &FUNCTIONS {
        let binary = release.join(function.binary);
        // The first start pays for the page cache and the servers' first request; Lambda keeps
        // neither from us, but neither is sagaflow's init.
        start_until_answered(&binary, function, tables).await?;
        let mut init_ms = Vec::with_capacity(samples);
        let mut answer_ms = Vec::with_capacity(samples);
        let mut floor = Vec::with_capacity(samples);
        for _ in 0..samples {
            let (init, answer) = start_until_answered(&binary, function, tables).await?;
            init_ms.push(init);
            answer_ms.push(answer);
            floor.push(start_until_refused(&binary, function).await?);
        }
        let binary_bytes = file_size(&binary)?;
        let packaged = release.parent().map(|target| {
            target
                .join("lambda")
                .join(function.binary)
                .join("bootstrap.zip")
        });
        let bundle = match packaged.as_deref().map(file_size) {
            Some(Ok(bytes)) => Bundle::Packaged(bytes),
            _ if zip_cli => Bundle::HostZip(zip_size(&binary, zip_dir, function.binary).await?),
            _ => Bundle::Unknown,
        };
        functions.push(FunctionInit {
            bin: function.binary.to_string(),
            median_ms: median(&init_ms),
            max_ms: init_ms.iter().copied().fold(0.0, f64::max),
            answer_ms: median(&answer_ms),
            floor_ms: median(&floor),
            binary_bytes,
            bundle,
        });
    }
    let steps = in_process_steps(samples, &tables.events).await?;
    let target_met = functions.iter().all(|f| f.median_ms <= TARGET_MS);
    Ok(InitFigures {
        samples,
        functions,
        steps,
        target_met,
    })
}

/// The directory holding the release binaries: the bench's own when it is a release build,
/// else the `release` beside the profile directory it was built into.
fn release_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the bench binary: {e}"))?;
    let parent = exe.parent().ok_or("the bench binary has no directory")?;
    if parent.file_name().is_some_and(|n| n == "release") {
        return Ok(parent.to_path_buf());
    }
    parent
        .ancestors()
        .map(|dir| dir.join("release"))
        .find(|dir| dir.is_dir())
        .ok_or_else(|| {
            format!(
                "no target/release above {}: run `cargo build --release`",
                parent.display()
            )
        })
}

/// The tables the functions under test check at init, under names no other run uses.
struct Tables {
    client: aws_sdk_dynamodb::Client,
    events: String,
    analytics: String,
}

impl Tables {
    async fn create() -> Result<Self, String> {
        let client = dynamodb_client().await;
        let prefix = format!("sagaflow-bench-init-{}", std::process::id());
        let tables = Self {
            client,
            events: format!("{prefix}-events"),
            analytics: format!("{prefix}-analytics"),
        };
        ensure_events_table(&tables.client, &tables.events)
            .await
            .map_err(|e| e.to_string())?;
        ensure_analytics_table(&tables.client, &tables.analytics)
            .await
            .map_err(|e| e.to_string())?;
        Ok(tables)
    }

    /// Best effort: a table left behind costs the local server a little memory, nothing more.
    async fn delete(&self) {
        for table in [&self.events, &self.analytics] {
            let _ = self.client.delete_table().table_name(table).send().await;
        }
    }
}

/// The function's command, with the environment Lambda would give it and the local servers'
/// settings inherited from ours.
fn command(binary: &Path, function: &Function, runtime_api: &str) -> Command {
    let mut command = Command::new(binary);
    command
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env(
            "AWS_LAMBDA_FUNCTION_NAME",
            format!("sagaflow-bench-{}", function.binary),
        )
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "sagaflow-bench")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/sagaflow-bench-{}", function.binary),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Starts the function, hands it an empty batch of its trigger, and returns the ms from spawn
/// to its first `invocation/next` (init) and to its answer; the process is then killed, as it
/// would only wait for the next event.
async fn start_until_answered(
    binary: &Path,
    function: &Function,
    tables: &Tables,
) -> Result<(f64, f64), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listener's address: {e}"))?;
    let (lines, mut requests) = mpsc::unbounded_channel();
    let invocation = Arc::new(Invocation::of(function));
    let acceptor = tokio::spawn(serve(listener, lines, invocation));
    let mut command = command(binary, function, &address.to_string());
    command
        .env(EVENTS_TABLE_VAR, &tables.events)
        .env(ANALYTICS_TABLE_VAR, &tables.analytics);

    let start = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let stderr = collect_stderr(&mut child);
    let mut seen = Vec::new();
    let mut init = None;
    let outcome = tokio::time::timeout(READY_TIMEOUT, async {
        loop {
            tokio::select! {
                request = requests.recv() => {
                    let Some((at, line)) = request else {
                        return Err("the Runtime API emulator stopped".to_string());
                    };
                    let since_start = at.duration_since(start);
                    match answer_of(&line) {
                        _ if init.is_none() && is_next_invocation(&line) => init = Some(since_start),
                        Some(Answer::Response) => match init {
                            Some(init) => return Ok((init, since_start)),
                            None => return Err("answered before asking for an event".to_string()),
                        },
                        Some(Answer::Error) => return Err(format!("reported an error: {line}")),
                        None => seen.push(line),
                    }
                }
                status = child.wait() => {
                    return Err(match status {
                        Ok(status) => format!("exited ({status}) before answering an invocation"),
                        Err(e) => format!("cannot wait for it: {e}"),
                    });
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("no answer after {} s", READY_TIMEOUT.as_secs_f64())));
    // Kills by this child's own handle, then reaps it, so no stray process outlives a sample.
    let _ = child.kill().await;
    acceptor.abort();
    match outcome {
        Ok((init, answer)) => Ok((init.as_secs_f64() * 1e3, answer.as_secs_f64() * 1e3)),
        Err(reason) => {
            let log = match stderr {
                Some(task) => task.await.unwrap_or_default(),
                None => String::new(),
            };
            Err(format!(
                "{}: {reason}; other requests: {seen:?}; stderr: {}",
                function.binary,
                tail(&log, 1_500)
            ))
        }
    }
}

/// Starts the function with a step timeout it refuses before building any client, and returns
/// the ms until it exits: process start, runtime start and an error line, nothing else.
async fn start_until_refused(binary: &Path, function: &Function) -> Result<f64, String> {
    // Nothing listens there: the function must fail before it would ever connect.
    let mut command = command(binary, function, "127.0.0.1:9");
    command.env(STEP_TIMEOUT_VAR, "-1");
    let start = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let stderr = collect_stderr(&mut child);
    let status = tokio::time::timeout(READY_TIMEOUT, child.wait()).await;
    let elapsed = start.elapsed();
    let _ = child.kill().await;
    let log = match stderr {
        Some(task) => task.await.unwrap_or_default(),
        None => String::new(),
    };
    match status {
        Ok(Ok(status)) if !status.success() && log.contains(STEP_TIMEOUT_VAR) => {
            Ok(elapsed.as_secs_f64() * 1e3)
        }
        Ok(Ok(status)) => Err(format!(
            "{}: with {STEP_TIMEOUT_VAR}=-1 expected a config error, got {status}; stderr: {}",
            function.binary,
            tail(&log, 1_500)
        )),
        Ok(Err(e)) => Err(format!("{}: cannot wait for it: {e}", function.binary)),
        Err(_) => Err(format!(
            "{}: still running with a refused config after {} s",
            function.binary,
            READY_TIMEOUT.as_secs_f64()
        )),
    }
}

/// Reads the child's stderr as it comes, so a chatty child never blocks on a full pipe.
fn collect_stderr(child: &mut Child) -> Option<tokio::task::JoinHandle<String>> {
    child.stderr.take().map(|mut pipe| {
        tokio::spawn(async move {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes).await;
            String::from_utf8_lossy(&bytes).into_owned()
        })
    })
}

/// The event a function's first invocation is handed: an empty batch of its trigger, so the
/// answer measures the start and not the work.
struct Invocation {
    body: &'static str,
    handed: AtomicBool,
}

impl Invocation {
    fn of(function: &Function) -> Self {
        let body = match function.trigger {
            Trigger::Kafka => r#"{"eventSource":"aws:kafka","records":{}}"#,
            Trigger::EventsTableStream => r#"{"Records":[]}"#,
            Trigger::Schedule => {
                r#"{"source":"aws.events","detail-type":"Scheduled Event","detail":{}}"#
            }
        };
        Self {
            body,
            handed: AtomicBool::new(false),
        }
    }

    /// The `invocation/next` response carrying the event, with the headers the runtime reads.
    fn response(&self) -> String {
        let deadline = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            + 60_000;
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
             Lambda-Runtime-Aws-Request-Id: {REQUEST_ID}\r\n\
             Lambda-Runtime-Deadline-Ms: {deadline}\r\n\
             Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:sagaflow-bench\r\n\
             Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0\r\n\
             Content-Length: {}\r\n\r\n{}",
            self.body.len(),
            self.body
        )
    }
}

/// The request id of the one invocation the emulator hands out.
const REQUEST_ID: &str = "sagaflow-bench-first-invocation";

/// How the function answered its invocation.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// `POST .../invocation/<id>/response`.
    Response,
    /// `POST .../invocation/<id>/error` or `.../init/error`.
    Error,
}

/// What a request line answers, if it is an answer.
fn answer_of(line: &str) -> Option<Answer> {
    let mut parts = line.split_ascii_whitespace();
    let (Some("POST"), Some(target)) = (parts.next(), parts.next()) else {
        return None;
    };
    if target.ends_with(&format!("/invocation/{REQUEST_ID}/response")) {
        Some(Answer::Response)
    } else if target.ends_with("/error") {
        Some(Answer::Error)
    } else {
        None
    }
}

/// The Runtime API emulator: accepts connections and converses on each.
async fn serve(
    listener: TcpListener,
    lines: mpsc::UnboundedSender<(Instant, String)>,
    invocation: Arc<Invocation>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(converse(stream, lines.clone(), invocation.clone()));
    }
}

/// Reads each request on a connection in turn and hands on its request line with when its
/// head arrived: the first `invocation/next` gets the event, an answer gets 202, and a later
/// `next` is left waiting, with its connection open until the child is gone, so it sees no
/// reset to react to.
async fn converse(
    mut stream: TcpStream,
    lines: mpsc::UnboundedSender<(Instant, String)>,
    invocation: Arc<Invocation>,
) {
    let mut buffer = Vec::with_capacity(1024);
    while let Some((at, line, body_length)) = read_head(&mut stream, &mut buffer).await {
        let _ = lines.send((at, line.clone()));
        if !skip_body(&mut stream, &mut buffer, body_length).await {
            return;
        }
        let reply = if is_next_invocation(&line) {
            if invocation.handed.swap(true, Ordering::SeqCst) {
                // Only the first event is handed out; hold this one until the child is killed.
                let mut rest = [0u8; 64];
                while matches!(stream.read(&mut rest).await, Ok(n) if n > 0) {}
                return;
            }
            invocation.response()
        } else {
            "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_string()
        };
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads one request head: its arrival, its request line and its body's length, leaving
/// whatever follows the head in `buffer`; `None` if the peer closes or sends junk.
async fn read_head(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> Option<(Instant, String, usize)> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let at = Instant::now();
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end + 4);
            let mut head_lines = head.split("\r\n");
            let line = head_lines.next().unwrap_or_default().to_string();
            let body_length = head_lines
                .filter_map(|h| h.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse().ok())
                .unwrap_or(0);
            return Some((at, line, body_length));
        }
        if buffer.len() > MAX_REQUEST_HEAD {
            return None;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// Drops a request's body of `length` bytes, from `buffer` first; `false` if the peer closes.
async fn skip_body(stream: &mut TcpStream, buffer: &mut Vec<u8>, length: usize) -> bool {
    let mut chunk = [0u8; 1024];
    while buffer.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
    buffer.drain(..length);
    true
}

/// Whether an HTTP request line is the runtime's `GET .../invocation/next`, in origin or
/// absolute form.
fn is_next_invocation(line: &str) -> bool {
    let mut parts = line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let path = path.split('?').next().unwrap_or(path);
    method == "GET"
        && path == NEXT_INVOCATION
        && version.starts_with("HTTP/")
        && parts.next().is_none()
}

/// The same steps `FunctionContext::build` takes, timed one by one with fresh clients each
/// sample, to show what the child's init is made of.
async fn in_process_steps(samples: usize, events_table: &str) -> Result<InitSteps, String> {
    let kafka = KafkaConfig::from_env().map_err(|e| e.to_string())?;
    let adapters = sagaflow_dynamodb::AdapterConfig::from_env().map_err(|e| e.to_string())?;
    let (mut config, mut describe, mut warm) = (Vec::new(), Vec::new(), Vec::new());
    let (mut logging, mut traced) = (Vec::new(), Vec::new());
    for _ in 0..samples + 1 {
        let t = Instant::now();
        let env = |name: &str| std::env::var(name).ok();
        let tracer = sagaflow_telemetry::export::Tracing::from_env("sagaflow-bench", env)
            .map_err(|e| e.to_string())?;
        let dispatch =
            sagaflow_lambdas::logging::traced_dispatch(env, std::io::sink, Some(&tracer));
        tracing::dispatcher::with_default(&dispatch, || {
            sagaflow_lambdas::context::log_ready(&adapters, &kafka)
        });
        traced.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let dispatch =
            sagaflow_lambdas::logging::dispatch(|name| std::env::var(name).ok(), std::io::sink);
        tracing::dispatcher::with_default(&dispatch, || {
            sagaflow_lambdas::context::log_ready(&adapters, &kafka)
        });
        logging.push(t.elapsed().as_secs_f64() * 1e3);
        let t0 = Instant::now();
        let client = dynamodb_client().await;
        let t1 = Instant::now();
        client
            .describe_table()
            .table_name(events_table)
            .send()
            .await
            .map_err(|e| format!("DescribeTable {events_table}: {e:?}"))?;
        let t2 = Instant::now();
        let publisher = EventPublisher::new(&kafka).map_err(|e| e.to_string())?;
        publisher.warm().await.map_err(|e| e.to_string())?;
        let t3 = Instant::now();
        // Tearing librdkafka down joins its threads; that is not init, and not timed.
        let _ = tokio::task::spawn_blocking(move || drop(publisher)).await;
        config.push((t1 - t0).as_secs_f64() * 1e3);
        describe.push((t2 - t1).as_secs_f64() * 1e3);
        warm.push((t3 - t2).as_secs_f64() * 1e3);
    }
    // The first round pays for this process's first TLS root load and connections.
    Ok(InitSteps {
        aws_config_ms: median(&config[1..]),
        describe_table_ms: median(&describe[1..]),
        kafka_warm_ms: median(&warm[1..]),
        logging_ms: median(&logging[1..]),
        traced_logging_ms: median(&traced[1..]),
    })
}

fn zip_available() -> bool {
    std::process::Command::new("zip")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Zips `binary` as `bootstrap` the way a Lambda bundle holds it, and returns the zip's size.
async fn zip_size(binary: &Path, dir: &Path, bin: &str) -> Result<u64, String> {
    let dir = dir.join(bin);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let bootstrap = dir.join("bootstrap");
    let zip = dir.join("bootstrap.zip");
    std::fs::copy(binary, &bootstrap)
        .map_err(|e| format!("cannot copy {}: {e}", binary.display()))?;
    let _ = std::fs::remove_file(&zip);
    let status = Command::new("zip")
        .arg("-q")
        .arg("-j")
        .arg(&zip)
        .arg(&bootstrap)
        .status()
        .await
        .map_err(|e| format!("cannot run zip: {e}"))?;
    if !status.success() {
        return Err(format!("zip {} failed: {status}", bootstrap.display()));
    }
    file_size(&zip)
}

fn file_size(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn kib(bytes: u64) -> String {
    format!("{} KiB", (bytes + 512) / 1024)
}

/// The last `max` bytes of `text`, on a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut from = text.len().saturating_sub(max);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    text[from..].trim()
}

fn print(figures: &InitFigures, settings: &Settings) {
    println!(
        "\n4. Function init (release build, local Runtime API emulator; dynoxide + tansu on \
         127.0.0.1; median of {}{}, after one discarded start)",
        figures.samples,
        if settings.quick { ", quick" } else { "" }
    );
    println!(
        "  {:<14}  {:<24} {:<15} {:<16} {:<14} bootstrap.zip",
        "function", "init ms (median / max)", "start floor ms", "first answer ms", "host binary"
    );
    let mut host_zipped = false;
    let mut unknown = false;
    for f in &figures.functions {
        let bundle = match f.bundle {
            Bundle::Packaged(bytes) => format!("{} (arm64, make package)", kib(bytes)),
            Bundle::HostZip(bytes) => {
                host_zipped = true;
                format!("{} (host build zipped)", kib(bytes))
            }
            Bundle::Unknown => {
                unknown = true;
                "-".to_string()
            }
        };
        println!(
            "  {:<14}  {:<24} {:<15} {:<16} {:<14} {bundle}",
            f.bin,
            format!("{:.1} / {:.1}", f.median_ms, f.max_ms),
            format!("{:.1}", f.floor_ms),
            format!("{:.1}", f.answer_ms),
            kib(f.binary_bytes),
        );
    }
    println!(
        "  start floor: spawn to exit when the config is refused before any client is built \
         (process and runtime start, no I/O); first answer: spawn to the answer to an empty \
         batch of its trigger, handed on its first `invocation/next` (init, then what the first \
         invocation waits for of the start begun in init: the clients, the table check)"
    );
    let s = &figures.steps;
    println!(
        "  the same steps in this process, fresh clients (median): AWS config and client \
         {:.1} ms (built in the background from init on, awaited by the first invocation; this \
         process loaded its TLS roots once already), DescribeTable {:.1} ms (the same), Kafka \
         producer and metadata {:.1} ms (warmed in the background, awaited by no invocation: \
         librdkafka settles its broker connections after the metadata answer), log subscriber \
         and ready line {:.3} ms, {:.3} ms with the tracer provider and its layer as init builds \
         them now (awaited in init)",
        s.aws_config_ms, s.describe_table_ms, s.kafka_warm_ms, s.logging_ms, s.traced_logging_ms
    );
    if host_zipped {
        println!(
            "  host build zipped: no target/lambda/<bin>/bootstrap.zip (make package builds the \
             arm64 ones), so the {} release binary was zipped with `zip`",
            std::env::consts::ARCH
        );
    }
    if unknown {
        println!(
            "  bootstrap.zip: no make package output and no `zip` CLI here, so only the host \
             binary size is shown"
        );
    }
    let slowest = figures
        .functions
        .iter()
        .max_by(|a, b| a.median_ms.total_cmp(&b.median_ms));
    match slowest {
        Some(f) if !figures.target_met => println!(
            "  target: init <= {TARGET_MS:.0} ms: missed by {:.1} ms ({} at {:.1} ms median)",
            f.median_ms - TARGET_MS,
            f.bin,
            f.median_ms
        ),
        Some(f) => println!(
            "  target: init <= {TARGET_MS:.0} ms: met (slowest median {:.1} ms, {})",
            f.median_ms, f.bin
        ),
        None => println!("  target: init <= {TARGET_MS:.0} ms: no function measured"),
    }
    let above = figures
        .functions
        .iter()
        .map(|f| (f.median_ms - f.floor_ms, f.bin.as_str()))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((most, bin)) = above {
        let verdict = if most <= ABOVE_FLOOR_TARGET_MS {
            "met"
        } else {
            "missed"
        };
        println!(
            "  target: init <= start floor + {ABOVE_FLOOR_TARGET_MS:.0} ms: {verdict} (most above \
             its floor: {bin}, {most:.1} ms)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_next_invocation_request_line_means_ready() {
        assert!(is_next_invocation(
            "GET /2018-06-01/runtime/invocation/next HTTP/1.1"
        ));
        assert!(is_next_invocation(
            "GET http://127.0.0.1:9001/2018-06-01/runtime/invocation/next HTTP/1.1"
        ));
        assert!(!is_next_invocation(
            "POST /2018-06-01/runtime/init/error HTTP/1.1"
        ));
        assert!(!is_next_invocation(
            "POST /2018-06-01/runtime/invocation/next HTTP/1.1"
        ));
        assert!(!is_next_invocation(
            "GET /2018-06-01/runtime/invocation/next/extra HTTP/1.1"
        ));
        assert!(!is_next_invocation(
            "GET /2018-06-01/runtime/invocation/next"
        ));
        assert!(!is_next_invocation(""));
    }

    #[test]
    fn only_a_post_for_the_handed_invocation_is_its_answer() {
        let id = REQUEST_ID;
        assert_eq!(
            answer_of(&format!(
                "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1"
            )),
            Some(Answer::Response)
        );
        assert_eq!(
            answer_of(&format!(
                "POST /2018-06-01/runtime/invocation/{id}/error HTTP/1.1"
            )),
            Some(Answer::Error)
        );
        assert_eq!(
            answer_of("POST /2018-06-01/runtime/init/error HTTP/1.1"),
            Some(Answer::Error)
        );
        assert_eq!(
            answer_of("POST /2018-06-01/runtime/invocation/other/response HTTP/1.1"),
            None
        );
        assert_eq!(
            answer_of("GET /2018-06-01/runtime/invocation/next HTTP/1.1"),
            None
        );
    }

    #[tokio::test]
    async fn the_emulator_hands_the_event_once_and_reads_requests_in_turn_on_a_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (lines, mut requests) = mpsc::unbounded_channel();
        let invocation = Arc::new(Invocation {
            body: "{}",
            handed: AtomicBool::new(false),
        });
        let acceptor = tokio::spawn(serve(listener, lines, invocation));
        let mut client = TcpStream::connect(address).await.unwrap();
        client
            .write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut handed = vec![0u8; 1024];
        let read = client.read(&mut handed).await.unwrap();
        let handed = String::from_utf8_lossy(&handed[..read]).into_owned();
        assert!(handed.starts_with("HTTP/1.1 200 OK"), "{handed}");
        assert!(
            handed.contains(REQUEST_ID) && handed.ends_with("\r\n\r\n{}"),
            "{handed}"
        );
        let post = format!(
            "POST /2018-06-01/runtime/invocation/{REQUEST_ID}/response HTTP/1.1\r\n\
             Content-Length: 2\r\n\r\n{{}}GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n"
        );
        client.write_all(post.as_bytes()).await.unwrap();
        let lines: Vec<String> = [
            requests.recv().await,
            requests.recv().await,
            requests.recv().await,
        ]
        .into_iter()
        .map(|r| r.unwrap().1)
        .collect();
        assert!(is_next_invocation(&lines[0]));
        assert_eq!(answer_of(&lines[1]), Some(Answer::Response));
        assert!(
            is_next_invocation(&lines[2]),
            "the body was skipped, not read as a head"
        );
        let mut accepted = vec![0u8; 256];
        let read = client.read(&mut accepted).await.unwrap();
        assert!(String::from_utf8_lossy(&accepted[..read]).starts_with("HTTP/1.1 202"));
        acceptor.abort();
    }

    #[test]
    fn tail_keeps_the_end_on_a_character_boundary() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("é-error", 6), "-error");
        assert_eq!(tail("short", 100), "short");
    }
}
