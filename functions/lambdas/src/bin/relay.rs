//! The outbox relay function: triggered by the events table's DynamoDB stream, it publishes
//! every committed event to its aggregate's events topic and the commands that saga events
//! carry to the services' command topics. A record it cannot read goes to the dead-letter
//! topic; a record it cannot publish now is reported so the stream retries from there.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sagaflow_lambdas::run_relay().await
}
