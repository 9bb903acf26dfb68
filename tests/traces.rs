//! One trace per order across every function: an orchestrated and a choreographed order go
//! through the same handlers and relay the Lambda functions run, with the OpenTelemetry SDK
//! installed as the functions install it and an in-memory exporter reading the spans back. Each
//! order's spans share one trace id, no span of one order sits in the other's trace, and every
//! parent link follows the messages: a handler's span is the child of the relay span that
//! published its record, and a relay span the child of the span that recorded its event.
//!
//! The same scenario runs in process (the embedded system of `make run`) and on the local
//! servers (the local triggers on dynoxide and tansu).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use opentelemetry_sdk::trace::InMemorySpanExporter;
use sagaflow_embedded::{front_door, EmbeddedConfig, EmbeddedSystem, PlaceOrderCommand, Placement};
use sagaflow_local_trigger::{LocalSystem, LocalSystemConfig};
use sagaflow_orders::domain::StockLine;
use sagaflow_orders::domain::{Address, CreateOrder, Flow, Money, OrderLine, OrderStatus};
use sagaflow_orders::flow::intake::PlaceOrder;
use sagaflow_telemetry::export::Tracing;
use sagaflow_telemetry::testkit::OrderTraces;
use tracing_subscriber::layer::SubscriberExt;

/// Every function an orchestrated order goes through, as its spans name them.
const ORCHESTRATED_FUNCTIONS: [&str; 7] = [
    "orchestrator",
    "order",
    "payment",
    "inventory",
    "shipment",
    "analytics",
    "relay",
];

/// The process's span exporter: one subscriber for the whole test binary, as a function has.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let tracing = Tracing::with_exporter("sagaflow-test", exporter.clone());
        // INFO, as the functions log by default: the SDK clients' own debug spans stay out.
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(tracing.layer());
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per process");
        exporter
    })
}

/// Checks both orders' traces and that the orchestrated one went through every function.
fn check(orchestrated: &str, choreographed: &str) {
    let traces = OrderTraces::new(exporter().get_finished_spans().unwrap());
    assert_ne!(
        traces.trace_of(orchestrated),
        traces.trace_of(choreographed),
        "two orders, two traces"
    );
    for order in [orchestrated, choreographed] {
        let spans = traces.check_order(order);
        assert!(spans > 10, "{order}: {:?}", traces.census(order));
    }
    let functions = traces.functions_of(orchestrated);
    for function in ORCHESTRATED_FUNCTIONS {
        assert!(
            functions.contains(function),
            "no span of {function} in {orchestrated}'s trace: {functions:?}"
        );
    }
    let functions = traces.functions_of(choreographed);
    for function in ["order", "payment", "inventory", "shipment", "relay"] {
        assert!(
            functions.contains(function),
            "no span of {function} in {choreographed}'s trace: {functions:?}"
        );
    }
}

fn request(order_id: &str, flow: Flow) -> PlaceOrder {
    PlaceOrder {
        order_id: order_id.into(),
        customer_id: "cust-trace".into(),
        lines: vec![StockLine {
            sku: "MUG".into(),
            quantity: 2,
        }],
        payment_method: "card-ok".into(),
        shipping_address: address(),
        flow,
    }
}

fn address() -> Address {
    Address {
        name: "Ada Lovelace".into(),
        line1: "1 Loop Road".into(),
        city: "Paris".into(),
        country: "FR".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_order_is_one_trace_across_every_function_in_process() {
    exporter();
    let system = EmbeddedSystem::new(EmbeddedConfig::default()).unwrap();
    let now = system.clock().now();
    system.services().restock("MUG", 10, now).await.unwrap();
    let door = front_door(&system).unwrap();
    for (id, flow) in [
        ("ord-tr-o", Flow::Orchestrated),
        ("ord-tr-c", Flow::Choreographed),
    ] {
        let placed = door
            .send(PlaceOrderCommand(request(id, flow)))
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(placed, Placement::Accepted { .. }), "{placed:?}");
    }
    system.run_until_idle().await.unwrap();
    for id in ["ord-tr-o", "ord-tr-c"] {
        let order = system.services().orders().load(id).await.unwrap().state;
        assert_eq!(order.status, OrderStatus::Completed, "{id}");
    }
    check("ord-tr-o", "ord-tr-c");
}

fn create(order_id: &str, flow: Flow) -> CreateOrder {
    CreateOrder {
        order_id: order_id.into(),
        customer_id: "cust-trace".into(),
        lines: vec![OrderLine {
            sku: "MUG".into(),
            quantity: 2,
            unit_price: Money::eur(1_250),
        }],
        payment_method: "card-ok".into(),
        shipping_address: address(),
        flow,
    }
}

/// Waits until no span has ended for a while: the last records of a finished order may
/// still be on their way to the analytics function.
async fn spans_settled(limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = usize::MAX;
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        let now = exporter().get_finished_spans().unwrap().len();
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_secs(3) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_order_is_one_trace_across_every_function_on_local_servers() {
    for var in ["AWS_ENDPOINT_URL", "SAGAFLOW_KAFKA_BOOTSTRAP"] {
        assert!(
            std::env::var(var).is_ok_and(|v| !v.is_empty()),
            "{var} is not set: start the local servers with `make up` (or run `make test`)"
        );
    }
    exporter();
    let name = format!("trace{}", std::process::id());
    let system = LocalSystem::start(LocalSystemConfig::named(name))
        .await
        .expect("local system starts");
    system.restock("MUG", 10).await.unwrap();
    let ids = ["ord-tl-o", "ord-tl-c"];
    system
        .place_order(&create(ids[0], Flow::Orchestrated))
        .await
        .unwrap();
    system
        .place_order(&create(ids[1], Flow::Choreographed))
        .await
        .unwrap();
    for id in ids {
        let order = system
            .wait_for_terminal(id, Duration::from_secs(90))
            .await
            .unwrap();
        assert_eq!(order.status, OrderStatus::Completed, "{id}");
    }
    system
        .wait_for_analytics(Duration::from_secs(60))
        .await
        .unwrap();
    spans_settled(Duration::from_secs(30)).await;
    system.stop().await;
    check(ids[0], ids[1]);
}
