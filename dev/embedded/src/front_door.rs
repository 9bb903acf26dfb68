//! The front door of `make run`, behind the mediator: `send(PlaceOrderCommand)` runs the intake
//! pipeline and then places the order as a client would on AWS, by publishing the documented
//! front-door command (`saga.start` to the orchestrator, `order.create` to the order service);
//! an in-process order runs the seed's in-process saga coordinator over the services instead.
//! `send(CancelOrderCommand)` publishes the customer's cancel; `query(GetStockLevels)` reads
//! the stock of the SKUs it names.

use std::collections::BTreeMap;
use std::sync::Arc;

use sagaflow_eventsourcing::clock::SimClock;
use sagaflow_eventsourcing::command::CommandEnvelope;
use sagaflow_eventsourcing::mediator::{Command, Mediator, Query};
use sagaflow_eventsourcing::pipeline::{Pipeline, StageStatus};
use sagaflow_eventsourcing::InMemoryEventStore;
use sagaflow_eventsourcing::RepositoryError;
use sagaflow_handlers::orchestrator::{cancel_command, place_command};
use sagaflow_orders::domain::{Flow, StockError, StockLevel};
use sagaflow_orders::flow::intake::{
    intake_pipeline, run_intake, Catalog, IntakeOrder, PlaceOrder,
};
use sagaflow_orders::flow::sagas::{order_saga, ServicesDispatcher, SimSleeper};
use sagaflow_orders::flow::services::FlowServices;
use sagaflow_records::{command_record, PublishFailure, Publisher, Topics};
use sagaflow_saga::{SagaDefinition, SagaExecutor, SagaOutcome};

use crate::system::{EmbeddedError, EmbeddedSystem};

/// What placing an order did at the front door.
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    /// Intake accepted the order and its flow started.
    Accepted {
        /// The intake stages, each with `ran` or `skipped`.
        intake: Vec<(String, String)>,
        /// For the in-process flow, the finished saga.
        in_process: Option<Box<SagaOutcome>>,
    },
    /// Intake refused it; nothing was written or published.
    Rejected {
        /// The stage that refused.
        stage: String,
        /// Why, naming the field.
        reason: String,
    },
}

/// Why the front door could not place an order it accepted.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// Intake accepted the order but did not price it.
    #[error("intake finished without pricing order {0}")]
    NotPriced(String),
    /// The order could not be written as a command payload.
    #[error("order {order}: {source}")]
    Encode {
        /// The order.
        order: String,
        /// What failed.
        #[source]
        source: serde_json::Error,
    },
    /// The in-process saga refused to start.
    #[error("order {order}: the in-process saga refused it: {source}")]
    Saga {
        /// The order.
        order: String,
        /// Why.
        #[source]
        source: sagaflow_saga::SagaError,
    },
    /// The front-door command was not published.
    #[error("order {order}: the front-door command was not published: {source}")]
    Publish {
        /// The order.
        order: String,
        /// What the broker said.
        #[source]
        source: PublishFailure,
    },
}

/// The front door's command: place an order (intake, then its flow).
#[derive(Clone, Debug)]
pub struct PlaceOrderCommand(pub PlaceOrder);

impl Command for PlaceOrderCommand {
    type Output = Result<Placement, PlaceError>;
}

/// The customer's cancel of a running order: a `saga.cancel` on the front-door topic, or for a
/// choreographed order `order.request_cancel` to the order service. Its `attempt` tells one
/// cancel from another (the same attempt again is the same command).
#[derive(Clone, Debug)]
pub struct CancelOrderCommand {
    /// The order.
    pub order_id: String,
    /// Its flow, which says who takes the cancel.
    pub flow: Flow,
    /// Why, in the customer's words.
    pub reason: String,
    /// Which of the customer's cancels this is.
    pub attempt: u32,
}

impl Command for CancelOrderCommand {
    type Output = Result<(), PlaceError>;
}

/// A query for the stock levels of these SKUs (each SKU's stock is its own stream).
#[derive(Clone, Debug, Default)]
pub struct GetStockLevels(pub Vec<String>);

impl Query for GetStockLevels {
    type Output = Result<BTreeMap<String, StockLevel>, RepositoryError<StockError>>;
}

