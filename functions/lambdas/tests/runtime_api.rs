//! Proof that the built `order` bootstrap runs under a local Lambda runtime: `cargo lambda
//! watch --only-lambda-apis` emulates the Lambda Runtime API, the binary cargo built for this
//! test connects to it as it would in AWS, and `cargo lambda invoke` sends the MSK and the
//! self-managed Kafka sample events. The test checks the responses and what landed in DynamoDB.
//!
//! Needs the local servers (`make up`, or `make test` which starts them) and cargo-lambda
//! (`make test` installs it; `SAGAFLOW_CARGO_LAMBDA` names the binary, else `PATH` is searched).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sagaflow_dynamodb::tables::ensure_events_table;
use sagaflow_dynamodb::{dynamodb_client, DynamoEventStore};
use sagaflow_eventsourcing::EventStore;
use sagaflow_eventsourcing::StreamId;
use sagaflow_kafka::admin::ensure_topics;
use sagaflow_kafka::{KafkaConfig, Topics};

/// A child process that is killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cargo_lambda() -> PathBuf {
    if let Some(path) = std::env::var_os("SAGAFLOW_CARGO_LAMBDA").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("cargo-lambda"))
        .find(|candidate| candidate.is_file())
        .expect(
            "cargo-lambda not found: run `make test` (it installs it) or set SAGAFLOW_CARGO_LAMBDA",
        )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn wait_for_port(port: u16, process: &mut Running, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = process.0.try_wait() {
            panic!("{what} exited with {status} before it listened on {port}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn invoke(port: u16, fixture: &str) -> serde_json::Value {
    let output = Command::new(cargo_lambda())
        .args(["lambda", "invoke", "--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &port.to_string()])
        .args(["--data-file", &format!("fixtures/order/{fixture}")])
        .args(["--output-format", "json", "_"])
        .output()
        .expect("cargo lambda invoke runs");
    assert!(
        output.status.success(),
        "invoke {fixture}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "invoke {fixture} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test(flavor = "multi_thread")]
async fn the_built_bootstrap_answers_both_kafka_sample_events_under_the_runtime_api() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty()),
        "AWS_ENDPOINT_URL is not set: start the local servers with `make up` (or run `make test`)"
    );
    let table = format!("runtime-{}-events", std::process::id());
    let client = dynamodb_client().await;
    ensure_events_table(&client, &table).await.unwrap();
    // The fixtures name the default topics; their bad records go to the default dead-letter topic.
    let kafka = KafkaConfig::from_env().unwrap();
    ensure_topics(&kafka, &Topics::default().all(), 1)
        .await
        .unwrap();

    let port = free_port();
    let mut runtime = Running(
        Command::new(cargo_lambda())
            .args(["lambda", "watch", "--only-lambda-apis", "--invoke-address"])
            .args(["127.0.0.1", "--invoke-port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cargo lambda watch starts"),
    );
    wait_for_port(port, &mut runtime, "cargo lambda watch");
    let mut function = Running(
        Command::new(env!("CARGO_BIN_EXE_order"))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("SAGAFLOW_EVENTS_TABLE", &table)
            .env("SAGAFLOW_TOPIC_PREFIX", "sagaflow")
            .spawn()
            .expect("the order bootstrap starts"),
    );

    let msk = tokio::task::spawn_blocking(move || invoke(port, "msk-event.json"))
        .await
        .unwrap();
    assert_eq!(msk, serde_json::json!({ "batchItemFailures": [] }));
    let store = DynamoEventStore::new(client, table);
    let order = StreamId::new("order", "ord-2001");
    let types = |events: Vec<sagaflow_eventsourcing::StoredEvent>| -> Vec<String> {
        events.into_iter().map(|e| e.event_type).collect()
    };
    assert_eq!(
        types(store.load(&order, 0).await.unwrap()),
        ["order.created", "order.completed"]
    );

    // The self-managed sample carries the same records: a redelivery that appends nothing.
    let self_managed = tokio::task::spawn_blocking(move || invoke(port, "self-managed-event.json"))
        .await
        .unwrap();
    assert_eq!(self_managed, serde_json::json!({ "batchItemFailures": [] }));
    assert_eq!(store.load(&order, 0).await.unwrap().len(), 2);
    assert!(
        function.0.try_wait().unwrap().is_none(),
        "the function keeps serving after both invocations"
    );
}
