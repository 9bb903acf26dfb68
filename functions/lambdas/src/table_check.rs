//! The tables a function needs, checked alongside init rather than in it: init awaits no
//! network round trip, the check's `DescribeTable` opens the DynamoDB connection while the
//! runtime asks for the first event, and the first invocation waits for its answer. A table
//! that is missing fails that invocation with a clear error (its batch is retried, nothing is
//! lost), and the next invocation checks again, so creating the table is the whole repair.

use crate::starting::{StartAborted, Starting};

/// A table a function needs that cannot be reached (missing, not allowed, or DynamoDB down).
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the table {table}: {reason}")]
pub struct TableUnreachable {
    /// The table.
    pub table: String,
    /// What DynamoDB said.
    pub reason: String,
}

impl From<StartAborted> for TableUnreachable {
    fn from(aborted: StartAborted) -> Self {
        Self {
            table: "(check)".into(),
            reason: aborted.to_string(),
        }
    }
}

/// The check of a function's tables.
#[derive(Debug)]
pub struct TableCheck {
    tables: Vec<String>,
    check: Starting<(), TableUnreachable>,
}

impl TableCheck {
    /// Starts checking `tables` with `client` now, without waiting for it.
    pub fn start(client: aws_sdk_dynamodb::Client, tables: Vec<String>) -> std::sync::Arc<Self> {
        let checked = tables.clone();
        let check = Starting::start("table check", move || {
            describe_all(client.clone(), checked.clone())
        });
        std::sync::Arc::new(Self { tables, check })
    }

    /// The tables it checks.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// Waits for the check; once it has passed this costs one atomic load. A failed check is
    /// returned, and the next call checks again.
    pub async fn passed(&self) -> Result<(), TableUnreachable> {
        self.check.ready().await.map(|_| ())
    }
}

/// Describes every table at once.
async fn describe_all(
    client: aws_sdk_dynamodb::Client,
    tables: Vec<String>,
) -> Result<(), TableUnreachable> {
    let mut checks = tokio::task::JoinSet::new();
    for table in tables {
        let client = client.clone();
        checks.spawn(async move { describe_table(&client, &table).await });
    }
    while let Some(joined) = checks.join_next().await {
        joined.map_err(|e| TableUnreachable {
            table: "(check)".into(),
            reason: format!("the check did not finish: {e}"),
        })??;
    }
    Ok(())
}

/// Checks that `table` is there (and opens the connection).
pub async fn describe_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), TableUnreachable> {
    client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| TableUnreachable {
            table: table.to_string(),
            reason: match e.as_service_error() {
                Some(service) => service.to_string(),
                None => e.to_string(),
            },
        })
}
