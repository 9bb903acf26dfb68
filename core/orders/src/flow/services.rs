//! The four services as one command handler: decode a command envelope into a typed aggregate
//! command and run it through that aggregate's repository, recording its effect once.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::domain::types::validate_id;
use crate::domain::{
    decide_with_stock, InventoryCommand, Order, Payment, Reservation, Shipment, Stock,
    StockCommand, StockError,
};
use sagaflow_eventsourcing::aggregate::Aggregate;
use sagaflow_eventsourcing::command::CommandEnvelope;
use sagaflow_eventsourcing::event::{CommandMeta, StoredEvent, Timestamp};
use sagaflow_eventsourcing::repository::{
    CommandOutcome, ConflictRetry, Repository, RepositoryError,
};
use sagaflow_eventsourcing::store::EventStore;
use sagaflow_eventsourcing::{Classified, Transience};

/// Why a command could not be handled; its [`Classified::transience`] decides retry or dead
/// letter.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ServiceError {
    /// No service handles this command type.
    #[error("unknown command type `{0}`")]
    UnknownCommand(String),
    /// The payload does not have the command's shape.
    #[error("payload of `{command_type}` has the wrong shape: {reason}")]
    InvalidPayload {
        /// The command type.
        command_type: String,
        /// The deserializer's complaint.
        reason: String,
    },
    /// The aggregate refused the command (invalid field, broken invariant).
    #[error("`{command_type}` refused: {reason}")]
    Rejected {
        /// The command type.
        command_type: String,
        /// The aggregate's error.
        reason: String,
    },
    /// The store failed or stayed contended; a retry may succeed.
    #[error("`{command_type}` failed for now: {reason}")]
    Transient {
        /// The command type.
        command_type: String,
        /// What failed.
        reason: String,
    },
    /// Stored data could not be read.
    #[error("`{command_type}` cannot read its aggregate: {reason}")]
    Corrupt {
        /// The command type.
        command_type: String,
        /// What failed.
        reason: String,
    },
}

impl Classified for ServiceError {
    /// Only a store that failed or stayed contended may let the command through later.
    fn transience(&self) -> Transience {
        match self {
            ServiceError::Transient { .. } => Transience::Transient,
            _ => Transience::Permanent,
        }
    }
}

/// What handling a command did.
#[derive(Clone, Debug, PartialEq)]
pub struct HandledCommand {
    /// Events appended (empty for a duplicate or a no-op).
    pub events: Vec<StoredEvent>,
    /// True when the command's effect had been recorded before.
    pub duplicate: bool,
}

/// Aggregates per service whose state a function keeps between commands (see
/// [`Repository::with_state_cache`]).
pub const STATE_CACHE_ENTRIES: usize = 4_096;

/// Attempts a reservation gets when other writers move its SKUs' stock under it: a batch runs
/// up to eight key groups (orders) at once, and orders for one SKU all write its stream, so a
/// hot SKU's last writer may lose a race to each of the others first.
pub const RESERVATION_ATTEMPTS: u32 = 10;

/// Order, payment, inventory and shipment services over one event store. The inventory
/// service keeps each order's reservation in its own stream and each SKU's stock in another.
pub struct FlowServices<S> {
    orders: Repository<Order, S>,
    payments: Repository<Payment, S>,
    inventory: Repository<Reservation, S>,
    stock: Repository<Stock, S>,
    shipments: Repository<Shipment, S>,
}

impl<S> Clone for FlowServices<S> {
    fn clone(&self) -> Self {
        Self {
            orders: self.orders.clone(),
            payments: self.payments.clone(),
            inventory: self.inventory.clone(),
            stock: self.stock.clone(),
            shipments: self.shipments.clone(),
        }
    }
}

