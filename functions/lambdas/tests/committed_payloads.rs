//! Every Kafka- and schedule-triggered function's entry point on the committed trigger payloads
//! of `fixtures/<function>/` (an MSK and a self-managed Kafka event each, in the shape AWS sends
//! them), delivered twice as a redelivering trigger would, over the in-memory store: one
//! harness (`sagaflow_handlers::testkit::fixture_run`) for all of them.

use lambda_runtime::{Context, LambdaEvent};
use sagaflow_handlers::testkit::fixture_run::{load_kafka_fixture, MemoryFunction, Redelivery};

/// Delivers `function`'s committed payload `fixture` to `f` twice through the Lambda entry
/// point, as a redelivering trigger would, and checks both deliveries went through clean.
async fn deliver_fixture_twice<H>(
    f: &MemoryFunction<H>,
    function: &str,
    fixture: &str,
) -> Redelivery {
    let run = f
        .deliver_twice(load_kafka_fixture(function, fixture).unwrap(), |payload| {
            let function = &f.function;
            async move {
                let event = LambdaEvent {
                    payload,
                    context: Context::default(),
                };
                sagaflow_lambdas::kafka_batch(function, event)
                    .await
                    .unwrap()
            }
        })
        .await;
    run.assert_clean(fixture);
    run
}

/// The two tests of a module's `run_fixture`: the MSK payload and the self-managed one.
macro_rules! fixture_tests {
    () => {
        #[tokio::test]
        async fn handles_the_msk_payload() {
            run_fixture("msk-event.json").await;
        }

        #[tokio::test]
        async fn handles_the_self_managed_kafka_payload() {
            run_fixture("self-managed-event.json").await;
        }
    };
}
use fixture_tests;

mod order {

    /// The service this function runs.
    const SERVICE: &str = "order";

    use sagaflow_handlers::testkit::fixture_run::MemoryFunction;
    use sagaflow_orders::domain::OrderStatus;

    async fn run_fixture(name: &str) {
        let f = MemoryFunction::service(SERVICE).unwrap();
        let run = super::deliver_fixture_twice(&f, "order", name).await;
        let service = &f.handler;

        let created_then_completed = service.services().orders().load("ord-2001").await.unwrap();
        assert_eq!(
            created_then_completed.state.status,
            OrderStatus::Completed,
            "{name}"
        );
        assert_eq!(created_then_completed.version, 2, "{name}");
        let cancelling = service.services().orders().load("ord-2003").await.unwrap();
        assert_eq!(cancelling.state.status, OrderStatus::Cancelling, "{name}");
        assert_eq!(
            cancelling.state.cancel_requested.as_deref(),
            Some("changed my mind")
        );
        let mut letters = run.dead_letters.clone();
        letters.sort_by_key(|letter| letter.source.offset);
        assert_eq!(letters.len(), 3, "{name}: {letters:?}");
        assert_eq!(letters[2].source.offset, 22);
        assert_eq!(
            letters[2].reason,
            "`order.request_cancel` refused: order is Completed; cannot cancel"
        );
        assert_eq!(letters[0].source.offset, 4);
        assert!(
            letters[0].reason.contains("not a command envelope"),
            "{}",
            letters[0].reason
        );
        assert_eq!(letters[1].source.offset, 5);
        assert!(
            letters[1]
                .reason
                .contains("unknown command type `order.teleport`"),
            "{}",
            letters[1].reason
        );
    }

    super::fixture_tests!();
}

mod payment {

    /// The service this function runs.
    const SERVICE: &str = "payment";

    use sagaflow_handlers::testkit::fixture_run::MemoryFunction;
    use sagaflow_orders::domain::PaymentStatus;

