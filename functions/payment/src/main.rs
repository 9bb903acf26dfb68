//! The payment function: charges and refunds on `sagaflow.commands.payment`, and in
//! choreographed orders charges when an order is created and refunds when stock or shipping
//! fails. Failed records are reported as partial batch failures; bad ones are dead-lettered.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use sagaflow_aws::FunctionContext;
use sagaflow_handlers::KafkaBatchResponse;
use sagaflow_handlers::KafkaFunction;
use serde_json::Value;

/// The service this function runs.
const SERVICE: &str = "payment";

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
    use sagaflow_core::domain::PaymentStatus;
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

    #[tokio::test]
    async fn handles_the_msk_payload() {
        run_fixture("msk-event.json").await;
    }

    #[tokio::test]
    async fn handles_the_self_managed_kafka_payload() {
        run_fixture("self-managed-event.json").await;
    }
}
