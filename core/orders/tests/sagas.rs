//! The order flow's saga definitions: given this saga history, when this reply, then these
//! commands; and the shipping saga run against the real services.

use std::sync::Arc;

use sagaflow_eventsourcing::clock::SimClock;
use sagaflow_eventsourcing::pipeline::StageStatus;
use sagaflow_eventsourcing::Aggregate;
use sagaflow_eventsourcing::Classified;
use sagaflow_eventsourcing::InMemoryEventStore;
use sagaflow_eventsourcing::Timestamp;
use sagaflow_orders::domain::order::CreateOrder;
use sagaflow_orders::domain::{Address, Flow, Money, OrderLine};
use sagaflow_orders::flow::intake::{intake_pipeline, run_intake, Catalog, PlaceOrder};
use sagaflow_orders::flow::sagas::{
    commands_from_saga_event, order_saga, shipping_saga, SagaRunner, ServicesDispatcher,
    SimSleeper, ORDER_SAGA,
};
use sagaflow_orders::flow::services::FlowServices;
use sagaflow_orders::flow::FlowEvent;
use sagaflow_saga::{
    orchestrate, BoxFuture, CommandDispatcher, CommandMessage, DispatchError, InstanceStatus,
    Reply, SagaDefinition, SagaEvent, SagaExecutor, SagaInput, SagaInstance, StepKind,
};
use serde_json::{json, Value};

fn create_order() -> CreateOrder {
    CreateOrder {
        order_id: "ord-9".into(),
        customer_id: "cust-9".into(),
        lines: vec![OrderLine {
            sku: "MUG".into(),
            quantity: 2,
            unit_price: Money::eur(1_250),
        }],
        payment_method: "card-ok".into(),
        shipping_address: Address {
            name: "Ada".into(),
            line1: "1 Loop Rd".into(),
            city: "Paris".into(),
            country: "FR".into(),
        },
        flow: Flow::Orchestrated,
    }
}

/// Given the saga history produced by these inputs.
fn given(definition: &SagaDefinition, inputs: &[SagaInput]) -> SagaInstance {
    let mut state = SagaInstance::default();
    for (i, input) in inputs.iter().enumerate() {
        let decision = orchestrate(definition, &state, input, Timestamp(1_000 + i as i64)).unwrap();
        for event in &decision.events {
            state.apply(event);
        }
    }
    state
}

fn start() -> SagaInput {
    SagaInput::Start {
        saga_id: "ord-9".into(),
        input: serde_json::to_value(create_order()).unwrap(),
        correlation_id: "ord-9".into(),
    }
}

fn reply(event_type: &str, payload: Value) -> SagaInput {
    SagaInput::Reply(Reply {
        event_id: format!("evt-{event_type}"),
        event_type: event_type.into(),
        payload,
    })
}

fn order_created() -> SagaInput {
    reply(
        "order.created",
        json!({"order_id": "ord-9", "total": {"amount_minor": 2500, "currency": "EUR"}}),
    )
}

fn when(
    definition: &SagaDefinition,
    state: &SagaInstance,
    input: SagaInput,
) -> Vec<CommandMessage> {
    orchestrate(definition, state, &input, Timestamp(5_000))
        .unwrap()
        .commands
}

/// The one command is the order's cancellation, with this reason code and refund status.
#[track_caller]
fn assert_cancels_the_order(commands: &[CommandMessage], code: &str, refund_status: &str) {
    assert_eq!(
        summary(commands),
        vec![(
            "order.cancel".into(),
            "ord-9".into(),
            StepKind::Compensation
        )]
    );
    assert_eq!(commands[0].command.payload["reason"]["code"], code);
    assert_eq!(commands[0].command.payload["refund_status"], refund_status);
}

fn summary(commands: &[CommandMessage]) -> Vec<(String, String, StepKind)> {
    commands
        .iter()
        .map(|c| {
            (
                c.command.command_type.clone(),
                c.command.target_id.clone(),
                c.kind,
            )
        })
        .collect()
}

#[test]
fn given_a_created_order_when_it_is_confirmed_then_payment_is_charged_its_total() {
    let saga = order_saga().unwrap();
    let state = given(&saga, &[start()]);
    let commands = when(&saga, &state, order_created());
    assert_eq!(
        summary(&commands),
        vec![("payment.charge".into(), "ord-9".into(), StepKind::Forward)]
    );
    assert_eq!(
        commands[0].command.payload["amount"],
        json!({"amount_minor": 2500, "currency": "EUR"})
    );
    assert_eq!(commands[0].correlation_id, "ord-9");
    assert_eq!(commands[0].deadline, Some(Timestamp(5_000 + 30_000)));
}

