//! The tables a function needs, checked alongside init rather than in it: init awaits no
//! network round trip, the check's `DescribeTable` opens the DynamoDB connection while the
//! runtime asks for the first event, and the first invocation waits for its answer. A table
//! that is missing fails that invocation with a clear error (its batch is retried, nothing is
//! lost), and the next invocation checks again, so creating the table is the whole repair.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lambda_runtime::tracing;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// A table a function needs that cannot be reached (missing, not allowed, or DynamoDB down).
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the table {table}: {reason}")]
pub struct TableUnreachable {
    /// The table.
    pub table: String,
    /// What DynamoDB said.
    pub reason: String,
}

/// The check of a function's tables.
pub struct TableCheck {
    client: aws_sdk_dynamodb::Client,
    tables: Vec<String>,
    passed: AtomicBool,
    running: Mutex<Option<JoinHandle<Result<(), TableUnreachable>>>>,
}

impl std::fmt::Debug for TableCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableCheck")
            .field("tables", &self.tables)
            .field("passed", &self.passed.load(Ordering::Relaxed))
            .finish()
    }
}

impl TableCheck {
    /// Starts checking `tables` with `client` now, without waiting for it.
    pub fn start(client: aws_sdk_dynamodb::Client, tables: Vec<String>) -> Arc<Self> {
        let running = tokio::spawn(describe_all(client.clone(), tables.clone()));
        Arc::new(Self {
            client,
            tables,
            passed: AtomicBool::new(false),
            running: Mutex::new(Some(running)),
        })
    }

    /// The tables it checks.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// Waits for the check; once it has passed this costs one atomic load. A failed check is
    /// returned, and the next call checks again.
    pub async fn passed(&self) -> Result<(), TableUnreachable> {
        if self.passed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut running = self.running.lock().await;
        if self.passed.load(Ordering::Acquire) {
            return Ok(());
        }
        let check = match running.take() {
            Some(check) => check,
            None => tokio::spawn(describe_all(self.client.clone(), self.tables.clone())),
        };
        let result = check.await.unwrap_or_else(|e| {
            Err(TableUnreachable {
                table: self.tables.join(", "),
                reason: format!("the check did not finish: {e}"),
            })
        });
        match result {
            Ok(()) => {
                self.passed.store(true, Ordering::Release);
                Ok(())
            }
            Err(error) => {
                tracing::error!(reason = %error, "table check failed; the next invocation checks again");
                Err(error)
            }
        }
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
