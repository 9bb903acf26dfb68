//! Named, ordered processing stages, some of which run only when a predicate on the
//! current value holds; every run returns its output together with a per-stage trace.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type StageFn<T> = Box<dyn Fn(T) -> BoxFuture<Result<T, StageError>> + Send + Sync>;
type Predicate<T> = Box<dyn Fn(&T) -> bool + Send + Sync>;

/// Why a stage did not produce a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// A business rule refused the value.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The stage itself broke.
    #[error("failed: {0}")]
    Failed(String),
}

/// Why a pipeline could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// The pipeline has no stages, so running it would be meaningless.
    #[error("pipeline `{pipeline}` has no stages")]
    Empty {
        /// The pipeline's name.
        pipeline: String,
    },
    /// Two stages share a name, which would make the trace ambiguous.
    #[error("pipeline `{pipeline}` has more than one stage named `{stage}`")]
    DuplicateStage {
        /// The pipeline's name.
        pipeline: String,
        /// The repeated stage name.
        stage: String,
    },
}

/// The stage that stopped a run and what it reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stage `{stage}` {error}")]
pub struct PipelineFailure {
    /// The name of the failing stage.
    pub stage: String,
    /// What the stage reported.
    pub error: StageError,
}

/// What happened to one stage during a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageStatus {
    /// The stage ran and produced the next value.
    Ran,
    /// The stage's predicate was false, so the value passed through unchanged.
    Skipped,
    /// The stage failed and stopped the run.
    Failed {
        /// What the stage reported.
        error: StageError,
    },
    /// An earlier stage failed, so this one never got the value.
    NotReached,
}

/// One entry of a run's trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageTrace {
    /// The stage's name.
    pub stage: String,
    /// What happened to it.
    pub status: StageStatus,
}

/// The result of one run: the final value or the failure, plus what each stage did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineRun<T> {
    /// The name of the pipeline that ran.
    pub pipeline: String,
    /// The last stage's output, or the failure that stopped the run.
    pub output: Result<T, PipelineFailure>,
    /// One entry per stage, in pipeline order.
    pub trace: Vec<StageTrace>,
}

impl<T> PipelineRun<T> {
    /// Names of the stages that ran successfully, in order.
    pub fn ran(&self) -> Vec<&str> {
        self.with_status(|s| matches!(s, StageStatus::Ran))
    }

    /// Names of the stages skipped because their predicate was false, in order.
    pub fn skipped(&self) -> Vec<&str> {
        self.with_status(|s| matches!(s, StageStatus::Skipped))
    }

    /// Whether every reached stage ran or was skipped, yielding an output.
    pub fn is_success(&self) -> bool {
        self.output.is_ok()
    }

    fn with_status(&self, wanted: impl Fn(&StageStatus) -> bool) -> Vec<&str> {
        self.trace
            .iter()
            .filter(|t| wanted(&t.status))
            .map(|t| t.stage.as_str())
            .collect()
    }
}

struct Stage<T> {
    name: String,
    condition: Option<Predicate<T>>,
    run: StageFn<T>,
}

/// Collects stages in order and validates them into a [`Pipeline`].
pub struct PipelineBuilder<T> {
    name: String,
    stages: Vec<Stage<T>>,
}

impl<T: Send + 'static> PipelineBuilder<T> {
    /// Appends a stage that always runs.
    pub fn stage<F, Fut>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, StageError>> + Send + 'static,
    {
        self.stages.push(Stage {
            name: name.to_owned(),
            condition: None,
            run: Box::new(move |value| Box::pin(f(value))),
        });
        self
    }

    /// Appends a stage that runs only when `predicate` holds for the value it would receive.
    pub fn conditional_stage<P, F, Fut>(mut self, name: &str, predicate: P, f: F) -> Self
    where
        P: Fn(&T) -> bool + Send + Sync + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, StageError>> + Send + 'static,
    {
        self.stages.push(Stage {
            name: name.to_owned(),
            condition: Some(Box::new(predicate)),
            run: Box::new(move |value| Box::pin(f(value))),
        });
        self
    }

    /// Validates the stages (at least one, names unique) and produces the pipeline.
    pub fn build(self) -> Result<Pipeline<T>, PipelineError> {
        if self.stages.is_empty() {
            return Err(PipelineError::Empty {
                pipeline: self.name,
            });
        }
        for (i, stage) in self.stages.iter().enumerate() {
            if self.stages[..i].iter().any(|s| s.name == stage.name) {
                return Err(PipelineError::DuplicateStage {
                    pipeline: self.name.clone(),
                    stage: stage.name.clone(),
                });
            }
        }
        Ok(Pipeline {
            name: self.name,
            stages: self.stages,
        })
    }
}

impl<T> fmt::Debug for PipelineBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_stages(f, "PipelineBuilder", &self.name, &self.stages)
    }
}