#[test]
fn given_a_charge_when_it_is_declined_then_the_order_is_cancelled_not_charged() {
    let saga = order_saga().unwrap();
    let state = given(&saga, &[start(), order_created()]);
    let commands = when(
        &saga,
        &state,
        reply(
            "payment.declined",
            json!({"reason": "card declined by issuer"}),
        ),
    );
    assert_cancels_the_order(&commands, "payment_declined", "not_charged");
}

#[test]
fn given_a_reservation_when_shipping_fails_then_release_refund_and_cancel_in_reverse() {
    let saga = order_saga().unwrap();
    let mut state = given(
        &saga,
        &[
            start(),
            order_created(),
            reply(
                "payment.processed",
                json!({"order_id": "ord-9", "amount": {"amount_minor": 2500, "currency": "EUR"}}),
            ),
            reply(
                "inventory.reserved",
                json!({"order_id": "ord-9", "lines": []}),
            ),
        ],
    );
    let mut issued = Vec::new();
    let mut next = reply(
        "shipment.failed",
        json!({"reason": "carrier does not deliver to AQ"}),
    );
    for answer in ["inventory.released", "payment.refunded", "order.cancelled"] {
        let decision = orchestrate(&saga, &state, &next, Timestamp(9_000)).unwrap();
        for event in &decision.events {
            state.apply(event);
        }
        issued.extend(decision.commands);
        let payload = if answer == "payment.refunded" {
            json!({"amount": {"amount_minor": 2500, "currency": "EUR"}})
        } else {
            json!({})
        };
        next = reply(answer, payload);
    }
    let decision = orchestrate(&saga, &state, &next, Timestamp(9_500)).unwrap();
    for event in &decision.events {
        state.apply(event);
    }
    assert_eq!(
        summary(&issued),
        vec![
            (
                "inventory.release".into(),
                "MUG".into(),
                StepKind::Compensation
            ),
            (
                "payment.refund".into(),
                "ord-9".into(),
                StepKind::Compensation
            ),
            (
                "order.cancel".into(),
                "ord-9".into(),
                StepKind::Compensation
            ),
        ]
    );
    assert_eq!(
        issued[2].command.payload["reason"]["code"],
        "shipment_failed"
    );
    assert_eq!(
        issued[2].command.payload["refund_status"], "refunded",
        "the refund's reply had an amount"
    );
    assert!(state.is_finished());
    assert_eq!(
        state.compensated_steps(),
        ["reserve_inventory", "process_payment", "create_order"]
    );
}

#[test]
fn given_a_silent_payment_when_both_its_attempts_go_unanswered_then_it_is_voided_and_the_order_cancelled(
) {
    let saga = order_saga().unwrap();
    let state = given(&saga, &[start(), order_created()]);
    let deadline = state.awaiting().map(|(_, _, at)| at).unwrap();
    let early = orchestrate(
        &saga,
        &state,
        &SagaInput::Tick,
        Timestamp(deadline.as_millis() - 1),
    )
    .unwrap();
    assert!(
        early.events.is_empty(),
        "nothing happens before the deadline"
    );
    // The first deadline sends the charge again (the order saga's forward steps have two
    // attempts), awaited twice as long.
    let again = orchestrate(&saga, &state, &SagaInput::Tick, deadline).unwrap();
    assert_eq!(
        summary(&again.commands),
        vec![("payment.charge".into(), "ord-9".into(), StepKind::Forward)]
    );
    assert_eq!(again.commands[0].attempt, 2);
    let mut waiting = state.clone();
    for event in &again.events {
        waiting.apply(event);
    }
    let second_deadline = waiting.awaiting().map(|(_, _, at)| at).unwrap();
    assert_eq!(second_deadline.as_millis() - deadline.as_millis(), 60_000);
    let decision = orchestrate(&saga, &waiting, &SagaInput::Tick, second_deadline).unwrap();
    assert_eq!(
        summary(&decision.commands),
        vec![(
            "payment.refund".into(),
            "ord-9".into(),
            StepKind::Compensation
        )]
    );
    assert!(decision.commands[0].command.payload["reason"]
        .as_str()
        .unwrap()
        .starts_with("timeout:"));
}

