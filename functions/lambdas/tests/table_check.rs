//! Init awaits no round trip: the function is built and its tables are checked in the
//! background, the first invocation waits for the answer, a missing table fails that
//! invocation clearly (its work never runs), and once the table is there the next invocation
//! passes.

use std::sync::atomic::{AtomicU32, Ordering};

use sagaflow_dynamodb::dynamodb_client;
use sagaflow_dynamodb::tables::ensure_events_table;
use sagaflow_lambdas::{started, InitError, Started, Starting, StartingFunction, TableCheck};

/// An invocation's work, run only when the function has started.
async fn invoke(
    function: &StartingFunction<&'static str>,
    ran: &AtomicU32,
) -> Result<String, String> {
    let handler = started(function).await.map_err(|e| e.to_string())?;
    ran.fetch_add(1, Ordering::SeqCst);
    Ok(handler.to_string())
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn a_missing_table_fails_the_invocation_not_init_and_creating_it_is_the_repair() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty()),
        "AWS_ENDPOINT_URL is not set: start the local servers with `make up`"
    );
    let client = dynamodb_client().await;
    let table = format!("check-{}-events", std::process::id());
    let builds = std::sync::Arc::new(AtomicU32::new(0));
    let (checked_client, checked_table, counted) = (client.clone(), table.clone(), builds.clone());
    let function: StartingFunction<&'static str> = Starting::start("function", move || {
        counted.fetch_add(1, Ordering::SeqCst);
        let tables = TableCheck::start(checked_client.clone(), vec![checked_table.clone()]);
        async move {
            Ok::<_, InitError>(Started {
                tables,
                handler: "done",
            })
        }
    });
    let ran = AtomicU32::new(0);

    let refused = invoke(&function, &ran).await.unwrap_err();
    assert!(refused.contains(&table), "{refused}");
    assert!(
        refused.contains("ResourceNotFound") || refused.contains("not found"),
        "{refused}"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0, "no work on a missing table");

    ensure_events_table(&client, &table).await.unwrap();
    assert_eq!(invoke(&function, &ran).await.unwrap(), "done");
    assert_eq!(
        invoke(&function, &ran).await.unwrap(),
        "done",
        "passed once, passed"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 2);
    assert_eq!(
        builds.load(Ordering::SeqCst),
        1,
        "the clients were built once; only the check ran again"
    );
}
