//! The payment function: charges and refunds on `sagaflow.commands.payment`, and in
//! choreographed orders charges when an order is created and refunds when stock or shipping
//! fails. Failed records are reported as partial batch failures; bad ones are dead-lettered.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sagaflow_lambdas::run_service("payment").await
}