#[test]
fn when_every_step_succeeds_then_the_order_completes_and_the_stock_ships() {
    let saga = order_saga().unwrap();
    let state = given(
        &saga,
        &[
            start(),
            order_created(),
            reply("payment.processed", json!({})),
            reply("inventory.reserved", json!({})),
        ],
    );
    let commands = when(&saga, &state, reply("shipment.scheduled", json!({})));
    assert_eq!(
        summary(&commands),
        vec![
            (
                "order.complete".into(),
                "ord-9".into(),
                StepKind::Completion
            ),
            ("inventory.ship".into(), "MUG".into(), StepKind::Completion),
        ]
    );
}

async fn services_with_stock() -> (FlowServices<InMemoryEventStore>, SimClock) {
    services_over(Arc::new(InMemoryEventStore::new())).await
}

async fn services_over(
    store: Arc<InMemoryEventStore>,
) -> (FlowServices<InMemoryEventStore>, SimClock) {
    let services = FlowServices::new(store, 10);
    services.restock("MUG", 5, Timestamp(1)).await.unwrap();
    (services, SimClock::starting_at(Timestamp(10)))
}

#[tokio::test]
async fn the_shipping_saga_reserves_ships_and_confirms() {
    let (services, clock) = services_with_stock().await;
    let executor = in_process(
        Arc::new(ServicesDispatcher::new(services.clone(), clock.clone())),
        clock,
    );
    let input = json!({"order_id": "ord-9", "lines": [{"sku": "MUG", "quantity": 2}], "shipping_address": create_order().shipping_address});
    let outcome = executor
        .execute(&shipping_saga().unwrap(), "ship-ord-9", input, "ord-9")
        .await
        .unwrap();
    assert_eq!(outcome.status, InstanceStatus::Completed, "{outcome:?}");
    assert_eq!(
        outcome.steps_run,
        ["reserve_inventory", "create_shipment", "confirm_shipment"]
    );
    let stock = services.stock().load("MUG").await.unwrap().state.level;
    assert_eq!((stock.available, stock.reserved, stock.shipped), (3, 0, 2));
    let shipment = services.shipments().load("ord-9").await.unwrap().state;
    assert_eq!(
        shipment.status,
        sagaflow_orders::domain::ShipmentStatus::Confirmed
    );
}

#[tokio::test]
async fn the_shipping_saga_releases_the_stock_when_no_carrier_delivers() {
    let (services, clock) = services_with_stock().await;
    let executor = in_process(
        Arc::new(ServicesDispatcher::new(services.clone(), clock.clone())),
        clock,
    );
    let mut address = create_order().shipping_address;
    address.country = "AQ".into();
    let input = json!({"order_id": "ord-9", "lines": [{"sku": "MUG", "quantity": 2}], "shipping_address": address});
    let outcome = executor
        .execute(&shipping_saga().unwrap(), "ship-ord-9", input, "ord-9")
        .await
        .unwrap();
    assert_eq!(outcome.status, InstanceStatus::Compensated, "{outcome:?}");
    assert_eq!(
        outcome.failed_step.as_ref().map(|f| f.step.as_str()),
        Some("create_shipment")
    );
    assert_eq!(outcome.compensated, ["reserve_inventory"]);
    let stock = services.stock().load("MUG").await.unwrap().state.level;
    assert_eq!((stock.available, stock.reserved, stock.shipped), (5, 0, 0));
}

#[tokio::test]
async fn intake_runs_the_limit_check_only_for_large_orders() {
    let pipeline = intake_pipeline(Arc::new(Catalog::demo())).unwrap();
    let request = |quantity| PlaceOrder {
        order_id: "ord-9".into(),
        customer_id: "cust-9".into(),
        lines: vec![sagaflow_orders::domain::StockLine {
            sku: "LAMP".into(),
            quantity,
        }],
        payment_method: "card-ok".into(),
        shipping_address: create_order().shipping_address,
        flow: Flow::Choreographed,
    };
    let small = run_intake(&pipeline, request(1)).await;
    assert!(small.is_success());
    assert_eq!(small.ran(), ["validate", "price"]);
    assert_eq!(small.skipped(), ["online_order_limit"]);
    let large = run_intake(&pipeline, request(20)).await;
    assert!(large.is_success());
    assert_eq!(large.ran(), ["validate", "price", "online_order_limit"]);
    assert_eq!(large.output.unwrap().total, Some(Money::eur(158_000)));
    let too_large = run_intake(&pipeline, request(200)).await;
    assert!(!too_large.is_success());
    assert!(matches!(
        too_large.trace[2].status,
        StageStatus::Failed { .. }
    ));
}

