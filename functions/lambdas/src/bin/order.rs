//! The order function: creates, completes and cancels orders on `sagaflow.commands.order`, and
//! in choreographed orders completes or cancels them as payment, stock and shipping report back.
//! Failed records are reported as partial batch failures; bad ones are dead-lettered.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sagaflow_lambdas::run_service("order").await
}
