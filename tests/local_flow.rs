//! The whole order flow on real local servers: DynamoDB (dynoxide, or on Docker dynoxide or LocalStack) and a Kafka
//! broker (tansu or Redpanda), started by `make test`. Orders go through the local triggers,
//! the same handlers the Lambda functions run, and the outbox relay tailing the table's stream.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sagaflow_kafka::{EventPublisher, OutboundRecord};
use sagaflow_local_trigger::{LocalSystem, LocalSystemConfig};
use sagaflow_orders::domain::{
    Address, CreateOrder, Flow, Money, OrderLine, OrderStatus, PaymentStatus, RefundStatus,
};
use sagaflow_orders::flow::sagas::StepTiming;

const WAIT: Duration = Duration::from_secs(90);

fn order(id: &str, flow: Flow, country: &str, method: &str, lamps: u32) -> CreateOrder {
    let mut lines = vec![OrderLine {
        sku: "MUG".into(),
        quantity: 2,
        unit_price: Money::eur(1_250),
    }];
    if lamps > 0 {
        lines.push(OrderLine {
            sku: "LAMP".into(),
            quantity: lamps,
            unit_price: Money::eur(7_900),
        });
    }
    CreateOrder {
        order_id: id.into(),
        customer_id: "cust-e2e".into(),
        lines,
        payment_method: method.into(),
        shipping_address: Address {
            name: "Ada Lovelace".into(),
            line1: "1 Loop Road".into(),
            city: "Paris".into(),
            country: country.into(),
        },
        flow,
    }
}

