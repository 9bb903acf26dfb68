//! The inventory function: restocks, reserves, releases and ships stock on
//! `sagaflow.commands.inventory`, and in choreographed orders reserves once payment is processed,
//! ships once the shipment is scheduled and releases when it fails. Failed records are reported
//! as partial batch failures; bad ones are dead-lettered.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sagaflow_lambdas::run_service("inventory").await
}
