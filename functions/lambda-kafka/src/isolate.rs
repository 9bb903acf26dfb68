//! Running caller-supplied futures on their own task so a panic becomes a value, not a crash.

use std::any::Any;
use std::future::Future;
use tracing::Instrument;

use tokio::task::JoinError;

/// A caller's future that panicked or was cancelled instead of giving its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Interrupted {
    /// It panicked, with this message.
    #[error("panicked: {0}")]
    Panicked(String),
    /// Its task was cancelled.
    #[error("was cancelled")]
    Cancelled,
}

/// Runs `make()` and its future on a fresh task; `Err` says how it panicked or was cancelled.
///
/// The closure is called on the new task too, so a panic while building the future is
/// caught as well as one while polling it.
pub(crate) async fn isolated<F, Fut, T>(make: F) -> Result<T, Interrupted>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(async move { make().await }.in_current_span())
        .await
        .map_err(describe_join_error)
}

/// Says why a task ended without a value, including the panic message when there is one.
pub(crate) fn describe_join_error(err: JoinError) -> Interrupted {
    if err.is_panic() {
        Interrupted::Panicked(panic_message(err.into_panic().as_ref()).to_owned())
    } else {
        Interrupted::Cancelled
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
        let result = isolated(|| async { panic!("boom {}", 42) }).await;
        assert_eq!(result, Err(Interrupted::Panicked("boom 42".to_owned())));
        assert_eq!(result.unwrap_err().to_string(), "panicked: boom 42");
    }

    #[tokio::test]
    async fn panic_while_building_future_is_caught() {
        let result = isolated(|| -> std::future::Ready<()> { panic!("static message") }).await;
        assert_eq!(
            result,
            Err(Interrupted::Panicked("static message".to_owned()))
        );
    }
}
