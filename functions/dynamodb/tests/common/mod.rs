//! What the DynamoDB tests share: a client for the local endpoint and table names that no two
//! tests, or two runs, share.

use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_dynamodb::Client;
use sagaflow_dynamodb::dynamodb_client;

static TABLES: AtomicU32 = AtomicU32::new(0);

/// A client for the local endpoint; fails loudly when none is configured.
pub async fn local_client() -> Client {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        !endpoint.is_empty(),
        "AWS_ENDPOINT_URL is not set: start the local servers with `make up` (or run `make test`)"
    );
    dynamodb_client().await
}

/// A table name of its own for `kind` and `name`: this process and a counter make it unique.
pub fn table_name(kind: &str, name: &str) -> String {
    format!(
        "{kind}-{name}-{}-{}",
        std::process::id(),
        TABLES.fetch_add(1, Ordering::Relaxed)
    )
}
