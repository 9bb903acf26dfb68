//! The inventory function: restocks, reserves, releases and ships stock on
//! `sagaflow.commands.inventory`, and in choreographed orders reserves once payment is processed,
//! ships once the shipment is scheduled and releases when it fails. Failed records are reported
//! as partial batch failures; bad ones are dead-lettered.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use sagaflow_aws::FunctionContext;
use sagaflow_handlers::KafkaBatchResponse;
use sagaflow_handlers::KafkaFunction;
use serde_json::Value;

/// The service this function runs.
const SERVICE: &str = "inventory";

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
    use sagaflow_core::domain::inventory::DEFAULT_WAREHOUSE;
    use sagaflow_core::domain::StockLevel;
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
        let (store, service) = (&f.store, &f.handler);

        // Restocked 10, reserved 2 for ord-3001, released them: all 10 are free again.
        let warehouse = service
            .services()
            .inventory()
            .load(DEFAULT_WAREHOUSE)
            .await
            .unwrap();
        assert_eq!(
            warehouse.version, 3,
            "{name}: restocked, reserved, released"
        );
        assert_eq!(
            warehouse.state.level("MUG"),
            StockLevel {
                available: 10,
                reserved: 0,
                shipped: 0
            },
            "{name}"
        );
        assert!(warehouse.state.reservations.is_empty(), "{name}");
        let types: Vec<String> = store
            .all_events()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert_eq!(
            types,
            [
                "inventory.restocked",
                "inventory.reserved",
                "inventory.released"
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

    #[tokio::test]
    async fn handles_the_msk_payload() {
        run_fixture("msk-event.json").await;
    }

    #[tokio::test]
    async fn handles_the_self_managed_kafka_payload() {
        run_fixture("self-managed-event.json").await;
    }
}
