//! Init awaits no round trip: the tables are checked alongside, the first invocation waits for
//! the answer, a missing table fails that invocation clearly (its work never runs), and once
//! the table is there the next invocation passes.

use std::sync::atomic::{AtomicU32, Ordering};

use sagaflow_dynamodb::dynamodb_client;
use sagaflow_dynamodb::tables::ensure_events_table;
use sagaflow_lambdas::{checked, TableCheck};

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn a_missing_table_fails_the_invocation_not_init_and_creating_it_is_the_repair() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty()),
        "AWS_ENDPOINT_URL is not set: start the local servers with `make up`"
    );
    let client = dynamodb_client().await;
    let table = format!("check-{}-events", std::process::id());
    let check = TableCheck::start(client.clone(), vec![table.clone()]);
    let ran = AtomicU32::new(0);
    let work = || async {
        ran.fetch_add(1, Ordering::SeqCst);
        Ok::<_, lambda_runtime::Error>("done")
    };
    let refused = checked(&check, work()).await.unwrap_err().to_string();
    assert!(refused.contains(&table), "{refused}");
    assert!(
        refused.contains("ResourceNotFound") || refused.contains("not found"),
        "{refused}"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0, "no work on a missing table");
    ensure_events_table(&client, &table).await.unwrap();
    assert_eq!(checked(&check, work()).await.unwrap(), "done");
    assert_eq!(
        checked(&check, work()).await.unwrap(),
        "done",
        "passed once, passed"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 2);
}