fn require_servers() {
    for var in ["AWS_ENDPOINT_URL", "SAGAFLOW_KAFKA_BOOTSTRAP"] {
        assert!(
            std::env::var(var).is_ok_and(|v| !v.is_empty()),
            "{var} is not set: start the local servers with `make up` (or run `make test`)"
        );
    }
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_flow_through_the_functions_on_local_servers() {
    require_servers();
    let name = format!("e2e{}", std::process::id());
    let system = LocalSystem::start(LocalSystemConfig::named(name.clone()))
        .await
        .expect("local system starts");
    system.restock("MUG", 100).await.unwrap();
    system.restock("LAMP", 1).await.unwrap();

    let cases = [
        (
            order("ord-o-ok", Flow::Orchestrated, "FR", "card-ok", 0),
            OrderStatus::Completed,
            None,
        ),
        (
            order("ord-o-stock", Flow::Orchestrated, "FR", "card-ok", 3),
            OrderStatus::Cancelled,
            Some("out_of_stock"),
        ),
        (
            order("ord-o-ship", Flow::Orchestrated, "AQ", "card-ok", 0),
            OrderStatus::Cancelled,
            Some("shipment_failed"),
        ),
        (
            order("ord-c-ok", Flow::Choreographed, "FR", "card-ok", 0),
            OrderStatus::Completed,
            None,
        ),
        (
            order(
                "ord-c-declined",
                Flow::Choreographed,
                "FR",
                "card-declined",
                0,
            ),
            OrderStatus::Cancelled,
            Some("payment_declined"),
        ),
        (
            order("ord-c-ship", Flow::Choreographed, "AQ", "card-ok", 0),
            OrderStatus::Cancelled,
            Some("shipment_failed"),
        ),
    ];
    for (create, _, _) in &cases {
        system.place_order(create).await.unwrap();
    }
    for (create, status, reason) in &cases {
        let id = &create.order_id;
        let ended = match system.wait_for_terminal(id, WAIT).await {
            Ok(order) => order,
            Err(e) => {
                let ids: Vec<&str> = cases.iter().map(|c| c.0.order_id.as_str()).collect();
                explain_stall(system, &ids).await;
                panic!("{e}");
            }
        };
        assert_eq!(ended.status, *status, "{id}");
        assert_eq!(
            ended.cancel_reason.as_ref().map(|r| r.code.as_str()),
            *reason,
            "{id}"
        );
        let payment = system.services.payments().load(id).await.unwrap().state;
        match (status, reason) {
            (OrderStatus::Completed, _) => {
                assert_eq!(payment.status, PaymentStatus::Captured, "{id}")
            }
            (_, Some("payment_declined")) => {
                assert_eq!(payment.status, PaymentStatus::Declined, "{id}");
                assert_eq!(ended.refund_status, Some(RefundStatus::NotCharged), "{id}");
            }
            _ => {
                assert_eq!(
                    payment.status,
                    PaymentStatus::Refunded,
                    "{id}: compensation refunded"
                );
                assert_eq!(ended.refund_status, Some(RefundStatus::Refunded), "{id}");
            }
        }
    }
    // Compensation gave every reserved unit back: only the completed orders' mugs left.
    let stock = Stockroom::of(&system).await;
    assert_eq!(
        stock.level("MUG").shipped,
        4,
        "two completed orders of two mugs"
    );
    assert_eq!(stock.level("MUG").reserved, 0);
    assert_eq!(stock.level("MUG").available, 96);
    assert_eq!(
        stock.level("LAMP").available,
        1,
        "the failed lamp order took nothing"
    );
    // A saga ends on the reply to its last step, which trails the order's own last event.
    for id in ["ord-o-ok", "ord-o-stock", "ord-o-ship"] {
        let saga = saga_when_finished(&system, id).await;
        assert!(saga.is_finished(), "{id}: {saga:?}");
    }

    // A poison record goes to the dead-letter topic with its reason; the good record of the
    // same batch still takes effect and the partition is not blocked.
    let publisher = EventPublisher::new(&system.kafka).unwrap();
    let topic = system.topics.commands("payment");
    publisher
        .publish(&[OutboundRecord {
            topic: topic.clone(),
            key: "ord-poison".into(),
            value: b"{not json".to_vec(),
            headers: vec![],
        }])
        .await
        .unwrap();
    system
        .place_order(&order(
            "ord-c-after",
            Flow::Choreographed,
            "FR",
            "card-ok",
            0,
        ))
        .await
        .unwrap();
    let after = system.wait_for_terminal("ord-c-after", WAIT).await.unwrap();
    assert_eq!(after.status, OrderStatus::Completed);
    let letters = system.read_dead_letters(1, Duration::from_secs(10)).await;
    let poison: Vec<_> = letters
        .iter()
        .filter(|l| l.value.contains("ord-poison") || l.value.contains("e25vdCBqc29u"))
        .collect();
    assert_eq!(poison.len(), 1, "{letters:?}");
    assert!(
        poison[0].reason.contains("not a command envelope"),
        "reason header: {}",
        poison[0].reason
    );

    // The analytics table, read through the query bus, equals a replay of every stored event.
    let analytics = system.wait_for_analytics(WAIT).await.unwrap();
    assert_eq!(analytics.orders_by_status.get("completed"), Some(&3));
    assert_eq!(analytics.orders_by_status.get("cancelled"), Some(&4));
    assert!(
        analytics.refunded_minor.get("EUR").is_some_and(|r| *r > 0),
        "{analytics:?}"
    );

    let stats = system.stop().await;
    assert!(stats.relayed > 0, "{stats:?}");
}

/// Prints what each order's saga did, each topic's end offsets and each group's committed
/// offsets, so a stalled flow says where it stopped.
async fn explain_stall(system: LocalSystem, order_ids: &[&str]) {
    for id in order_ids {
        let saga = sagaflow_eventsourcing::EventStore::load(
            &*system.store,
            &sagaflow_eventsourcing::StreamId::new("saga", *id),
            0,
        )
        .await
        .unwrap_or_default();
        let status = system
            .services
            .orders()
            .load(id)
            .await
            .map(|l| l.state.status);
        eprintln!(
            "stall: {id} {status:?} saga: {:?}",
            saga.iter()
                .map(|e| e.event_type.as_str())
                .collect::<Vec<_>>()
        );
    }
    let kafka = system.kafka.clone();
    let topics = system.topics.all();
    let groups: Vec<String> = ["order", "payment", "inventory", "shipment", "orchestrator"]
        .iter()
        .map(|g| {
            format!(
                "{}-{g}",
                system.topics.dead_letter().trim_end_matches(".dead-letter")
            )
        })
        .collect();
    let _ = tokio::task::spawn_blocking(move || {
        let Ok(probe) = kafka
            .client_config()
            .set("group.id", "stall-probe")
            .create::<BaseConsumer>()
        else {
            return;
        };
        for t in &topics {
            for p in 0..2 {
                if let Ok((low, high)) = probe.fetch_watermarks(t, p, Duration::from_secs(5)) {
                    if high > 0 {
                        eprintln!("stall: {t}/{p} offsets {low}..{high}");
                    }
                }
            }
        }
        for group in groups {
            let Ok(consumer) = kafka
                .client_config()
                .set("group.id", &group)
                .create::<BaseConsumer>()
            else {
                continue;
            };
            let mut wanted = TopicPartitionList::new();
            for t in &topics {
                for p in 0..2 {
                    wanted.add_partition(t, p);
                }
            }
            if let Ok(committed) = consumer.committed_offsets(wanted, Duration::from_secs(5)) {
                let at: Vec<String> = committed
                    .elements()
                    .iter()
                    .filter(|e| e.offset() != Offset::Invalid)
                    .map(|e| format!("{}/{}={:?}", e.topic(), e.partition(), e.offset()))
                    .collect();
                eprintln!("stall: group {group} committed {at:?}");
            }
        }
    })
    .await;
    eprintln!("stall: {:?}", system.stop().await);
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_resumes_from_committed_offsets_without_losing_or_repeating_effects() {
    require_servers();
    let config = LocalSystemConfig::named(format!("restart{}", std::process::id()));
    let first = LocalSystem::start(config.clone())
        .await
        .expect("first system starts");
    first.restock("MUG", 100).await.unwrap();
    let orders = [
        order("ord-r1", Flow::Orchestrated, "FR", "card-ok", 0),
        order("ord-r2", Flow::Choreographed, "FR", "card-ok", 0),
        order("ord-r3", Flow::Orchestrated, "AQ", "card-ok", 0),
        order("ord-r4", Flow::Choreographed, "AQ", "card-ok", 0),
    ];
    for create in &orders {
        first.place_order(create).await.unwrap();
    }
    // Stop in the middle of the flow: some records handled and committed, some not.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = first.stop().await;

    // Same consumer groups, topics and table: the new triggers resume from committed offsets,
    // and the relay, starting again from the stream's beginning, republishes everything.
    let second = LocalSystem::start(config)
        .await
        .expect("second system starts");
    for (create, completed) in orders.iter().zip([true, true, false, false]) {
        let id = &create.order_id;
        let ended = second.wait_for_terminal(id, WAIT).await.unwrap();
        let want = if completed {
            OrderStatus::Completed
        } else {
            OrderStatus::Cancelled
        };
        assert_eq!(ended.status, want, "{id}");
        let payment = sagaflow_eventsourcing::EventStore::load(
            &*second.store,
            &sagaflow_eventsourcing::StreamId::new("payment", id.as_str()),
            0,
        )
        .await
        .unwrap();
        let types: Vec<&str> = payment.iter().map(|e| e.event_type.as_str()).collect();
        let expected: &[&str] = if completed {
            &["payment.processed"]
        } else {
            &["payment.processed", "payment.refunded"]
        };
        assert_eq!(types, expected, "{id}: each payment effect exactly once");
    }
    let stock = Stockroom::of(&second).await;
    assert_eq!(
        stock.level("MUG").shipped,
        4,
        "two completed orders of two mugs, shipped once"
    );
    assert_eq!(stock.level("MUG").reserved, 0);
    assert_eq!(stock.level("MUG").total(), 100);
    // The relay republished every event and the analytics function saw some twice: the table
    // still equals a replay, each event counted once.
    let analytics = second.wait_for_analytics(WAIT).await.unwrap();
    assert_eq!(analytics.orders_by_status.get("completed"), Some(&2));
    assert_eq!(analytics.orders_by_status.get("cancelled"), Some(&2));
    let after = second.stop().await;
    assert!(
        before.relayed > 0 && after.relayed >= before.relayed,
        "{before:?} {after:?}"
    );
}

/// The shipping function is down: the orchestrated order's `schedule_shipment` step never gets
/// a reply. The deadline timer (found through the events table's wake-up index, as the
/// scheduled function does on AWS) fails the step; the saga retries the shipment cancellation
/// until it gives up on it, then releases the stock, refunds the payment and cancels the order.
#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test(flavor = "multi_thread")]
async fn a_step_that_never_answers_times_out_and_its_saga_compensates() {
    require_servers();
    let system = LocalSystem::start(LocalSystemConfig {
        // Two sends of the shipment booking and then of its cancellation, each awaited 3 s and
        // 6 s, before the step fails and the cancellation is given up.
        step_timing: StepTiming {
            timeout_ms: 3_000,
            forward_attempts: 2,
            compensation_attempts: 2,
        },
        stopped_services: vec!["shipment".into()],
        timer_every: Duration::from_millis(250),
        ..LocalSystemConfig::named(format!("silent{}", std::process::id()))
    })
    .await
    .expect("local system starts");
    system.restock("MUG", 10).await.unwrap();
    system
        .place_order(&order("ord-silent", Flow::Orchestrated, "FR", "card-ok", 0))
        .await
        .unwrap();

    let ended = system.wait_for_terminal("ord-silent", WAIT).await.unwrap();
    assert_eq!(ended.status, OrderStatus::Cancelled);
    assert_eq!(
        ended.cancel_reason.as_ref().map(|r| r.code.as_str()),
        Some("timeout"),
        "{ended:?}"
    );
    assert_eq!(ended.refund_status, Some(RefundStatus::Refunded));
    let payment = system.services.payments().load("ord-silent").await.unwrap();
    assert_eq!(payment.state.status, PaymentStatus::Refunded);
    let stock = Stockroom::of(&system).await;
    assert_eq!(
        stock.level("MUG").reserved,
        0,
        "the reservation was released"
    );
    assert_eq!(stock.level("MUG").available, 10);

    // The order's cancellation reaches the saga as the reply to its last compensation.
    let saga = saga_when_finished(&system, "ord-silent").await;
    assert_eq!(
        saga.status(),
        sagaflow_saga::InstanceStatus::CompensationFailed,
        "the shipment cancellation was never confirmed: {saga:?}"
    );
    let due = sagaflow_eventsourcing::EventStore::due(
        &*system.store,
        "saga",
        sagaflow_eventsourcing::Timestamp(i64::MAX),
        10,
    )
    .await
    .unwrap();
    assert!(due.is_empty(), "a finished saga waits for nothing: {due:?}");
    let stats = system.stop().await;
    assert!(stats.timer.advanced >= 2, "{:?}", stats.timer);
    assert!(stats.timer.failures.is_empty(), "{:?}", stats.timer);
}

/// The saga of `id` once it is finished, or as it stands after [`WAIT`].
async fn saga_when_finished(system: &LocalSystem, id: &str) -> sagaflow_saga::SagaInstance {
    let started = std::time::Instant::now();
    loop {
        let saga = system.sagas.repository().load(id).await.unwrap().state;
        if saga.is_finished() || started.elapsed() > WAIT {
            return saga;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A local system named `name` (and this process) with ten mugs in stock.
async fn with_ten_mugs(name: &str) -> LocalSystem {
    let system = LocalSystem::start(LocalSystemConfig::named(format!(
        "{name}{}",
        std::process::id()
    )))
    .await
    .expect("local system starts");
    system.restock("MUG", 10).await.unwrap();
    system
}

/// The mugs as the events table has them now.
async fn mugs(system: &LocalSystem) -> sagaflow_orders::domain::StockLevel {
    Stockroom::of(system).await.level("MUG")
}

/// The levels of the SKUs the tests stock, each read from its own stream.
struct Stockroom(std::collections::BTreeMap<String, sagaflow_orders::domain::StockLevel>);

impl Stockroom {
    async fn of(system: &LocalSystem) -> Self {
        let mut levels = std::collections::BTreeMap::new();
        for sku in ["MUG", "TEE", "LAMP"] {
            let stock = system.services.stock().load(sku).await.unwrap().state;
            levels.insert(sku.to_string(), stock.level);
        }
        Self(levels)
    }

    fn level(&self, sku: &str) -> sagaflow_orders::domain::StockLevel {
        self.0.get(sku).copied().unwrap_or_default()
    }
}

/// The front door as `docs/events.md` documents it, tried as a new user would: the JSON
/// envelope, keyed by the order id, and no headers at all.
fn documented_envelope(order_id: &str, flow: &str, command_type: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "command_id": format!("front-door-{order_id}"),
        "command_type": command_type,
        "target_id": order_id,
        "correlation_id": order_id,
        "causation_id": "web-request-981",
        "issued_at": 1764547200000i64,
        "payload": {
            "order_id": order_id,
            "customer_id": "cust-7",
            "lines": [{ "sku": "MUG", "quantity": 2, "unit_price": { "amount_minor": 1250, "currency": "EUR" } }],
            "payment_method": "card-ok",
            "shipping_address": { "name": "Ada Lovelace", "line1": "1 Loop Road", "city": "Paris", "country": "FR" },
            "flow": flow
        }
    }))
    .unwrap()
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_documented_front_door_envelope_without_headers_places_an_order_on_both_flows() {
    require_servers();
    let system = with_ten_mugs("door").await;
    let publisher = EventPublisher::new(&system.kafka).unwrap();
    let records = [
        OutboundRecord {
            topic: system.topics.saga_commands(),
            key: "ord-door-1".into(),
            value: documented_envelope("ord-door-1", "orchestrated", "saga.start"),
            headers: Vec::new(),
        },
        OutboundRecord {
            topic: system.topics.commands("order"),
            key: "ord-door-2".into(),
            value: documented_envelope("ord-door-2", "choreographed", "order.create"),
            headers: Vec::new(),
        },
    ];
    publisher.publish(&records).await.unwrap();
    for id in ["ord-door-1", "ord-door-2"] {
        let order = system.wait_for_terminal(id, WAIT).await.unwrap();
        assert_eq!(order.status, OrderStatus::Completed, "{id}: {order:?}");
    }
    let letters = system.read_dead_letters(1, Duration::from_secs(2)).await;
    assert!(letters.is_empty(), "nothing was dead-lettered: {letters:?}");
    system.stop().await;
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_cancel_undoes_a_running_order_and_a_second_cancel_is_dead_lettered() {
    require_servers();
    let system = with_ten_mugs("cancel").await;
    system
        .place_order(&order("ord-cancel", Flow::Orchestrated, "FR", "card-ok", 0))
        .await
        .unwrap();
    // Cancelled once the payment was taken, while the saga reserves stock or books the carrier.
    let started = std::time::Instant::now();
    loop {
        let saga = system
            .sagas
            .repository()
            .load("ord-cancel")
            .await
            .unwrap()
            .state;
        if saga.completed_steps().len() >= 2 || started.elapsed() > WAIT {
            assert!(
                !saga.is_finished(),
                "the saga ran to its end first: {saga:?}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    system
        .cancel_order("ord-cancel", Flow::Orchestrated, "changed my mind", 1)
        .await
        .unwrap();
    let ended = system.wait_for_terminal("ord-cancel", WAIT).await.unwrap();
    assert_eq!(ended.status, OrderStatus::Cancelled);
    assert_eq!(
        ended.cancel_reason.as_ref().map(|r| r.code.as_str()),
        Some("customer_cancelled"),
        "{ended:?}"
    );
    assert_eq!(ended.refund_status, Some(RefundStatus::Refunded));
    let payment = system.services.payments().load("ord-cancel").await.unwrap();
    assert_eq!(payment.state.status, PaymentStatus::Refunded);
    let saga = saga_when_finished(&system, "ord-cancel").await;
    assert_eq!(
        saga.status(),
        sagaflow_saga::InstanceStatus::Compensated,
        "{saga:?}"
    );
    let mugs = mugs(&system).await;
    assert_eq!(mugs.reserved, 0, "the reservation was released");
    assert_eq!(mugs.available, 10);

    // Too late now: refused with its reason, on the dead-letter topic.
    system
        .cancel_order(
            "ord-cancel",
            Flow::Orchestrated,
            "still want it cancelled",
            2,
        )
        .await
        .unwrap();
    let letters = system.read_dead_letters(1, Duration::from_secs(20)).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].reason.starts_with("saga.cancel: ")
            && letters[0].reason.contains("already cancelled"),
        "{letters:?}"
    );
    system.stop().await;
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_cancel_undoes_a_running_choreographed_order_once() {
    require_servers();
    let system = with_ten_mugs("chorcancel").await;
    let order_id = "ord-chor-cancel";
    system
        .place_order(&order(order_id, Flow::Choreographed, "FR", "card-ok", 0))
        .await
        .unwrap();
    // Cancelled once the payment was taken; sent twice, as a client retrying would.
    let started = std::time::Instant::now();
    loop {
        let payment = system.services.payments().load(order_id).await.unwrap();
        if payment.state.status == PaymentStatus::Captured || started.elapsed() > WAIT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..2 {
        system
            .cancel_order(order_id, Flow::Choreographed, "changed my mind", 1)
            .await
            .unwrap();
    }
    let ended = system.wait_for_terminal(order_id, WAIT).await.unwrap();
    assert_eq!(ended.status, OrderStatus::Cancelled, "{ended:?}");
    assert_eq!(
        ended.cancel_reason.as_ref().map(|r| r.code.as_str()),
        Some("customer_cancelled"),
        "{ended:?}"
    );
    let payment = system.services.payments().load(order_id).await.unwrap();
    assert_eq!(payment.state.status, PaymentStatus::Refunded);
    // The stock comes back whichever of the reservation and the release came first.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let level = mugs(&system).await;
        if (level.available, level.reserved, level.shipped) == (10, 0, 0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stock not restored: {level:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests = system
        .store
        .all_events()
        .await
        .unwrap()
        .iter()
        .filter(|e| e.correlation_id == order_id && e.event_type == "order.cancel_requested")
        .count();
    assert_eq!(requests, 1, "the cancel took effect once");
    system.stop().await;
}