    async fn run_fixture(name: &str) {
        let f = MemoryFunction::service(SERVICE).unwrap();
        let run = super::deliver_fixture_twice(&f, "payment", name).await;
        let service = &f.handler;

        let payments = service.services().payments();
        let charged_then_refunded = payments.load("ord-1001").await.unwrap().state;
        assert_eq!(
            charged_then_refunded.status,
            PaymentStatus::Refunded,
            "{name}"
        );
        let choreographed = payments.load("ord-1002").await.unwrap().state;
        assert_eq!(
            choreographed.status,
            PaymentStatus::Captured,
            "{name}: reacted to order.created"
        );
        let letters = run.dead_letters.clone();
        assert_eq!(letters.len(), 1, "{name}");
        assert_eq!(letters[0].source.offset, 3);
        assert!(
            letters[0].reason.contains("base64"),
            "{}",
            letters[0].reason
        );
    }

    super::fixture_tests!();
}

mod inventory {

    /// The service this function runs.
    const SERVICE: &str = "inventory";

    use sagaflow_handlers::testkit::fixture_run::MemoryFunction;
    use sagaflow_orders::domain::{ReservationStatus, StockLevel};

    async fn run_fixture(name: &str) {
        let f = MemoryFunction::service(SERVICE).unwrap();
        let run = super::deliver_fixture_twice(&f, "inventory", name).await;
        let (store, service) = (&f.store, &f.handler);

        // Restocked 10, reserved 2 for ord-3001, released them: all 10 are free again. The
        // commands are addressed to `main`, the one warehouse stream of earlier versions: each
        // still reaches its SKU's stock and its order's reservation.
        let mug = service.services().stock().load("MUG").await.unwrap();
        assert_eq!(mug.version, 3, "{name}: restocked, held, released");
        assert_eq!(
            mug.state.level,
            StockLevel {
                available: 10,
                reserved: 0,
                shipped: 0
            },
            "{name}"
        );
        assert!(mug.state.holds.is_empty(), "{name}");
        let reservation = service
            .services()
            .inventory()
            .load("ord-3001")
            .await
            .unwrap();
        assert_eq!(
            reservation.state.status,
            ReservationStatus::Released,
            "{name}"
        );
        let types: Vec<String> = store
            .all_events()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert_eq!(
            types,
            [
                "stock.restocked",
                "inventory.reserved",
                "stock.held",
                "inventory.released",
                "stock.released"
            ],
            "{name}"
        );
        let letters = run.dead_letters.clone();
        assert_eq!(letters.len(), 1, "{name}");
        assert_eq!(letters[0].source.offset, 9);
        assert!(
            letters[0]
                .reason
                .contains("does not belong to the inventory service"),
            "{}",
            letters[0].reason
        );
        let payments = service.services().payments();
        assert_eq!(
            payments.load("ord-3002").await.unwrap().version,
            0,
            "{name}: the misrouted charge was not executed"
        );
    }

    super::fixture_tests!();
}

mod shipment {

    /// The service this function runs.
    const SERVICE: &str = "shipment";

    use sagaflow_handlers::testkit::fixture_run::MemoryFunction;
    use sagaflow_orders::domain::ShipmentStatus;

    async fn run_fixture(name: &str) {
        let f = MemoryFunction::service(SERVICE).unwrap();
        let run = super::deliver_fixture_twice(&f, "shipment", name).await;
        let service = &f.handler;

        let shipments = service.services().shipments();
        let to_france = shipments.load("ord-4001").await.unwrap().state;
        assert_eq!(to_france.status, ShipmentStatus::Scheduled, "{name}");
        assert_eq!(to_france.tracking_id.as_deref(), Some("PC-ord-4001"));
        let to_antarctica = shipments.load("ord-4002").await.unwrap().state;
        assert_eq!(
            to_antarctica.status,
            ShipmentStatus::Failed,
            "{name}: the carrier does not deliver to AQ"
        );
        assert_eq!(
            shipments.load("ord-4003").await.unwrap().version,
            0,
            "{name}: a schedule without an address records nothing"
        );
        let letters = run.dead_letters.clone();
        assert_eq!(letters.len(), 1, "{name}");
        assert_eq!(letters[0].source.offset, 12);
        assert!(
            letters[0].reason.contains("has the wrong shape")
                && letters[0].reason.contains("address"),
            "{}",
            letters[0].reason
        );
    }

