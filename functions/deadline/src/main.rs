//! The deadline timer function: run by a schedule (an EventBridge rule, every minute), it
//! ticks every saga whose step deadline has passed, found through the events table's wake-up
//! index, so a step whose reply never comes fails and its saga compensates. It returns what it
//! did; if any tick failed it reports an error (those sagas stay due for the next run).

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use sagaflow_aws::FunctionContext;
use sagaflow_core::EventStore;
use sagaflow_handlers::clock;
use sagaflow_handlers::{DeadlineTimer, TickReport};
use serde_json::Value;

/// Handles one scheduled run; the schedule's payload carries nothing the timer needs.
async fn handler<S: EventStore + 'static>(
    timer: &DeadlineTimer<S>,
    _event: LambdaEvent<Value>,
) -> Result<TickReport, Error> {
    let report = timer.tick_due(clock::now()).await?;
    if report.failed.is_empty() {
        Ok(report)
    } else {
        Err(format!(
            "{} of {} due sagas could not be ticked: {}",
            report.failed.len(),
            report.due,
            report.failed.join("; ")
        )
        .into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let timer = FunctionContext::deadline_timer_from_env().await?;
    run(service_fn(|event| handler(&timer, event))).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use lambda_runtime::Context;
    use sagaflow_core::domain::fixtures::address;
    use sagaflow_core::domain::{CreateOrder, Flow, Money, OrderLine};
    use sagaflow_core::flow::sagas::{StepTiming, ORDER_SAGA};
    use sagaflow_core::saga::{InstanceStatus, StepKind};
    use sagaflow_core::{InMemoryEventStore, Timestamp};
    use sagaflow_handlers::OrchestratorHandler;
    use sagaflow_kafka::Topics;

    const STEP_TIMEOUT_MS: i64 = 60_000;

    fn order(order_id: &str) -> serde_json::Value {
        serde_json::to_value(CreateOrder {
            order_id: order_id.into(),
            customer_id: "cust-7".into(),
            lines: vec![OrderLine {
                sku: "MUG".into(),
                quantity: 1,
                unit_price: Money::eur(1_250),
            }],
            payment_method: "card-ok".into(),
            shipping_address: address(),
            flow: Flow::Orchestrated,
        })
        .unwrap()
    }

    async fn scheduled_run(timer: &DeadlineTimer<InMemoryEventStore>) -> TickReport {
        let text = std::fs::read_to_string("fixtures/scheduled-event.json").unwrap();
        let event = LambdaEvent {
            payload: serde_json::from_str(&text).unwrap(),
            context: Context::default(),
        };
        handler(timer, event).await.unwrap()
    }

    #[tokio::test]
    async fn a_step_past_its_deadline_fails_and_its_saga_compensates_once() {
        let store = Arc::new(InMemoryEventStore::new());
        let orchestrator = OrchestratorHandler::with_step_timing(
            store.clone(),
            Topics::default(),
            // One attempt per forward step, so the first overdue deadline fails the step.
            StepTiming {
                timeout_ms: STEP_TIMEOUT_MS,
                forward_attempts: 1,
                ..StepTiming::default()
            },
        )
        .unwrap();
        let sagas = orchestrator.sagas().clone();
        let now = clock::now().as_millis();
        // One saga started two timeouts ago (its step is overdue), one just now (not yet due).
        for (id, started) in [("ord-late", now - 2 * STEP_TIMEOUT_MS), ("ord-fresh", now)] {
            sagas
                .start(ORDER_SAGA, id, order(id), id, Timestamp(started))
                .await
                .unwrap();
        }
        let timer = DeadlineTimer::new(store.clone(), sagas.clone());

        let first = scheduled_run(&timer).await;
        assert_eq!(
            first,
            TickReport {
                due: 1,
                advanced: 1,
                unchanged: 0,
                failed: vec![]
            }
        );
        let late = sagas.repository().load("ord-late").await.unwrap().state;
        assert_eq!(late.status(), InstanceStatus::Compensating);
        let (step, kind, deadline) = late.awaiting().expect("awaits its compensation");
        assert_eq!((step, kind), ("create_order", StepKind::Compensation));
        assert!(
            deadline.as_millis() > now,
            "the compensation has a fresh deadline"
        );
        let fresh = sagas.repository().load("ord-fresh").await.unwrap().state;
        assert_eq!(fresh.status(), InstanceStatus::Running, "not due yet");

        // The next run finds nothing due: the tick moved the late saga's wake-up time on.
        assert_eq!(scheduled_run(&timer).await, TickReport::default());
    }
}
