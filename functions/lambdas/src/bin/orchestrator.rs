//! The orchestrator function: starts an order's saga from each `saga.start` command on the
//! front door (`sagaflow.commands.saga`), and feeds every service's events
//! (`sagaflow.events.*`) to the saga of their order, which records the next command to send.
//! Failed records are reported as partial batch failures; bad ones are dead-lettered.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sagaflow_lambdas::run_orchestrator().await
}