/// The in-process runtime over `dispatcher`, waiting on `clock`.
fn in_process(dispatcher: Arc<dyn CommandDispatcher>, clock: SimClock) -> SagaExecutor {
    SagaExecutor::new(
        dispatcher,
        Arc::new(clock.clone()),
        Arc::new(SimSleeper::new(clock)),
    )
}

/// What the two runtimes are compared on: each saga event's kind, step and attempt (ids and
/// times differ: the events the services store are not the same records).
fn shape(events: &[SagaEvent]) -> Vec<(String, String, u32)> {
    events
        .iter()
        .map(|event| {
            let (kind, step, attempt) = match event {
                SagaEvent::Started { .. } => ("started", "", 0),
                SagaEvent::StepRequested { step, attempt, .. } => {
                    ("requested", step.as_str(), *attempt)
                }
                SagaEvent::StepSucceeded { step, .. } => ("succeeded", step.as_str(), 0),
                SagaEvent::StepFailed { step, .. } => ("failed", step.as_str(), 0),
                SagaEvent::Cancelled { step, .. } => ("cancelled", step.as_str(), 0),
                SagaEvent::CompensationRequested { step, attempt, .. } => {
                    ("compensation requested", step.as_str(), *attempt)
                }
                SagaEvent::StepCompensated { step, .. } => ("compensated", step.as_str(), 0),
                SagaEvent::CompensationFailed { step, .. } => {
                    ("compensation failed", step.as_str(), 0)
                }
                SagaEvent::Completed { .. } => ("completed", "", 0),
                SagaEvent::Aborted { .. } => ("aborted", "", 0),
            };
            (kind.to_string(), step.to_string(), attempt)
        })
        .collect()
}

/// The services, except that the first command of `unanswered` is never answered.
struct LosesFirst {
    services: ServicesDispatcher<InMemoryEventStore>,
    unanswered: &'static str,
    lost: std::sync::atomic::AtomicBool,
}

impl CommandDispatcher for LosesFirst {
    fn dispatch(&self, message: CommandMessage) -> BoxFuture<Result<Vec<Reply>, DispatchError>> {
        if message.command.command_type == self.unanswered
            && !self.lost.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Box::pin(async { Err(DispatchError::Transient("lost".into())) });
        }
        self.services.dispatch(message)
    }
}

/// The durable runtime on the same services, driven as the relay, the functions and the
/// deadline timer drive it on AWS: each command a stored saga event carries goes to the
/// services (the first of `unanswered` is lost on the way), each event they store goes to the
/// saga, and when nothing is in flight the timer ticks at the saga's wake-up time.
async fn durable_run(order: &CreateOrder, unanswered: &str) -> Vec<SagaEvent> {
    let store = Arc::new(InMemoryEventStore::new());
    let (services, clock) = services_over(store.clone()).await;
    let runner = SagaRunner::new(store.clone(), vec![order_saga().unwrap()]);
    let id = order.order_id.as_str();
    let input = serde_json::to_value(order).unwrap();
    runner
        .start(ORDER_SAGA, id, input, id, clock.now(), None)
        .await
        .unwrap();
    let (mut relayed, mut lost) = (0, false);
    for _ in 0..100 {
        let new = store.events_since(relayed);
        relayed += new.len();
        if new.is_empty() {
            let saga = runner.repository().load(id).await.unwrap().state;
            let Some((_, _, deadline)) = saga.awaiting() else {
                break;
            };
            clock.advance_to(deadline);
            runner.tick(id, clock.now(), None).await.unwrap();
            continue;
        }
        for event in new {
            if event.aggregate_type != "saga" {
                let event = FlowEvent::decode(&event).unwrap();
                runner.on_event(&event, clock.now()).await.unwrap();
                continue;
            }
            for command in commands_from_saga_event(&event).unwrap() {
                if command.command_type == unanswered && !lost {
                    lost = true;
                    continue;
                }
                let _ = services.handle(&command, clock.now()).await;
            }
        }
    }
    let saga = store
        .all_events()
        .into_iter()
        .filter(|e| e.aggregate_type == "saga")
        .map(|e| e.decode::<SagaEvent>().unwrap().payload)
        .collect::<Vec<_>>();
    assert!(
        SagaInstance::from_events(&saga).is_finished(),
        "the durable saga finished"
    );
    saga
}