/// A validated, reusable sequence of stages; runs take `&self` and may overlap.
pub struct Pipeline<T> {
    name: String,
    stages: Vec<Stage<T>>,
}

impl<T: Send + 'static> Pipeline<T> {
    /// Starts building a pipeline with the given name.
    pub fn builder(name: &str) -> PipelineBuilder<T> {
        PipelineBuilder {
            name: name.to_owned(),
            stages: Vec::new(),
        }
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Passes `input` through the stages in order, stopping at the first failure.
    pub async fn run(&self, input: T) -> PipelineRun<T> {
        let mut trace = Vec::with_capacity(self.stages.len());
        let mut value = input;
        for (index, stage) in self.stages.iter().enumerate() {
            if let Some(condition) = &stage.condition {
                if !condition(&value) {
                    trace.push(StageTrace {
                        stage: stage.name.clone(),
                        status: StageStatus::Skipped,
                    });
                    continue;
                }
            }
            match (stage.run)(value).await {
                Ok(next) => {
                    value = next;
                    trace.push(StageTrace {
                        stage: stage.name.clone(),
                        status: StageStatus::Ran,
                    });
                }
                Err(error) => {
                    trace.push(StageTrace {
                        stage: stage.name.clone(),
                        status: StageStatus::Failed {
                            error: error.clone(),
                        },
                    });
                    trace.extend(self.stages[index + 1..].iter().map(|s| StageTrace {
                        stage: s.name.clone(),
                        status: StageStatus::NotReached,
                    }));
                    return PipelineRun {
                        pipeline: self.name.clone(),
                        output: Err(PipelineFailure {
                            stage: stage.name.clone(),
                            error,
                        }),
                        trace,
                    };
                }
            }
        }
        PipelineRun {
            pipeline: self.name.clone(),
            output: Ok(value),
            trace,
        }
    }
}

impl<T> fmt::Debug for Pipeline<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_stages(f, "Pipeline", &self.name, &self.stages)
    }
}

