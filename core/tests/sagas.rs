//! The order flow's saga definitions: given this saga history, when this reply, then these
//! commands; and the shipping saga run against the real services.

use std::sync::Arc;

use sagaflow_core::domain::order::CreateOrder;
use sagaflow_core::domain::{Address, Flow, Money, OrderLine};
use sagaflow_core::flow::clock::SimClock;
use sagaflow_core::flow::intake::{intake_pipeline, run_intake, Catalog, PlaceOrder};
use sagaflow_core::flow::sagas::{order_saga, shipping_saga, ServicesDispatcher, SimSleeper};
use sagaflow_core::flow::services::FlowServices;
use sagaflow_core::pipeline::StageStatus;
use sagaflow_core::saga::{
    orchestrate, CommandMessage, SagaDefinition, SagaExecutor, SagaInput, SagaInstance, SagaStatus,
    StepKind,
};
use sagaflow_core::{Aggregate, CommandMeta, InMemoryEventStore, Timestamp};
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
    SagaInput::Reply {
        event_id: format!("evt-{event_type}"),
        event_type: event_type.into(),
        payload,
    }
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
    assert_eq!(
        summary(&commands),
        vec![(
            "order.cancel".into(),
            "ord-9".into(),
            StepKind::Compensation
        )]
    );
    assert_eq!(
        commands[0].command.payload["reason"]["code"],
        "payment_declined"
    );
    assert_eq!(commands[0].command.payload["refund_status"], "not_charged");
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
                "main".into(),
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
fn given_a_silent_payment_when_its_deadline_passes_then_it_is_voided_and_the_order_cancelled() {
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
    let decision = orchestrate(&saga, &state, &SagaInput::Tick, deadline).unwrap();
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
            ("inventory.ship".into(), "main".into(), StepKind::Completion),
        ]
    );
}

async fn services_with_stock() -> (FlowServices<InMemoryEventStore>, SimClock) {
    let store = Arc::new(InMemoryEventStore::new());
    let services = FlowServices::new(store, 10);
    let meta = CommandMeta::new("restock", "restock", Timestamp(1));
    services
        .inventory()
        .execute(
            "main",
            &sagaflow_core::domain::InventoryCommand::Restock {
                sku: "MUG".into(),
                quantity: 5,
            },
            &meta,
        )
        .await
        .unwrap();
    (services, SimClock::starting_at(Timestamp(10)))
}

#[tokio::test]
async fn the_shipping_saga_reserves_ships_and_confirms() {
    let (services, clock) = services_with_stock().await;
    let executor = SagaExecutor::new(
        Arc::new(ServicesDispatcher::new(services.clone(), clock.clone())),
        Arc::new(SimSleeper::new(clock)),
    );
    let input = json!({"order_id": "ord-9", "lines": [{"sku": "MUG", "quantity": 2}], "shipping_address": create_order().shipping_address});
    let outcome = executor
        .execute(&shipping_saga().unwrap(), "ship-ord-9", input, "ord-9")
        .await;
    assert_eq!(outcome.status, SagaStatus::Completed, "{outcome:?}");
    assert_eq!(
        outcome.steps_run,
        ["reserve_inventory", "create_shipment", "confirm_shipment"]
    );
    let stock = services
        .inventory()
        .load("main")
        .await
        .unwrap()
        .state
        .level("MUG");
    assert_eq!((stock.available, stock.reserved, stock.shipped), (3, 0, 2));
    let shipment = services.shipments().load("ord-9").await.unwrap().state;
    assert_eq!(
        shipment.status,
        sagaflow_core::domain::ShipmentStatus::Confirmed
    );
}

#[tokio::test]
async fn the_shipping_saga_releases_the_stock_when_no_carrier_delivers() {
    let (services, clock) = services_with_stock().await;
    let executor = SagaExecutor::new(
        Arc::new(ServicesDispatcher::new(services.clone(), clock.clone())),
        Arc::new(SimSleeper::new(clock)),
    );
    let mut address = create_order().shipping_address;
    address.country = "AQ".into();
    let input = json!({"order_id": "ord-9", "lines": [{"sku": "MUG", "quantity": 2}], "shipping_address": address});
    let outcome = executor
        .execute(&shipping_saga().unwrap(), "ship-ord-9", input, "ord-9")
        .await;
    assert_eq!(outcome.status, SagaStatus::Compensated, "{outcome:?}");
    assert_eq!(
        outcome.failed_step.as_ref().map(|f| f.step.as_str()),
        Some("create_shipment")
    );
    assert_eq!(outcome.compensated, ["reserve_inventory"]);
    let stock = services
        .inventory()
        .load("main")
        .await
        .unwrap()
        .state
        .level("MUG");
    assert_eq!((stock.available, stock.reserved, stock.shipped), (5, 0, 0));
}

#[tokio::test]
async fn intake_runs_the_limit_check_only_for_large_orders() {
    let pipeline = intake_pipeline(Arc::new(Catalog::demo())).unwrap();
    let request = |quantity| PlaceOrder {
        order_id: "ord-9".into(),
        customer_id: "cust-9".into(),
        lines: vec![sagaflow_core::domain::StockLine {
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
