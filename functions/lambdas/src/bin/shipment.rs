//! The shipment function: schedules, confirms and cancels shipments on
//! `sagaflow.commands.shipment`, and in choreographed orders schedules one once the stock is
//! reserved. Failed records are reported as partial batch failures; bad ones are dead-lettered.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sagaflow_lambdas::run_service("shipment").await
}