/// What placing an order needs, shared by the mediator's handlers.
struct Door {
    intake: Pipeline<IntakeOrder>,
    publisher: Arc<dyn Publisher>,
    topics: Topics,
    services: FlowServices<InMemoryEventStore>,
    clock: SimClock,
    in_process_saga: SagaDefinition,
}

/// The mediator of the front door over `system`: `send(PlaceOrderCommand)`,
/// `query(GetStockLevels)`.
pub fn front_door(system: &EmbeddedSystem) -> Result<Mediator, EmbeddedError> {
    let door = Arc::new(Door {
        intake: intake_pipeline(Arc::new(Catalog::demo()))?,
        publisher: system.broker().clone(),
        topics: system.topics().clone(),
        services: system.services().clone(),
        clock: system.clock().clone(),
        in_process_saga: order_saga()?,
    });
    let mut mediator = Mediator::new();
    {
        let door = door.clone();
        mediator.register_command_handler(move |PlaceOrderCommand(request)| {
            let door = door.clone();
            async move { door.place(request).await }
        })?;
    }
    {
        let door = door.clone();
        mediator.register_command_handler(move |cancel: CancelOrderCommand| {
            let door = door.clone();
            async move { door.cancel(cancel).await }
        })?;
    }
    mediator.register_query_handler(move |GetStockLevels(skus)| {
        let services = door.services.clone();
        async move {
            let mut levels = BTreeMap::new();
            for sku in skus {
                let level = services.stock().load(&sku).await?.state.level;
                levels.insert(sku, level);
            }
            Ok(levels)
        }
    })?;
    Ok(mediator)
}

impl Door {
    async fn cancel(&self, cancel: CancelOrderCommand) -> Result<(), PlaceError> {
        let command = cancel_command(
            &cancel.order_id,
            cancel.flow,
            &cancel.reason,
            cancel.attempt,
            self.clock.now(),
        );
        self.publish(cancel.order_id, command).await
    }

    async fn publish(&self, order_id: String, command: CommandEnvelope) -> Result<(), PlaceError> {
        self.publisher
            .publish(&[command_record(&self.topics, &command)])
            .await
            .map_err(|source| PlaceError::Publish {
                order: order_id,
                source,
            })
    }

    async fn place(&self, request: PlaceOrder) -> Result<Placement, PlaceError> {
        let run = run_intake(&self.intake, request).await;
        let intake = run
            .trace
            .iter()
            .map(|t| {
                let status = match &t.status {
                    StageStatus::Ran => "ran",
                    StageStatus::Skipped => "skipped",
                    StageStatus::Failed { .. } => "failed",
                    StageStatus::NotReached => "not reached",
                };
                (t.stage.clone(), status.to_string())
            })
            .collect();
        let order = match run.output {
            Ok(order) => order,
            Err(failure) => {
                return Ok(Placement::Rejected {
                    stage: failure.stage,
                    reason: failure.error.to_string(),
                })
            }
        };
        let order_id = order.request.order_id.clone();
        let Some(create) = order.priced else {
            return Err(PlaceError::NotPriced(order_id));
        };
        let now = self.clock.now();
        if create.flow == Flow::InProcess {
            let payload = serde_json::to_value(&create).map_err(|source| PlaceError::Encode {
                order: order_id.clone(),
                source,
            })?;
            let executor = SagaExecutor::new(
                Arc::new(ServicesDispatcher::new(
                    self.services.clone(),
                    self.clock.clone(),
                )),
                Arc::new(self.clock.clone()),
                Arc::new(SimSleeper::new(self.clock.clone())),
            );
            let outcome = executor
                .execute(&self.in_process_saga, &order_id, payload, &order_id)
                .await
                .map_err(|source| PlaceError::Saga {
                    order: order_id.clone(),
                    source,
                })?;
            return Ok(Placement::Accepted {
                intake,
                in_process: Some(Box::new(outcome)),
            });
        }
        let command =
            place_command(&create, &format!("request-{order_id}"), now).map_err(|source| {
                PlaceError::Encode {
                    order: order_id.clone(),
                    source,
                }
            })?;
        self.publish(order_id, command).await?;
        Ok(Placement::Accepted {
            intake,
            in_process: None,
        })
    }
}
