//! The deadline timer function: run by a schedule (an EventBridge rule, every minute), it
//! ticks every saga whose step deadline has passed, found through the events table's wake-up
//! index, so a step whose reply never comes fails and its saga compensates. It returns what it
//! did; if any tick failed it reports an error (those sagas stay due for the next run).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sagaflow_lambdas::run_deadline().await
}