impl<S: EventStore> FlowServices<S> {
    /// Services over `store`; each SKU's stock stream, which every order for the SKU appends
    /// to, is snapshotted every `snapshot_every` events.
    pub fn new(store: Arc<S>, snapshot_every: u64) -> Self {
        Self {
            orders: Repository::new(store.clone()).with_state_cache(STATE_CACHE_ENTRIES),
            payments: Repository::new(store.clone()).with_state_cache(STATE_CACHE_ENTRIES),
            inventory: Repository::new(store.clone())
                .with_state_cache(STATE_CACHE_ENTRIES)
                .with_conflict_retry(ConflictRetry {
                    max_attempts: RESERVATION_ATTEMPTS,
                }),
            stock: Repository::new(store.clone())
                .with_snapshots_every(snapshot_every)
                .with_state_cache(STATE_CACHE_ENTRIES),
            shipments: Repository::new(store).with_state_cache(STATE_CACHE_ENTRIES),
        }
    }

    /// The order repository, for reads such as choreography's order lookups.
    pub fn orders(&self) -> &Repository<Order, S> {
        &self.orders
    }

    /// The payment repository.
    pub fn payments(&self) -> &Repository<Payment, S> {
        &self.payments
    }

    /// The orders' reservations.
    pub fn inventory(&self) -> &Repository<Reservation, S> {
        &self.inventory
    }

    /// The stock of each SKU.
    pub fn stock(&self) -> &Repository<Stock, S> {
        &self.stock
    }

    /// The shipment repository.
    pub fn shipments(&self) -> &Repository<Shipment, S> {
        &self.shipments
    }

    /// Puts `quantity` units of `sku` into stock.
    pub async fn restock(
        &self,
        sku: &str,
        quantity: u32,
        now: Timestamp,
    ) -> Result<(), RepositoryError<StockError>> {
        let meta = CommandMeta::new("restock", format!("restock-{sku}"), now);
        self.stock
            .execute(sku, &StockCommand::Restock { quantity }, &meta)
            .await
            .map(|_| ())
    }

    /// Handles one command: decodes it for its aggregate and executes it exactly once.
    pub async fn handle(
        &self,
        command: &CommandEnvelope,
        now: Timestamp,
    ) -> Result<HandledCommand, ServiceError> {
        match command.aggregate_type() {
            "order" => execute(&self.orders, command, now).await,
            "payment" => execute(&self.payments, command, now).await,
            "inventory" => self.run_inventory(command, now).await,
            "shipment" => execute(&self.shipments, command, now).await,
            _ => Err(ServiceError::UnknownCommand(command.command_type.clone())),
        }
    }

    /// Runs an inventory command: `inventory.restock` on its SKU's stock, the others on their
    /// order's reservation together with the stock of the SKUs they involve, in one atomic
    /// write. The stream is the payload's SKU or order, so a command addressed to the one
    /// warehouse stream of earlier versions (`main`) finds it too.
    async fn run_inventory(
        &self,
        command: &CommandEnvelope,
        now: Timestamp,
    ) -> Result<HandledCommand, ServiceError> {
        if command.action() == RESTOCK {
            let restock = decode_restock(command)?;
            return self
                .stock
                .execute(
                    &restock.sku,
                    &StockCommand::Restock {
                        quantity: restock.quantity,
                    },
                    &command.meta(now),
                )
                .await
                .map(handled)
                .map_err(|e| service_error(&command.command_type, e));
        }
        let typed = decode_command::<Reservation>(command)?;
        self.inventory
            .execute_joint(
                &self.stock,
                typed.order_id(),
                &command.meta(now),
                |reservation| reservation.skus_for(&typed),
                |reservation, stock| decide_with_stock(reservation, stock, &typed),
            )
            .await
            .map(handled)
            .map_err(|e| service_error(&command.command_type, e))
    }

