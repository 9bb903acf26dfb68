//! The shipping function: schedules, confirms and cancels shipments on
//! `sagaflow.commands.shipment`, and in choreographed orders schedules one once the stock is
//! reserved. Failed records are reported as partial batch failures; bad ones are dead-lettered.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use sagaflow_aws::FunctionContext;
use sagaflow_handlers::KafkaBatchResponse;
use sagaflow_handlers::KafkaFunction;
use serde_json::Value;

/// The service this function runs (the `shipment` aggregate's).
const SERVICE: &str = "shipment";

/// Handles one batch from the Kafka trigger.
async fn handler(
    function: &KafkaFunction,
    event: LambdaEvent<Value>,
) -> Result<KafkaBatchResponse, Error> {
    Ok(function.handle_payload(event.payload).await?.response)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let function = FunctionContext::from_env()
        .await?
        .service_function(SERVICE)?;
    run(service_fn(|event| handler(&function, event))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_runtime::Context;
    use sagaflow_core::domain::ShipmentStatus;
    use sagaflow_handlers::fixture_run::{load_kafka_fixture, MemoryFunction};

    async fn run_fixture(name: &str) {
        let f = MemoryFunction::service(SERVICE).unwrap();
        let run = f
            .deliver_twice(load_kafka_fixture(name).unwrap(), |payload| {
                let function = &f.function;
                async move {
                    let event = LambdaEvent {
                        payload,
                        context: Context::default(),
                    };
                    handler(function, event).await.unwrap()
                }
            })
            .await;
        run.assert_clean(name);
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

    #[tokio::test]
    async fn handles_the_msk_payload() {
        run_fixture("msk-event.json").await;
    }

    #[tokio::test]
    async fn handles_the_self_managed_kafka_payload() {
        run_fixture("self-managed-event.json").await;
    }
}
