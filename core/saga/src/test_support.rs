//! The saga the tests of both runtimes share: reserve stock, charge the payment, ship.

use serde_json::{json, Value};

use super::definition::{CommandBuildError, SagaCommand, SagaData, SagaDefinition, SagaStep};

fn field(data: &SagaData, name: &str) -> Result<Value, CommandBuildError> {
    data.input
        .get(name)
        .cloned()
        .ok_or_else(|| CommandBuildError::MissingInput(name.to_string()))
}

fn order_id(data: &SagaData) -> Result<String, CommandBuildError> {
    field(data, "order_id")?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| CommandBuildError::MissingText("order_id".into()))
}

/// The steps of the test saga, so a test can tweak one before building.
pub(crate) fn order_steps() -> Vec<SagaStep> {
    vec![
        SagaStep::new("reserve", |data: &SagaData| {
            Ok(SagaCommand::new(
                "inventory.reserve",
                order_id(data)?,
                json!({ "sku": field(data, "sku")?, "qty": field(data, "qty")? }),
            ))
        })
        .succeeds_on(&["inventory.reserved"])
        .fails_on(&["inventory.reservation_failed"])
        .compensate_with(
            |data: &SagaData| {
                Ok(SagaCommand::new(
                    "inventory.release",
                    order_id(data)?,
                    json!({ "sku": field(data, "sku")? }),
                ))
            },
            &["inventory.released"],
        )
        .timeout_ms(1_000),
        SagaStep::new("charge", |data: &SagaData| {
            Ok(SagaCommand::new(
                "payment.charge",
                order_id(data)?,
                json!({ "amount": field(data, "amount")? }),
            ))
        })
        .succeeds_on(&["payment.processed"])
        .fails_on(&["payment.declined"])
        .compensate_with(
            |data: &SagaData| {
                // The refund needs what the charge reply said, when there was one.
                let payment_id = data
                    .reply("charge")
                    .and_then(|r| r.get("payment_id"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let because = data.failure.as_ref().map(|f| f.step.clone());
                Ok(SagaCommand::new(
                    "payment.refund",
                    order_id(data)?,
                    json!({ "payment_id": payment_id, "because": because }),
                ))
            },
            &["payment.refunded", "payment.voided"],
        )
        .timeout_ms(2_000),
        SagaStep::new("ship", |data: &SagaData| {
            Ok(SagaCommand::new(
                "shipment.schedule",
                order_id(data)?,
                json!({ "sku": field(data, "sku")? }),
            ))
        })
        .succeeds_on(&["shipment.scheduled"])
        .fails_on(&["shipment.failed"])
        .timeout_ms(3_000),
    ]
}

/// Builds a definition named `order_fulfilment` from `steps`, completing with `order.complete`.
pub(crate) fn order_saga_with(steps: Vec<SagaStep>) -> SagaDefinition {
    let mut builder = SagaDefinition::new("order_fulfilment");
    for step in steps {
        builder = builder.step(step);
    }
    builder
        .on_completed(|data: &SagaData| {
            Ok(vec![SagaCommand::new(
                "order.complete",
                order_id(data)?,
                json!({}),
            )])
        })
        .build()
        .expect("the test saga is valid")
}

/// The three-step test saga: reserve → charge → ship (ship has no compensation).
pub(crate) fn order_saga() -> SagaDefinition {
    order_saga_with(order_steps())
}

/// The input the test saga starts with.
pub(crate) fn order_input() -> Value {
    json!({ "order_id": "ord-1", "sku": "sku-7", "qty": 2, "amount": 1500 })
}