    super::fixture_tests!();
}

mod orchestrator {

    use sagaflow_eventsourcing::Timestamp;
    use sagaflow_handlers::testkit::fixture_run::MemoryFunction;

    use sagaflow_orders::domain::{Address, CreateOrder, Flow, Money, OrderLine};
    use sagaflow_orders::flow::sagas::ORDER_SAGA;
    use sagaflow_saga::{InstanceStatus, StepKind};

    /// The order the fixture's `order.created` of ord-5001 records, as the front door starts it.
    fn create_order(order_id: &str) -> serde_json::Value {
        serde_json::to_value(CreateOrder {
            order_id: order_id.into(),
            customer_id: "cust-7".into(),
            lines: vec![OrderLine {
                sku: "MUG".into(),
                quantity: 2,
                unit_price: Money::eur(1_250),
            }],
            payment_method: "card-ok".into(),
            shipping_address: Address {
                name: "Ada Lovelace".into(),
                line1: "1 Loop Road".into(),
                city: "Paris".into(),
                country: "FR".into(),
            },
            flow: Flow::Orchestrated,
        })
        .unwrap()
    }

    async fn run_fixture(name: &str) {
        let f = MemoryFunction::orchestrator().unwrap();
        let orchestrator = &f.handler;
        let started = orchestrator
            .sagas()
            .start(
                ORDER_SAGA,
                "ord-5001",
                create_order("ord-5001"),
                "ord-5001",
                Timestamp(1_764_547_200_000),
                None,
            )
            .await
            .unwrap();
        assert_eq!(started.len(), 2, "{name}: started, create_order requested");
        let run = super::deliver_fixture_twice(&f, "orchestrator", name).await;
        assert_eq!(
            run.events_after_first,
            2 + 2 + 2 + 2,
            "{name}: the reply added step_succeeded and step_requested; saga.start of ord-5004 \
             added started and step_requested, its saga.cancel cancelled and \
             compensation_requested"
        );

        let sagas = orchestrator.sagas().repository();
        let saga = sagas.load("ord-5001").await.unwrap().state;
        assert_eq!(saga.status(), InstanceStatus::Running, "{name}");
        assert_eq!(saga.completed_steps(), ["create_order"], "{name}");
        let (step, kind, _) = saga.awaiting().expect("awaits the next step");
        assert_eq!(
            (step, kind),
            ("process_payment", StepKind::Forward),
            "{name}"
        );
        assert_eq!(
            sagas.load("ord-5002").await.unwrap().version,
            0,
            "{name}: an order with no saga starts none"
        );
        // Cancelled while its first step was in flight: that step is undone (the order cancelled).
        let cancelled = sagas.load("ord-5004").await.unwrap().state;
        assert_eq!(cancelled.status(), InstanceStatus::Compensating, "{name}");
        let (step, kind, _) = cancelled.awaiting().expect("awaits its compensation");
        assert_eq!(
            (step, kind),
            ("create_order", StepKind::Compensation),
            "{name}"
        );
        assert_eq!(
            cancelled.data().failure.as_ref().map(|f| f.cancelled),
            Some(true),
            "{name}"
        );
        assert_eq!(
            sagas.load("ord-5005").await.unwrap().version,
            0,
            "{name}: a choreographed order gets no saga"
        );
        let mut letters = run.dead_letters.clone();
        letters.sort_by_key(|l| l.source.offset);
        assert_eq!(letters.len(), 3, "{name}: {letters:?}");
        assert_eq!(letters[0].source.offset, 3);
        assert!(
            letters[0]
                .reason
                .contains("only orchestrated orders have a saga"),
            "{}",
            letters[0].reason
        );
        assert_eq!(letters[1].source.offset, 5);
        assert_eq!(
            letters[1].reason,
            "saga.cancel: cannot cancel saga `ord-5005`: no orchestrated order has this id"
        );
        assert_eq!(letters[2].source.offset, 7);
        assert!(
            letters[2].reason.contains("invalid event envelope"),
            "{}",
            letters[2].reason
        );
    }