async fn in_process_run(order: &CreateOrder, unanswered: &'static str) -> Vec<SagaEvent> {
    let (services, clock) = services_with_stock().await;
    let dispatcher = LosesFirst {
        services: ServicesDispatcher::new(services, clock.clone()),
        unanswered,
        lost: Default::default(),
    };
    let input = serde_json::to_value(order).unwrap();
    let outcome = in_process(Arc::new(dispatcher), clock)
        .execute(
            &order_saga().unwrap(),
            &order.order_id,
            input,
            &order.order_id,
        )
        .await
        .unwrap();
    outcome.events
}

#[tokio::test]
async fn both_runtimes_record_the_same_saga_when_a_forward_command_goes_unanswered() {
    let order = create_order();
    let durable = durable_run(&order, "payment.charge").await;
    let in_process = in_process_run(&order, "payment.charge").await;
    assert_eq!(shape(&in_process), shape(&durable));
    let requested: Vec<(String, String, u32)> = shape(&durable)
        .into_iter()
        .filter(|(kind, step, _)| kind == "requested" && step == "process_payment")
        .collect();
    assert_eq!(requested.len(), 2, "the charge was sent twice: {durable:?}");
    assert!(matches!(durable.last(), Some(SagaEvent::Completed { .. })));
}

#[tokio::test]
async fn both_runtimes_record_the_same_saga_when_a_compensation_goes_unanswered() {
    let mut order = create_order();
    order.shipping_address.country = "AQ".into();
    let durable = durable_run(&order, "inventory.release").await;
    let in_process = in_process_run(&order, "inventory.release").await;
    assert_eq!(shape(&in_process), shape(&durable));
    assert!(shape(&durable).contains(&(
        "compensation requested".into(),
        "reserve_inventory".into(),
        2
    )));
    assert!(matches!(durable.last(), Some(SagaEvent::Aborted { .. })));
}

fn cancel(id: &str) -> SagaInput {
    SagaInput::Cancel {
        cancel_id: id.into(),
        reason: "changed my mind".into(),
    }
}

/// `state` after `input`, and what it decided.
fn then(
    definition: &SagaDefinition,
    state: &SagaInstance,
    input: SagaInput,
) -> (SagaInstance, Vec<CommandMessage>) {
    let decision = orchestrate(definition, state, &input, Timestamp(5_000)).unwrap();
    let mut next = state.clone();
    for event in &decision.events {
        next.apply(event);
    }
    (next, decision.commands)
}

#[test]
fn given_a_charge_in_flight_when_the_customer_cancels_then_it_and_the_order_are_undone_in_reverse()
{
    let saga = order_saga().unwrap();
    let state = given(&saga, &[start(), order_created()]);
    let (cancelled, commands) = then(&saga, &state, cancel("cancel-1"));
    assert_eq!(cancelled.status(), InstanceStatus::Compensating);
    // The charge may still take effect: it is refunded first, then the order cancelled.
    assert_eq!(
        summary(&commands),
        vec![(
            "payment.refund".into(),
            "ord-9".into(),
            StepKind::Compensation
        )]
    );
    assert_eq!(commands[0].causation_id, "cancel-1");
    assert!(commands[0].command.payload["reason"]
        .as_str()
        .unwrap()
        .starts_with("customer_cancelled: cancelled: changed my mind"));

    // The charge's reply races the cancel and loses: no further step is requested.
    let (raced, commands) = then(
        &saga,
        &cancelled,
        reply(
            "payment.processed",
            json!({"amount": {"amount_minor": 2500, "currency": "EUR"}}),
        ),
    );
    assert!(commands.is_empty(), "{commands:?}");
    let (refunded, commands) = then(
        &saga,
        &raced,
        reply(
            "payment.refunded",
            json!({"amount": {"amount_minor": 2500, "currency": "EUR"}}),
        ),
    );
    assert_cancels_the_order(&commands, "customer_cancelled", "refunded");
    let (ended, commands) = then(&saga, &refunded, reply("order.cancelled", json!({})));
    assert!(commands.is_empty());
    assert_eq!(ended.status(), InstanceStatus::Compensated);
    assert_eq!(
        ended.compensated_steps(),
        ["process_payment", "create_order"]
    );

    // A cancel after the rollback, or during it, is refused and changes nothing.
    for state in [&cancelled, &ended] {
        let refused = orchestrate(&saga, state, &cancel("cancel-2"), Timestamp(6_000)).unwrap_err();
        assert!(
            matches!(refused, sagaflow_saga::SagaError::CancelRefused { .. }),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("already"), "{refused}");
    }
}