    /// Inventory commands to one target (their orders' first SKU) in order: consecutive
    /// reservations, releases and shipments of different orders are decided in turn and
    /// written together ([`Repository::execute_joint_all`]), so one SKU's commands in a batch
    /// wait for one write instead of one each. A restock, a command that does not decode, or
    /// a second command of the same order ends a group and goes on its own.
    async fn run_inventory_all(
        &self,
        run: &[&CommandEnvelope],
        now: Timestamp,
    ) -> Vec<Result<HandledCommand, ServiceError>> {
        let mut outcomes = Vec::with_capacity(run.len());
        let mut group: Vec<(&CommandEnvelope, InventoryCommand)> = Vec::new();
        for &command in run {
            let typed = match command.action() {
                RESTOCK => None,
                _ => decode_command::<Reservation>(command).ok(),
            };
            let repeats = |typed: &InventoryCommand| {
                group.iter().any(|(_, c)| c.order_id() == typed.order_id())
            };
            match typed {
                Some(typed) if !repeats(&typed) && group.len() < INVENTORY_GROUP => {
                    group.push((command, typed));
                }
                Some(typed) => {
                    outcomes.extend(
                        self.reserve_together(&std::mem::take(&mut group), now)
                            .await,
                    );
                    group.push((command, typed));
                }
                None => {
                    outcomes.extend(
                        self.reserve_together(&std::mem::take(&mut group), now)
                            .await,
                    );
                    outcomes.push(self.run_inventory(command, now).await);
                }
            }
        }
        outcomes.extend(self.reserve_together(&group, now).await);
        outcomes
    }

    /// One group of reservation commands of different orders, written together if every one
    /// is accepted.
    async fn reserve_together(
        &self,
        group: &[(&CommandEnvelope, InventoryCommand)],
        now: Timestamp,
    ) -> Vec<Result<HandledCommand, ServiceError>> {
        let metas: Vec<CommandMeta> = group.iter().map(|(c, _)| c.meta(now)).collect();
        let commands: Vec<(&str, &CommandMeta, &InventoryCommand)> = group
            .iter()
            .zip(&metas)
            .map(|((_, typed), meta)| (typed.order_id(), meta, typed))
            .collect();
        self.inventory
            .execute_joint_all(
                &self.stock,
                &commands,
                |reservation, typed| reservation.skus_for(typed),
                decide_with_stock,
            )
            .await
            .into_iter()
            .zip(group)
            .map(|(outcome, (command, _))| {
                outcome
                    .map(handled)
                    .map_err(|e| service_error(&command.command_type, e))
            })
            .collect()
    }

    /// Handles commands in order, as [`FlowServices::handle`] would one by one, but each run of
    /// consecutive commands to the same aggregate shares one load and one append.
    pub async fn handle_all(
        &self,
        commands: &[CommandEnvelope],
        now: Timestamp,
    ) -> Vec<Result<HandledCommand, ServiceError>> {
        let mut outcomes = Vec::with_capacity(commands.len());
        for run in commands
            .chunk_by(|a, b| a.aggregate_type() == b.aggregate_type() && a.target_id == b.target_id)
        {
            let run: Vec<&CommandEnvelope> = run.iter().collect();
            let Some(first) = run.first() else { continue };
            outcomes.extend(match first.aggregate_type() {
                "order" => execute_together(&self.orders, &run, now).await,
                "payment" => execute_together(&self.payments, &run, now).await,
                "inventory" => self.run_inventory_all(&run, now).await,
                "shipment" => execute_together(&self.shipments, &run, now).await,
                _ => run
                    .iter()
                    .map(|c| Err(ServiceError::UnknownCommand(c.command_type.clone())))
                    .collect(),
            });
        }
        outcomes
    }
}

/// The inventory command that restocks a SKU: `inventory.restock` with `sku` and `quantity`.
const RESTOCK: &str = "restock";
/// At most this many inventory commands share one write: each order brings its reservation's
/// event and idempotency record, each SKU its events, within DynamoDB's 100 items.
const INVENTORY_GROUP: usize = 16;

/// An `inventory.restock` payload.
#[derive(serde::Deserialize)]
struct Restock {
    sku: String,
    quantity: u32,
}

fn decode_restock(command: &CommandEnvelope) -> Result<Restock, ServiceError> {
    let restock: Restock = serde_json::from_value(command.payload.clone()).map_err(|e| {
        ServiceError::InvalidPayload {
            command_type: command.command_type.clone(),
            reason: e.to_string(),
        }
    })?;
    validate_id("sku", &restock.sku).map_err(|e| ServiceError::Rejected {
        command_type: command.command_type.clone(),
        reason: e.to_string(),
    })?;
    Ok(restock)
}

