//! The inventory function: restocks, reserves, releases and ships stock on
//! `sagaflow.commands.inventory`, and in choreographed orders reserves once payment is processed,
//! ships once the shipment is scheduled and releases when it fails. Failed records are reported
//! as partial batch failures; bad ones are dead-lettered.

use std::sync::Arc;

use aws_lambda_events::event::kafka::KafkaEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use sagaflow_handlers::KafkaBatchResponse;
use sagaflow_handlers::{FunctionContext, KafkaFunction, ServiceHandler};

/// The service this function runs.
const SERVICE: &str = "inventory";

/// Handles one batch from the Kafka trigger.
async fn handler(
    function: &KafkaFunction,
    event: LambdaEvent<KafkaEvent>,
) -> Result<KafkaBatchResponse, Error> {
    Ok(function.handle_batch(&event.payload).await.response)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let context = FunctionContext::from_env().await?;
    let service =
        ServiceHandler::new(SERVICE, context.store.clone(), context.kafka.topics.clone())?;
    let function = KafkaFunction::new(
        Arc::new(service),
        Arc::new(context.dead_letters.clone()),
        Default::default(),
    );
    run(service_fn(|event| handler(&function, event))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_runtime::Context;
    use sagaflow_core::domain::inventory::DEFAULT_WAREHOUSE;
    use sagaflow_core::domain::StockLevel;
    use sagaflow_core::InMemoryEventStore;
    use sagaflow_handlers::RecordedDeadLetters;
    use sagaflow_kafka::Topics;

    async fn run_fixture(name: &str) {
        let payload: KafkaEvent =
            serde_json::from_str(&std::fs::read_to_string(format!("fixtures/{name}")).unwrap())
                .unwrap();
        let store = Arc::new(InMemoryEventStore::new());
        let service = ServiceHandler::new(SERVICE, store.clone(), Topics::default()).unwrap();
        let dead_letters = RecordedDeadLetters::default();
        let function = KafkaFunction::new(
            Arc::new(service.clone()),
            Arc::new(dead_letters.clone()),
            Default::default(),
        );
        let event = LambdaEvent {
            payload: payload.clone(),
            context: Context::default(),
        };
        let response = handler(&function, event).await.unwrap();
        assert!(
            response.batch_item_failures.is_empty(),
            "{name}: {response:?}"
        );

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
        let letters = dead_letters.letters();
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

        // The trigger redelivers the same batch: nothing changes.
        let before = store.event_count();
        let again = handler(
            &function,
            LambdaEvent {
                payload,
                context: Context::default(),
            },
        )
        .await
        .unwrap();
        assert!(again.batch_item_failures.is_empty());
        assert_eq!(
            store.event_count(),
            before,
            "{name}: a redelivered batch appends nothing"
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