    super::fixture_tests!();
}

mod analytics {
    use std::sync::Arc;

    use lambda_runtime::Context;
    use lambda_runtime::LambdaEvent;
    use sagaflow_handlers::AnalyticsFunction;
    use sagaflow_handlers::{AnalyticsHandler, RecordedDeadLetters};
    use sagaflow_kafka::Topics;
    use sagaflow_lambdas::analytics_invocation as handler;
    use sagaflow_orders::projection::InMemoryAnalyticsStore;
    use serde_json::json;
    use serde_json::Value;

    fn fixture(name: &str) -> Value {
        let text = std::fs::read_to_string(format!("fixtures/analytics/{name}")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    async fn invoke(function: &AnalyticsFunction, payload: Value) -> Value {
        let event = LambdaEvent {
            payload,
            context: Context::default(),
        };
        serde_json::to_value(handler(function, event).await.unwrap()).unwrap()
    }

    async fn run_fixture(name: &str) {
        let read_model = Arc::new(InMemoryAnalyticsStore::new());
        let dead_letters = RecordedDeadLetters::default();
        let function = AnalyticsFunction::new(
            AnalyticsHandler::new(read_model.clone(), Topics::default()),
            Arc::new(dead_letters.clone()),
        )
        .unwrap();

        for delivery in ["first", "redelivery"] {
            let response = invoke(&function, fixture(name)).await;
            assert_eq!(
                response,
                json!({ "batchItemFailures": [] }),
                "{name} {delivery}"
            );
        }

        let summary = invoke(&function, json!({ "query": "summary" })).await;
        assert_eq!(
            summary["orders_by_status"],
            json!({ "completed": 1 }),
            "{name}"
        );
        assert_eq!(summary["captured_minor"], json!({ "EUR": 2500 }), "{name}");
        assert_eq!(
            summary["events_by_type"],
            json!({ "order.created": 1, "order.completed": 1, "payment.processed": 1 }),
            "{name}: the republished order.created and the redelivery count once"
        );
        assert_eq!(
            read_model.projection().duplicates_ignored(),
            5,
            "{name}: the republished order.created, then all four good records again"
        );
        let letters = dead_letters.letters();
        assert_eq!(
            letters.len(),
            2,
            "{name}: the misshapen event, once per delivery"
        );
        assert_eq!(letters[0].source.offset, 8);
        assert!(
            letters[0].reason.contains("order.created"),
            "{name}: {}",
            letters[0].reason
        );
    }

    super::fixture_tests!();

    #[tokio::test]
    async fn refuses_an_unknown_query_and_a_payload_that_is_neither() {
        let function = AnalyticsFunction::new(
            AnalyticsHandler::new(Arc::new(InMemoryAnalyticsStore::new()), Topics::default()),
            Arc::new(RecordedDeadLetters::default()),
        )
        .unwrap();
        let err = function
            .invoke(json!({ "query": "revenue" }))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("unknown analytics query"), "{err}");
        let err = function.invoke(json!([1, 2])).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("neither a query nor a Kafka batch"),
            "{err}"
        );
    }
}

mod deadline {
    use std::sync::Arc;

    use lambda_runtime::Context;
    use lambda_runtime::LambdaEvent;
    use sagaflow_eventsourcing::InMemoryEventStore;
    use sagaflow_eventsourcing::Timestamp;
    use sagaflow_handlers::clock;
    use sagaflow_handlers::OrchestratorHandler;
    use sagaflow_handlers::{DeadlineTimer, TickReport};
    use sagaflow_kafka::Topics;
    use sagaflow_lambdas::scheduled_tick as handler;
    use sagaflow_orders::domain::fixtures::address;
    use sagaflow_orders::domain::{CreateOrder, Flow, Money, OrderLine};
    use sagaflow_orders::flow::sagas::{StepTiming, ORDER_SAGA};
    use sagaflow_saga::{InstanceStatus, StepKind};

    const STEP_TIMEOUT_MS: i64 = 60_000;

