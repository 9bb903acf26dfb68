//! Running caller-supplied futures on their own task so a panic becomes a value, not a crash.

use std::any::Any;
use std::future::Future;

use tokio::task::JoinError;

/// Runs `make()` and its future on a fresh task; `Err` describes a panic or cancellation.
///
/// The closure is called on the new task too, so a panic while building the future is
/// caught as well as one while polling it.
pub(crate) async fn isolated<F, Fut, T>(make: F) -> Result<T, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(async move { make().await })
        .await
        .map_err(describe_join_error)
}

/// Says why a task ended without a value, including the panic message when there is one.
pub(crate) fn describe_join_error(err: JoinError) -> String {
    if err.is_panic() {
        format!("panicked: {}", panic_message(err.into_panic().as_ref()))
    } else {
        "was cancelled".to_owned()
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn value_passes_through() {
        assert_eq!(isolated(|| async { 7 }).await, Ok(7));
    }

    #[tokio::test]
    async fn panic_in_future_is_reported_with_message() {
        let result: Result<(), String> = isolated(|| async { panic!("boom {}", 42) }).await;
        assert_eq!(result, Err("panicked: boom 42".to_owned()));
    }

    #[tokio::test]
    async fn panic_while_building_future_is_caught() {
        let result: Result<(), String> =
            isolated(|| -> std::future::Ready<()> { panic!("static message") }).await;
        assert_eq!(result, Err("panicked: static message".to_owned()));
    }
}