/// Decodes a command payload into `A::Command`, whose serde tag `command` is the action name.
pub fn decode_command<A>(command: &CommandEnvelope) -> Result<A::Command, ServiceError>
where
    A: Aggregate,
    A::Command: DeserializeOwned,
{
    let mut payload = match &command.payload {
        Value::Object(map) => map.clone(),
        Value::Null => serde_json::Map::new(),
        other => {
            return Err(ServiceError::InvalidPayload {
                command_type: command.command_type.clone(),
                reason: format!("expected an object, got {other}"),
            })
        }
    };
    payload.insert(
        "command".into(),
        Value::String(command.action().to_string()),
    );
    serde_json::from_value(Value::Object(payload)).map_err(|e| {
        let reason = e.to_string();
        if reason.starts_with("unknown variant") {
            ServiceError::UnknownCommand(command.command_type.clone())
        } else {
            ServiceError::InvalidPayload {
                command_type: command.command_type.clone(),
                reason,
            }
        }
    })
}

async fn execute<A, S>(
    repository: &Repository<A, S>,
    command: &CommandEnvelope,
    now: Timestamp,
) -> Result<HandledCommand, ServiceError>
where
    A: Aggregate,
    A::Command: DeserializeOwned,
    S: EventStore,
{
    let typed = decode_command::<A>(command)?;
    repository
        .execute(&command.target_id, &typed, &command.meta(now))
        .await
        .map(handled)
        .map_err(|e| service_error(&command.command_type, e))
}

/// Runs commands that all address one aggregate through one load and one append; a command
/// whose payload does not decode fails alone and takes no part.
async fn execute_together<A, S>(
    repository: &Repository<A, S>,
    commands: &[&CommandEnvelope],
    now: Timestamp,
) -> Vec<Result<HandledCommand, ServiceError>>
where
    A: Aggregate,
    A::Command: DeserializeOwned,
    S: EventStore,
{
    let Some(first) = commands.first() else {
        return Vec::new();
    };
    let decoded: Vec<Result<(A::Command, CommandMeta), ServiceError>> = commands
        .iter()
        .map(|c| decode_command::<A>(c).map(|typed| (typed, c.meta(now))))
        .collect();
    let batch: Vec<(&A::Command, &CommandMeta)> = decoded
        .iter()
        .filter_map(|d| d.as_ref().ok().map(|(c, m)| (c, m)))
        .collect();
    let mut executed = repository
        .execute_all(&first.target_id, &batch)
        .await
        .into_iter();
    commands
        .iter()
        .zip(&decoded)
        .map(|(command, decoded)| match decoded {
            Err(e) => Err(e.clone()),
            Ok(_) => match executed.next() {
                Some(outcome) => outcome
                    .map(handled)
                    .map_err(|e| service_error(&command.command_type, e)),
                None => Err(ServiceError::Transient {
                    command_type: command.command_type.clone(),
                    reason: "the batch gave no outcome for it".into(),
                }),
            },
        })
        .collect()
}

fn handled<A>(outcome: CommandOutcome<A>) -> HandledCommand {
    HandledCommand {
        events: outcome.events,
        duplicate: outcome.duplicate,
    }
}

fn service_error<E: std::fmt::Display>(command_type: &str, e: RepositoryError<E>) -> ServiceError {
    let command_type = command_type.to_string();
    match e {
        RepositoryError::Domain(e) => ServiceError::Rejected {
            command_type,
            reason: e.to_string(),
        },
        e @ RepositoryError::Decode { .. } => ServiceError::Corrupt {
            command_type,
            reason: e.to_string(),
        },
        e if e.is_transient() => ServiceError::Transient {
            command_type,
            reason: e.to_string(),
        },
        e => ServiceError::Corrupt {
            command_type,
            reason: e.to_string(),
        },
    }
}