    fn order(order_id: &str) -> serde_json::Value {
        serde_json::to_value(CreateOrder {
            order_id: order_id.into(),
            customer_id: "cust-7".into(),
            lines: vec![OrderLine {
                sku: "MUG".into(),
                quantity: 1,
                unit_price: Money::eur(1_250),
            }],
            payment_method: "card-ok".into(),
            shipping_address: address(),
            flow: Flow::Orchestrated,
        })
        .unwrap()
    }

    async fn scheduled_run(timer: &DeadlineTimer<InMemoryEventStore>) -> TickReport {
        let text = std::fs::read_to_string("fixtures/deadline/scheduled-event.json").unwrap();
        let event = LambdaEvent {
            payload: serde_json::from_str(&text).unwrap(),
            context: Context::default(),
        };
        handler(timer, event).await.unwrap()
    }

    #[tokio::test]
    async fn a_step_past_its_deadline_fails_and_its_saga_compensates_once() {
        let store = Arc::new(InMemoryEventStore::new());
        let orchestrator = OrchestratorHandler::with_step_timing(
            store.clone(),
            Topics::default(),
            // One attempt per forward step, so the first overdue deadline fails the step.
            StepTiming {
                timeout_ms: STEP_TIMEOUT_MS,
                forward_attempts: 1,
                ..StepTiming::default()
            },
        )
        .unwrap();
        let sagas = orchestrator.sagas().clone();
        let now = clock::now().as_millis();
        // One saga started two timeouts ago (its step is overdue), one just now (not yet due).
        for (id, started) in [("ord-late", now - 2 * STEP_TIMEOUT_MS), ("ord-fresh", now)] {
            sagas
                .start(ORDER_SAGA, id, order(id), id, Timestamp(started), None)
                .await
                .unwrap();
        }
        let timer = DeadlineTimer::new(store.clone(), sagas.clone());

        let first = scheduled_run(&timer).await;
        assert_eq!(
            first,
            TickReport {
                due: 1,
                advanced: 1,
                unchanged: 0,
                failed: vec![]
            }
        );
        let late = sagas.repository().load("ord-late").await.unwrap().state;
        assert_eq!(late.status(), InstanceStatus::Compensating);
        let (step, kind, deadline) = late.awaiting().expect("awaits its compensation");
        assert_eq!((step, kind), ("create_order", StepKind::Compensation));
        assert!(
            deadline.as_millis() > now,
            "the compensation has a fresh deadline"
        );
        let fresh = sagas.repository().load("ord-fresh").await.unwrap().state;
        assert_eq!(fresh.status(), InstanceStatus::Running, "not due yet");

        // The next run finds nothing due: the tick moved the late saga's wake-up time on.
        assert_eq!(scheduled_run(&timer).await, TickReport::default());
    }
}

/// The metric lines of a batch, on the order function's committed payload.
mod metrics {
    use std::sync::Arc;

    use lambda_runtime::{Context, LambdaEvent};
    use sagaflow_handlers::metrics::RecordedMetrics;
    use sagaflow_handlers::testkit::emf::check_emf_line;
    use sagaflow_handlers::testkit::fixture_run::{load_kafka_fixture, MemoryFunction};

    #[tokio::test]
    async fn every_metric_line_of_a_batch_passes_the_emf_check() {
        let f = MemoryFunction::service("order").unwrap();
        let metrics = RecordedMetrics::default();
        let function = f.function.clone().with_metrics(Arc::new(metrics.clone()));
        let payload = load_kafka_fixture("order", "msk-event.json").unwrap();
        let event = LambdaEvent {
            payload,
            context: Context::default(),
        };
        sagaflow_lambdas::kafka_batch(&function, event)
            .await
            .unwrap();
        let lines = metrics.lines();
        assert!(
            lines.len() >= 2,
            "the function's line and one per topic: {lines:#?}"
        );
        for line in &lines {
            check_emf_line(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(line["function"], "order");
        }
        assert_eq!(lines[0]["RecordsProcessed"], 7.0);
        assert_eq!(lines[0]["RecordsDeadLettered"], 3.0);
    }
}
