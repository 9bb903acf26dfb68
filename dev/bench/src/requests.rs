//! Section 2: DynamoDB requests per command, counted on the wire by an SDK interceptor, for
//! sagaflow's event store and for dynamo-es (cqrs-es on DynamoDB), on the same local endpoint.
//!
//! Both run the same warehouse aggregate (`crate::cqrs_stock::CqrsWarehouse` is sagaflow's
//! `Warehouse` on cqrs-es) and the same command mix, on one stream each that grows to 1,000
//! events; the command that makes the stream 1, 10, 100 and 1,000 events long is counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::CqrsFramework;
use dynamo_es::DynamoEventRepository;
use sagaflow_dynamodb::tables::ensure_events_table;
use sagaflow_dynamodb::DynamoEventStore;
use sagaflow_eventsourcing::CommandMeta;
use sagaflow_eventsourcing::Repository;
use sagaflow_eventsourcing::Timestamp;
use sagaflow_local_trigger::{OperationCount, RequestCounter};
use sagaflow_orders::domain::StockLine;
use sagaflow_orders::testkit::warehouse::{Warehouse, WarehouseCommand};

use crate::cqrs_stock::CqrsWarehouse;
use crate::settings::Settings;

/// The stream lengths at which a command is counted.
const LENGTHS: [u64; 4] = [1, 10, 100, 1_000];
/// Snapshot interval of both stores when snapshots are on.
pub const SNAPSHOT_EVERY: u64 = 50;
/// Commands to one aggregate delivered in one batch, for the batched row.
const BATCH: usize = 10;

/// What one counted command cost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cost {
    /// Requests sent.
    pub requests: u64,
    /// Read request units the endpoint reported (estimated where it reported none).
    pub read_units: f64,
    /// Write request units the endpoint reported (estimated where it reported none).
    pub write_units: f64,
}

impl Cost {
    fn of(counts: &BTreeMap<String, OperationCount>) -> Self {
        Self {
            requests: counts.values().map(|c| c.requests).sum(),
            read_units: counts.values().map(|c| c.read_units).sum(),
            write_units: counts.values().map(|c| c.write_units).sum(),
        }
    }
}

/// Per store and snapshot setting, the cost of the command at each stream length.
#[derive(Clone, Debug)]
pub struct RequestRow {
    /// `sagaflow` or `dynamo-es`.
    pub store: &'static str,
    /// Whether snapshots were on.
    pub snapshots: bool,
    /// (stream length, cost of the command that reached it).
    pub costs: Vec<(u64, Cost)>,
}

/// The section's figures, for the cost section too.
#[derive(Clone, Debug)]
pub struct RequestFigures {
    /// One row per store and snapshot setting.
    pub rows: Vec<RequestRow>,
    /// Requests per command when [`BATCH`] commands to one aggregate arrive together, sagaflow.
    pub batched_per_command: f64,
    /// The same commands one by one, sagaflow.
    pub one_by_one_per_command: f64,
}

fn command(i: u64) -> WarehouseCommand {
    // One event per command either way: restock two, reserve one for a new order.
    if i % 2 == 1 {
        WarehouseCommand::Restock {
            sku: "MUG".into(),
            quantity: 2,
        }
    } else {
        WarehouseCommand::Reserve {
            order_id: format!("ord-{i}"),
            lines: vec![StockLine {
                sku: "MUG".into(),
                quantity: 1,
            }],
        }
    }
}

fn meta(stream: &str, i: u64) -> CommandMeta {
    let id = format!("{stream}-cmd-{i}");
    CommandMeta::new(stream, id.clone(), Timestamp(1_000 + i as i64)).with_idempotency_key(id)
}

/// A DynamoDB client that counts its requests.
async fn counted_client(counter: &RequestCounter) -> Client {
    let base = sagaflow_dynamodb::dynamodb_client().await;
    Client::from_conf(
        base.config()
            .to_builder()
            .interceptor(counter.interceptor())
            .build(),
    )
}

