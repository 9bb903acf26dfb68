//! The orchestrator function: starts an order's saga from each `saga.start` command on the
//! front door (`sagaflow.commands.saga`), and feeds every service's events
//! (`sagaflow.events.*`) to the saga of their order, which records the next command to send.
//! Failed records are reported as partial batch failures; bad ones are dead-lettered.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use sagaflow_aws::FunctionContext;
use sagaflow_handlers::KafkaBatchResponse;
use sagaflow_handlers::KafkaFunction;
use serde_json::Value;

/// Handles one batch from the Kafka trigger.
async fn handler(
    function: &KafkaFunction,
    event: LambdaEvent<Value>,
) -> Result<KafkaBatchResponse, Error> {
    Ok(function.handle_payload(event.payload).await?.response)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let function = FunctionContext::from_env().await?.orchestrator_function()?;
    run(service_fn(|event| handler(&function, event))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_runtime::Context;
    use sagaflow_core::domain::{Address, CreateOrder, Flow, Money, OrderLine};
    use sagaflow_core::flow::sagas::ORDER_SAGA;
    use sagaflow_core::saga::{InstanceStatus, StepKind};
    use sagaflow_core::Timestamp;
    use sagaflow_handlers::fixture_run::{load_kafka_fixture, MemoryFunction};

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
            )
            .await
            .unwrap();
        assert_eq!(started.len(), 2, "{name}: started, create_order requested");
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

    #[tokio::test]
    async fn handles_the_msk_payload() {
        run_fixture("msk-event.json").await;
    }

    #[tokio::test]
    async fn handles_the_self_managed_kafka_payload() {
        run_fixture("self-managed-event.json").await;
    }
}
