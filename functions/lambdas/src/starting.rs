//! What a function builds in the background from init on, so that init awaits none of it:
//! the AWS config and clients (loading the TLS roots alone takes milliseconds), the Kafka
//! producer, the check of the tables. The runtime asks for its first event at once, the first
//! invocation waits for what is still being built, and a start that fails fails that
//! invocation with its error (its batch is retried, nothing is lost); the next invocation
//! starts again, so repairing the cause is the whole repair.
//!
//! Under provisioned concurrency init awaits the start ([`awaits_start_in_init`]): nobody
//! waits for that init, and Lambda may freeze the sandbox as soon as init ends, leaving a
//! start in the background half done (a request cut short, a connection gone stale) until
//! the first invocation thaws it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lambda_runtime::tracing;
use tokio::sync::{Mutex, OnceCell};
use tokio::task::JoinHandle;

/// A start in the background that did not finish: it panicked, or its runtime is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the start in the background did not finish: {0}")]
pub struct StartAborted(String);

type Attempt<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;
type Build<T, E> = Arc<dyn Fn() -> Attempt<T, E> + Send + Sync>;

/// A value built in the background since init; [`Starting::ready`] waits for it.
pub struct Starting<T, E> {
    what: &'static str,
    build: Build<T, E>,
    ready: OnceCell<T>,
    running: Mutex<Option<JoinHandle<Result<T, E>>>>,
}

impl<T, E> std::fmt::Debug for Starting<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Starting")
            .field("what", &self.what)
            .field("ready", &self.ready.initialized())
            .finish_non_exhaustive()
    }
}

impl<T, E> Starting<T, E>
where
    T: Send + Sync + 'static,
    E: From<StartAborted> + std::fmt::Display + Send + 'static,
{
    /// Starts `build` now, without waiting for it; `what` names it in the log of a failure.
    pub fn start<F, Fut>(what: &'static str, build: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let build: Build<T, E> = Arc::new(move || Box::pin(build()));
        let running = tokio::spawn(build());
        Self {
            what,
            build,
            ready: OnceCell::new(),
            running: Mutex::new(Some(running)),
        }
    }

    /// Waits for the value; once built this costs one atomic load. A failed start is
    /// returned, and the next call starts again.
    pub async fn ready(&self) -> Result<&T, E> {
        if let Some(value) = self.ready.get() {
            return Ok(value);
        }
        // One attempt at a time: invocations that arrive meanwhile wait for its outcome.
        let mut running = self.running.lock().await;
        if let Some(value) = self.ready.get() {
            return Ok(value);
        }
        // The attempt stays in `running` until it ends, so a caller dropped while waiting
        // leaves it to the next caller instead of starting a second one.
        let attempt = running.get_or_insert_with(|| tokio::spawn((self.build)()));
        let outcome = attempt
            .await
            .unwrap_or_else(|e| Err(StartAborted(e.to_string()).into()));
        *running = None;
        match outcome {
            Ok(value) => Ok(self.ready.get_or_init(|| async move { value }).await),
            Err(error) => {
                tracing::error!(
                    start = self.what,
                    reason = %error,
                    "start failed; the next invocation starts again"
                );
                Err(error)
            }
        }
    }
}

/// The variable Lambda sets to how it initialized the sandbox: `on-demand`, or
/// `provisioned-concurrency` for a sandbox prepared before any request.
pub const INITIALIZATION_TYPE_VAR: &str = "AWS_LAMBDA_INITIALIZATION_TYPE";

/// Whether init should await the start, from the environment `lookup` reads: only for a
/// sandbox prepared ahead of its requests, which may be frozen the moment init ends.
pub fn awaits_start_in_init(lookup: impl Fn(&str) -> Option<String>) -> bool {
    lookup(INITIALIZATION_TYPE_VAR).is_some_and(|kind| kind.trim() == "provisioned-concurrency")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[derive(Debug, thiserror::Error)]
    enum Refused {
        #[error("refused on attempt {0}")]
        Attempt(u32),
        #[error(transparent)]
        Aborted(#[from] StartAborted),
    }

    /// A start whose every attempt runs `attempt` with its number (from 1), and the count of
    /// attempts begun.
    fn counted_start<F, Fut>(attempt: F) -> (Starting<u32, Refused>, Arc<AtomicU32>)
    where
        F: Fn(u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<u32, Refused>> + Send + 'static,
    {
        let attempts = Arc::new(AtomicU32::new(0));
        let counted = attempts.clone();
        let starting = Starting::start("test", move || {
            attempt(counted.fetch_add(1, Ordering::SeqCst) + 1)
        });
        (starting, attempts)
    }

    #[tokio::test]
    async fn a_failed_start_fails_one_call_and_the_next_starts_again() {
        let (starting, attempts) = counted_start(|attempt| async move {
            if attempt == 1 {
                Err(Refused::Attempt(attempt))
            } else {
                Ok(attempt)
            }
        });
        let refused = starting.ready().await.unwrap_err();
        assert_eq!(refused.to_string(), "refused on attempt 1");
        assert_eq!(*starting.ready().await.unwrap(), 2, "started again");
        assert_eq!(*starting.ready().await.unwrap(), 2, "kept once built");
        assert_eq!(attempts.load(Ordering::SeqCst), 2, "built no third time");
    }

    #[tokio::test]
    async fn the_build_begins_before_anyone_waits_for_it() {
        let (began, mut begun) = tokio::sync::mpsc::unbounded_channel();
        let starting = Starting::start("test", move || {
            let began = began.clone();
            async move {
                let _ = began.send(());
                Ok::<_, Refused>("built")
            }
        });
        begun
            .recv()
            .await
            .expect("the build ran without a call to ready");
        assert_eq!(*starting.ready().await.unwrap(), "built");
    }

    #[test]
    fn only_a_provisioned_sandbox_awaits_its_start_in_init() {
        let kind = |value: &'static str| {
            move |name: &str| (name == INITIALIZATION_TYPE_VAR).then(|| value.to_string())
        };
        assert!(awaits_start_in_init(kind("provisioned-concurrency")));
        assert!(!awaits_start_in_init(kind("on-demand")));
        assert!(!awaits_start_in_init(kind("snap-start")));
        assert!(!awaits_start_in_init(|_| None), "outside Lambda, or unset");
    }

    #[tokio::test]
    async fn a_caller_dropped_while_waiting_leaves_the_attempt_to_the_next() {
        let (release, released) = tokio::sync::watch::channel(false);
        let (starting, attempts) = counted_start(move |attempt| {
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|go| *go).await;
                Ok(attempt)
            }
        });
        let dropped = tokio::time::timeout(Duration::from_millis(20), starting.ready()).await;
        assert!(dropped.is_err(), "still building");
        release.send(true).unwrap();
        assert_eq!(
            *starting.ready().await.unwrap(),
            1,
            "the first attempt's value"
        );
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            1,
            "no second attempt was started"
        );
    }

    #[tokio::test]
    async fn a_build_that_panics_is_reported_and_started_again() {
        let (starting, _) = counted_start(|attempt| async move {
            assert!(attempt > 1, "the first attempt panics");
            Ok(attempt)
        });
        let refused = starting.ready().await.unwrap_err();
        assert!(matches!(refused, Refused::Aborted(_)), "{refused}");
        assert_eq!(*starting.ready().await.unwrap(), 2);
    }
}