#[test]
fn given_a_completed_or_unstarted_saga_when_a_cancel_comes_then_it_is_refused() {
    let saga = order_saga().unwrap();
    let done = given(
        &saga,
        &[
            start(),
            order_created(),
            reply("payment.processed", json!({})),
            reply("inventory.reserved", json!({})),
            reply("shipment.scheduled", json!({})),
        ],
    );
    assert_eq!(done.status(), InstanceStatus::Completed);
    let refused = orchestrate(&saga, &done, &cancel("c"), Timestamp(9_000)).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "cannot cancel a saga that is Completed: the order was completed"
    );
    assert!(matches!(
        orchestrate(&saga, &SagaInstance::default(), &cancel("c"), Timestamp(1)),
        Err(sagaflow_saga::SagaError::NotStarted)
    ));
}

#[tokio::test]
async fn a_durable_cancel_applies_once_and_a_second_one_is_refused_as_permanent() {
    let store = Arc::new(InMemoryEventStore::new());
    let runner = SagaRunner::new(store.clone(), vec![order_saga().unwrap()]);
    let input = serde_json::to_value(create_order()).unwrap();
    runner
        .start(ORDER_SAGA, "ord-9", input, "ord-9", Timestamp(1), None)
        .await
        .unwrap();
    let first = runner
        .cancel("ord-9", "cancel-1", "changed my mind", Timestamp(2), None)
        .await
        .unwrap();
    let types: Vec<&str> = first.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["saga.cancelled", "saga.compensation_requested"]);
    // The same command delivered again is recognised by its id.
    let again = runner
        .cancel("ord-9", "cancel-1", "changed my mind", Timestamp(3), None)
        .await
        .unwrap();
    assert!(again.is_empty());
    let second = runner
        .cancel("ord-9", "cancel-2", "really", Timestamp(4), None)
        .await
        .unwrap_err();
    assert!(!second.is_transient(), "{second}");
    assert!(
        second.to_string().contains("already being cancelled"),
        "{second}"
    );
    let unknown = runner
        .cancel("ord-0", "cancel-3", "who", Timestamp(5), None)
        .await
        .unwrap_err();
    assert!(!unknown.is_transient());
    assert_eq!(
        unknown.to_string(),
        "cannot cancel saga `ord-0`: no orchestrated order has this id"
    );
    let saga_events = store
        .all_events()
        .into_iter()
        .filter(|e| e.event_type == "saga.cancelled")
        .count();
    assert_eq!(saga_events, 1, "cancelled exactly once");
}

#[tokio::test]
async fn a_priced_order_passes_intake_only_with_catalogue_prices_and_known_skus() {
    use sagaflow_orders::flow::intake::check_order;
    let pipeline = intake_pipeline(Arc::new(Catalog::demo())).unwrap();
    let good = create_order();
    assert_eq!(check_order(&pipeline, &good).await, Ok(good.clone()));
    let mut cheap = good.clone();
    cheap.lines[0].unit_price = Money::eur(1);
    let refused = check_order(&pipeline, &cheap).await.unwrap_err();
    assert_eq!(refused.stage, "price");
    assert_eq!(
        refused.to_string(),
        "intake refused the order at stage `price`: invalid field `lines[0].unit_price`: 0.01 EUR is not the catalogue price 12.50 EUR of `MUG`"
    );
    let mut unknown = good.clone();
    unknown.lines[0].sku = "UFO".into();
    assert!(check_order(&pipeline, &unknown)
        .await
        .unwrap_err()
        .reason
        .contains("unknown SKU `UFO`"));
    let mut empty = good;
    empty.lines.clear();
    let refused = check_order(&pipeline, &empty).await.unwrap_err();
    assert_eq!(refused.stage, "validate");
    assert!(refused.reason.contains("`lines`"), "{refused}");
}
