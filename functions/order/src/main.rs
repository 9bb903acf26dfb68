//! The order function: creates, completes and cancels orders on `sagaflow.commands.order`, and
//! in choreographed orders completes or cancels them as payment, stock and shipping report back.
//! Failed records are reported as partial batch failures; bad ones are dead-lettered.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use sagaflow_aws::FunctionContext;
use sagaflow_handlers::KafkaBatchResponse;
use sagaflow_handlers::KafkaFunction;
use serde_json::Value;

/// The service this function runs.
const SERVICE: &str = "order";

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
    use sagaflow_core::domain::OrderStatus;
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

    #[tokio::test]
    async fn handles_the_msk_payload() {
        run_fixture("msk-event.json").await;
    }

    #[tokio::test]
    async fn handles_the_self_managed_kafka_payload() {
        run_fixture("self-managed-event.json").await;
    }
}