/// Runs the section and prints its table.
pub async fn run(settings: &Settings) -> Result<RequestFigures, String> {
    let lengths: Vec<u64> = LENGTHS
        .into_iter()
        .filter(|l| !settings.quick || *l <= 100)
        .collect();
    let Some(&longest) = lengths.last() else {
        return Err("no stream lengths to measure".into());
    };
    let run_id = format!("bench{}", std::process::id());
    let counter = RequestCounter::new();
    let client = counted_client(&counter).await;
    let table = format!("{run_id}-events");
    ensure_events_table(&client, &table)
        .await
        .map_err(|e| e.to_string())?;
    // dynoxide keeps tables in SQLite, whose names ignore case: `-events` and `-Events` would
    // be one table there.
    let (cqrs_events, cqrs_snapshots) = (
        format!("{run_id}-dynamo-es-Events"),
        format!("{run_id}-dynamo-es-Snapshots"),
    );
    create_dynamo_es_tables(&client, &cqrs_events, &cqrs_snapshots).await?;

    let mut rows = Vec::new();
    for snapshots in [false, true] {
        let store = Arc::new(DynamoEventStore::new(client.clone(), table.clone()));
        let mut repository = Repository::<Warehouse, _>::new(store);
        if snapshots {
            repository = repository.with_snapshots_every(SNAPSHOT_EVERY);
        }
        let stream = format!("sf-{}", u8::from(snapshots));
        let mut costs = Vec::new();
        for i in 1..=longest {
            counter.reset();
            repository
                .execute(&stream, &command(i), &meta(&stream, i))
                .await
                .map_err(|e| format!("sagaflow command {i}: {e}"))?;
            if lengths.contains(&i) {
                costs.push((i, Cost::of(&counter.snapshot())));
            }
        }
        rows.push(RequestRow {
            store: "sagaflow",
            snapshots,
            costs,
        });

        let repo =
            DynamoEventRepository::new(client.clone()).with_tables(&cqrs_events, &cqrs_snapshots);
        let store = if snapshots {
            PersistedEventStore::new_snapshot_store(repo, SNAPSHOT_EVERY as usize)
        } else {
            PersistedEventStore::new_event_store(repo)
        };
        let cqrs = CqrsFramework::<CqrsWarehouse, _>::new(store, vec![], ());
        let aggregate = format!("des-{}", u8::from(snapshots));
        let mut costs = Vec::new();
        for i in 1..=longest {
            counter.reset();
            let metadata = HashMap::from([
                ("correlation_id".to_string(), aggregate.clone()),
                ("causation_id".to_string(), format!("{aggregate}-cmd-{i}")),
            ]);
            cqrs.execute_with_metadata(&aggregate, command(i), metadata)
                .await
                .map_err(|e| format!("dynamo-es command {i}: {e}"))?;
            if lengths.contains(&i) {
                costs.push((i, Cost::of(&counter.snapshot())));
            }
        }
        rows.push(RequestRow {
            store: "dynamo-es",
            snapshots,
            costs,
        });
    }

    // The batched path: several commands to one aggregate in one Kafka batch.
    let store = Arc::new(DynamoEventStore::new(client.clone(), table.clone()));
    let repository = Repository::<Warehouse, _>::new(store).with_snapshots_every(SNAPSHOT_EVERY);
    let rounds = if settings.quick { 3 } else { 10 };
    let (mut batched, mut single) = (0, 0);
    for round in 0..rounds as u64 {
        let base = round * BATCH as u64 * 2;
        let owned: Vec<(WarehouseCommand, CommandMeta)> = (1..=BATCH as u64)
            .map(|i| (command(base + i), meta("sf-batch", base + i)))
            .collect();
        let batch: Vec<(&WarehouseCommand, &CommandMeta)> =
            owned.iter().map(|(c, m)| (c, m)).collect();
        counter.reset();
        for outcome in repository.execute_all("sf-batch", &batch).await {
            outcome.map_err(|e| format!("batched command: {e}"))?;
        }
        batched += counter.total_requests();
        counter.reset();
        for i in BATCH as u64 + 1..=2 * BATCH as u64 {
            repository
                .execute("sf-batch", &command(base + i), &meta("sf-batch", base + i))
                .await
                .map_err(|e| format!("single command: {e}"))?;
        }
        single += counter.total_requests();
    }
    let commands = (rounds * BATCH) as f64;
    let figures = RequestFigures {
        rows,
        batched_per_command: batched as f64 / commands,
        one_by_one_per_command: single as f64 / commands,
    };
    print(&figures, &lengths);
    for table in [&table, &cqrs_events, &cqrs_snapshots] {
        // Best effort: a table left behind on the local endpoint only costs memory.
        let _ = client.delete_table().table_name(table).send().await;
    }
    Ok(figures)
}

async fn create_dynamo_es_tables(
    client: &Client,
    events: &str,
    snapshots: &str,
) -> Result<(), String> {
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .map_err(|e| e.to_string())
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| e.to_string())
    };
    client
        .create_table()
        .table_name(events)
        .attribute_definitions(attribute("AggregateTypeAndId", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("AggregateIdSequence", ScalarAttributeType::N)?)
        .key_schema(key("AggregateTypeAndId", KeyType::Hash)?)
        .key_schema(key("AggregateIdSequence", KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|e| format!("creating {events}: {e:?}"))?;
    client
        .create_table()
        .table_name(snapshots)
        .attribute_definitions(attribute("AggregateTypeAndId", ScalarAttributeType::S)?)
        .key_schema(key("AggregateTypeAndId", KeyType::Hash)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|e| format!("creating {snapshots}: {e:?}"))?;
    Ok(())
}

fn print(figures: &RequestFigures, lengths: &[u64]) {
    println!(
        "\n2. DynamoDB requests per command (counted by an SDK interceptor; dynoxide on 127.0.0.1; snapshots every {SNAPSHOT_EVERY})"
    );
    print!("  {:<26}", "store");
    for length in lengths {
        print!("{:>16}", format!("{length} events"));
    }
    println!();
    for row in &figures.rows {
        let name = format!(
            "{} {}",
            row.store,
            if row.snapshots { "+ snapshots" } else { "" }
        );
        print!("  {name:<26}");
        for (_, cost) in &row.costs {
            print!(
                "{:>16}",
                format!(
                    "{} ({}r/{}w)",
                    cost.requests, cost.read_units, cost.write_units
                )
            );
        }
        println!();
    }
    println!("  (requests per command; in brackets the read and write request units the endpoint reported)");
    println!(
        "  sagaflow, {BATCH} commands to one aggregate in one batch: {:.2} requests per command (one by one: {:.2})",
        figures.batched_per_command, figures.one_by_one_per_command
    );
    let worst = figures
        .rows
        .iter()
        .filter(|r| r.store == "sagaflow")
        .flat_map(|r| r.costs.iter().map(|(_, c)| c.requests))
        .max()
        .unwrap_or(0);
    println!(
        "  target: <= 2 DynamoDB requests per command: {} (sagaflow's most: {worst})",
        if worst <= 2 { "met" } else { "missed" }
    );
}
