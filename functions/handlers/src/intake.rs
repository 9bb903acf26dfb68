//! The front door's intake: every order a customer places (`saga.start` at the orchestrator,
//! `order.create` at the order service) goes through the intake pipeline before it is
//! accepted: validated, its SKUs found and its prices checked in the catalogue, large orders
//! held to the online limit. A refused order is dead-lettered with the stage and the field.

use std::sync::Arc;

use sagaflow_eventsourcing::pipeline::{Pipeline, PipelineError};
use sagaflow_orders::domain::CreateOrder;
use sagaflow_orders::flow::intake::{
    check_order, intake_pipeline, Catalog, IntakeOrder, IntakeRefusal,
};
use sagaflow_saga::SagaDefinitionError;

use crate::service::UnknownService;

/// Why a handler could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HandlerSetupError {
    /// A service name that is not one of the services.
    #[error(transparent)]
    Service(#[from] UnknownService),
    /// A saga definition is invalid.
    #[error(transparent)]
    Saga(#[from] SagaDefinitionError),
    /// The intake pipeline could not be built.
    #[error("the intake pipeline cannot be built: {0}")]
    Intake(#[from] PipelineError),
}

/// The intake pipeline over one catalogue, shared by the functions' invocations.
#[derive(Clone)]
pub struct Intake {
    pipeline: Arc<Pipeline<IntakeOrder>>,
}

impl Intake {
    /// Intake over `catalog`.
    pub fn new(catalog: Arc<Catalog>) -> Result<Self, PipelineError> {
        Ok(Self {
            pipeline: Arc::new(intake_pipeline(catalog)?),
        })
    }

    /// Intake over the catalogue sagaflow ships with (`Catalog::demo`).
    pub fn with_default_catalog() -> Result<Self, PipelineError> {
        Self::new(Arc::new(Catalog::demo()))
    }

    /// Runs `order` through intake: the order with its prices confirmed, or why it is refused.
    pub async fn check(&self, order: &CreateOrder) -> Result<CreateOrder, IntakeRefusal> {
        check_order(&self.pipeline, order).await
    }
}
