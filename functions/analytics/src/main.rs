//! The analytics function: reads every aggregate's events (`sagaflow.events.*`) and applies
//! each exactly once to the analytics table; invoked with `{"query": "summary"}` it answers the
//! summary query through the query bus. Failed records are reported as partial batch failures;
//! events it cannot read are dead-lettered.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use sagaflow_aws::FunctionContext;
use sagaflow_handlers::{AnalyticsFunction, AnalyticsResponse};
use serde_json::Value;

/// Handles one invocation: a Kafka batch or a query.
async fn handler(
    function: &AnalyticsFunction,
    event: LambdaEvent<Value>,
) -> Result<AnalyticsResponse, Error> {
    Ok(function.invoke(event.payload).await?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let function = FunctionContext::from_env()
        .await?
        .analytics_function()
        .await?;
    run(service_fn(|event| handler(&function, event))).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use lambda_runtime::Context;
    use sagaflow_core::domain::order::order_upcasters;
    use sagaflow_core::projection::InMemoryAnalyticsStore;
    use sagaflow_handlers::{AnalyticsHandler, RecordedDeadLetters};
    use sagaflow_kafka::Topics;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let text = std::fs::read_to_string(format!("fixtures/{name}")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    async fn invoke(function: &AnalyticsFunction, payload: Value) -> Value {
        let event = LambdaEvent {
            payload,
            context: Context::default(),
        };
        serde_json::to_value(handler(function, event).await.unwrap()).unwrap()
    }

    async fn run_fixture(name: &str) {
        let read_model = Arc::new(InMemoryAnalyticsStore::new(order_upcasters()));
        let dead_letters = RecordedDeadLetters::default();
        let function = AnalyticsFunction::new(
            AnalyticsHandler::new(read_model.clone(), Topics::default()),
            Arc::new(dead_letters.clone()),
        )
        .unwrap();

        for delivery in ["first", "redelivery"] {
            let response = invoke(&function, fixture(name)).await;
            assert_eq!(
                response,
                json!({ "batchItemFailures": [] }),
                "{name} {delivery}"
            );
        }

        let summary = invoke(&function, json!({ "query": "summary" })).await;
        assert_eq!(
            summary["orders_by_status"],
            json!({ "completed": 1 }),
            "{name}"
        );
        assert_eq!(summary["captured_minor"], json!({ "EUR": 2500 }), "{name}");
        assert_eq!(
            summary["events_by_type"],
            json!({ "order.created": 1, "order.completed": 1, "payment.processed": 1 }),
            "{name}: the republished order.created and the redelivery count once"
        );
        assert_eq!(
            read_model.projection().duplicates_ignored(),
            5,
            "{name}: the republished order.created, then all four good records again"
        );
        let letters = dead_letters.letters();
        assert_eq!(
            letters.len(),
            2,
            "{name}: the misshapen event, once per delivery"
        );
        assert_eq!(letters[0].source.offset, 8);
        assert!(
            letters[0].reason.contains("order.created"),
            "{name}: {}",
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

    #[tokio::test]
    async fn refuses_an_unknown_query_and_a_payload_that_is_neither() {
        let function = AnalyticsFunction::new(
            AnalyticsHandler::new(
                Arc::new(InMemoryAnalyticsStore::new(order_upcasters())),
                Topics::default(),
            ),
            Arc::new(RecordedDeadLetters::default()),
        )
        .unwrap();
        let err = function
            .invoke(json!({ "query": "revenue" }))
            .await
            .unwrap_err();
        assert!(err.contains("unknown analytics query"), "{err}");
        let err = function.invoke(json!([1, 2])).await.unwrap_err();
        assert!(err.contains("neither a query nor a Kafka batch"), "{err}");
    }
}