fn debug_stages<T>(
    f: &mut fmt::Formatter<'_>,
    type_name: &str,
    name: &str,
    stages: &[Stage<T>],
) -> fmt::Result {
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    f.debug_struct(type_name)
        .field("name", &name)
        .field("stages", &names)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Debug, Clone, PartialEq)]
    enum Payment {
        Pending,
        Succeeded,
        Declined,
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Order {
        amount: u32,
        payment: Payment,
        reserved: bool,
    }

    fn order(amount: u32) -> Order {
        Order {
            amount,
            payment: Payment::Pending,
            reserved: false,
        }
    }

    fn assert_send_sync<T: Send + Sync>() {}

    // The seed's example: check inventory only if payment succeeded.
    fn checkout() -> Pipeline<Order> {
        Pipeline::builder("checkout")
            .stage("payment", |mut o: Order| async move {
                o.payment = if o.amount <= 100 {
                    Payment::Succeeded
                } else {
                    Payment::Declined
                };
                Ok(o)
            })
            .conditional_stage(
                "inventory",
                |o: &Order| o.payment == Payment::Succeeded,
                |mut o: Order| async move {
                    o.reserved = true;
                    Ok(o)
                },
            )
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn stages_run_in_order_transforming_the_value() {
        let pipeline = Pipeline::builder("arith")
            .stage("add-one", |n: i64| async move { Ok(n + 1) })
            .stage("double", |n: i64| async move { Ok(n * 2) })
            .stage("minus-three", |n: i64| async move { Ok(n - 3) })
            .build()
            .unwrap();

        let run = pipeline.run(5).await;

        // (5 + 1) * 2 - 3; any other order gives a different number.
        assert_eq!(run.output, Ok(9));
        assert_eq!(run.pipeline, "arith");
        assert_eq!(run.ran(), vec!["add-one", "double", "minus-three"]);
        assert!(run.skipped().is_empty());
        assert!(run.is_success());
    }

    #[tokio::test]
    async fn conditional_stage_runs_when_payment_succeeded() {
        let run = checkout().run(order(40)).await;

        assert!(run.is_success());
        assert_eq!(
            run.output,
            Ok(Order {
                amount: 40,
                payment: Payment::Succeeded,
                reserved: true,
            })
        );
        assert_eq!(run.ran(), vec!["payment", "inventory"]);
        assert!(run.skipped().is_empty());
    }

    #[tokio::test]
    async fn conditional_stage_is_skipped_when_payment_declined() {
        let run = checkout().run(order(500)).await;

        assert!(run.is_success());
        assert_eq!(
            run.output,
            Ok(Order {
                amount: 500,
                payment: Payment::Declined,
                reserved: false,
            })
        );
        assert_eq!(run.ran(), vec!["payment"]);
        assert_eq!(run.skipped(), vec!["inventory"]);
        assert_eq!(
            run.trace,
            vec![
                StageTrace {
                    stage: "payment".into(),
                    status: StageStatus::Ran,
                },
                StageTrace {
                    stage: "inventory".into(),
                    status: StageStatus::Skipped,
                },
            ]
        );
    }

    #[tokio::test]
    async fn predicate_sees_the_value_produced_by_earlier_stages() {
        let pipeline = Pipeline::builder("threshold")
            .stage("times-ten", |n: u32| async move { Ok(n * 10) })
            // 3 would fail `> 20`; only the transformed 30 passes.
            .conditional_stage(
                "bonus",
                |n: &u32| *n > 20,
                |n: u32| async move { Ok(n + 1) },
            )
            .build()
            .unwrap();

        assert_eq!(pipeline.run(3).await.output, Ok(31));
        assert_eq!(pipeline.run(2).await.output, Ok(20));
    }

    #[tokio::test]
    async fn failing_stage_stops_the_run_and_later_stages_are_not_reached() {
        let calls: Arc<Mutex<Vec<&'static str>>> = Arc::default();
        let log = |name: &'static str| {
            let calls = calls.clone();
            move |n: u32| {
                let calls = calls.clone();
                async move {
                    if let Ok(mut c) = calls.lock() {
                        c.push(name);
                    }
                    Ok(n)
                }
            }
        };
        let pipeline = Pipeline::builder("fragile")
            .stage("validate", log("validate"))
            .stage("charge", |n: u32| async move {
                Err::<u32, _>(StageError::Rejected(format!("insufficient funds for {n}")))
            })
            .stage("ship", log("ship"))
            .conditional_stage("notify", |_: &u32| true, log("notify"))
            .build()
            .unwrap();

        let run = pipeline.run(7).await;

        let expected_error = StageError::Rejected("insufficient funds for 7".into());
        assert!(!run.is_success());
        assert_eq!(
            run.output,
            Err(PipelineFailure {
                stage: "charge".into(),
                error: expected_error.clone(),
            })
        );
        let statuses: Vec<(&str, StageStatus)> = run
            .trace
            .iter()
            .map(|t| (t.stage.as_str(), t.status.clone()))
            .collect();
        assert_eq!(
            statuses,
            vec![
                ("validate", StageStatus::Ran),
                (
                    "charge",
                    StageStatus::Failed {
                        error: expected_error
                    }
                ),
                ("ship", StageStatus::NotReached),
                ("notify", StageStatus::NotReached),
            ]
        );
        assert_eq!(run.ran(), vec!["validate"]);
        assert_eq!(*calls.lock().unwrap(), vec!["validate"]);
        if let Err(failure) = &run.output {
            assert_eq!(
                failure.to_string(),
                "stage `charge` rejected: insufficient funds for 7"
            );
        }
    }

    #[tokio::test]
    async fn duplicate_stage_names_are_a_build_error() {
        let err = Pipeline::builder("dup")
            .stage("a", |n: u8| async move { Ok(n) })
            .stage("b", |n: u8| async move { Ok(n) })
            .conditional_stage("a", |_: &u8| true, |n: u8| async move { Ok(n) })
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            PipelineError::DuplicateStage {
                pipeline: "dup".into(),
                stage: "a".into(),
            }
        );
    }

    #[tokio::test]
    async fn empty_pipeline_is_a_build_error() {
        let err = Pipeline::<u8>::builder("nothing").build().unwrap_err();
        assert_eq!(
            err,
            PipelineError::Empty {
                pipeline: "nothing".into()
            }
        );
    }

    #[tokio::test]
    async fn same_pipeline_runs_twice_with_different_inputs() {
        assert_send_sync::<Pipeline<Order>>();
        let pipeline = checkout();

        let first = pipeline.run(order(10)).await;
        let second = pipeline.run(order(1000)).await;

        assert_eq!(first.ran(), vec!["payment", "inventory"]);
        assert!(matches!(&first.output, Ok(o) if o.reserved && o.amount == 10));
        assert_eq!(second.skipped(), vec!["inventory"]);
        assert!(matches!(&second.output, Ok(o) if !o.reserved && o.amount == 1000));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_runs_share_one_pipeline() {
        let pipeline = Arc::new(
            Pipeline::builder("slow")
                .stage("square", |n: u64| async move {
                    tokio::task::yield_now().await;
                    Ok(n * n)
                })
                .build()
                .unwrap(),
        );
        let tasks: Vec<_> = (1..=4u64)
            .map(|n| {
                let pipeline = Arc::clone(&pipeline);
                tokio::spawn(async move { pipeline.run(n).await.output })
            })
            .collect();
        let mut outputs = Vec::new();
        for task in tasks {
            outputs.push(task.await.unwrap().unwrap());
        }
        assert_eq!(outputs, vec![1, 4, 9, 16]);
    }
}
