//! The analytics function: reads every aggregate's events (`sagaflow.events.*`) and applies
//! each exactly once to the analytics table; invoked with `{"query": "summary"}` it answers the
//! summary query through the query bus. Failed records are reported as partial batch failures;
//! events it cannot read are dead-lettered.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sagaflow_lambdas::run_analytics().await
}
