//! `sagaflow`: follow an order across its streams, and find, show and redrive dead letters,
//! against the deployment the environment names (the local servers through `.run/env`, or AWS).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use sagaflow_dynamodb::tables::ensure_analytics_table;
use sagaflow_dynamodb::DynamoAnalyticsStore;
use sagaflow_operator::console::guard::Guard;
use sagaflow_operator::console::Console;
use sagaflow_operator::deployment::Deployment;
use sagaflow_operator::letters::{self, Filter, Letter};
use sagaflow_operator::sagas::{self, SagaStatus};
use sagaflow_operator::time::parse_duration;
use sagaflow_operator::{place, replay};
use sagaflow_operator::{settings, timeline, OperatorError};
use sagaflow_orders::domain::Flow;
use serde_json::json;

/// Operate a sagaflow deployment: follow an order, find dead letters and put them back.
///
/// Configured like the functions: SAGAFLOW_EVENTS_TABLE, SAGAFLOW_KAFKA_BOOTSTRAP,
/// SAGAFLOW_TOPIC_PREFIX, SAGAFLOW_KAFKA_AUTH (and its secret), AWS_* for the SDK; in a
/// checkout, `.run/env` fills in what is unset, so it talks to the local servers.
#[derive(Parser)]
#[command(name = "sagaflow", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Orders: place one, show one's timeline.
    #[command(subcommand)]
    Order(OrderCommand),
    /// Dead letters: list, show, redrive.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(LetterCommand),
    /// Sagas: the ones that need a person.
    #[command(subcommand)]
    Saga(SagaCommand),
    /// Read models: rebuild and compare.
    #[command(subcommand)]
    Replay(ReplayCommand),
    /// The web console: orders, an order's timeline, sagas, dead letters (with redrive) and
    /// analytics, served on 127.0.0.1 unless told otherwise.
    Console {
        /// The port (0 picks a free one, printed at start).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The address to listen on; any but a loopback one needs an access token.
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
        /// The token every request must carry (at least 16 characters); also
        /// SAGAFLOW_CONSOLE_TOKEN.
        #[arg(long, env = "SAGAFLOW_CONSOLE_TOKEN", hide_env_values = true)]
        access_token: Option<String>,
    },
}

#[derive(Subcommand)]
enum SagaCommand {
    /// Sagas by status (running and compensating from the wake-up index; the others by a scan
    /// of the saga streams); without --status, every saga not finished well.
    List {
        /// Only sagas with this status.
        #[arg(long, value_enum)]
        status: Option<SagaStatus>,
        /// Only sagas started longer ago than this (10m, 2h, 1d).
        #[arg(long)]
        older_than: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ReplayCommand {
    /// Rebuilds the analytics read model from the events table and prints where the live table
    /// differs; with --into, also writes the rebuild to TABLE (created if missing; resumable).
    Analytics {
        /// A table to write the rebuild into.
        #[arg(long)]
        into: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum OrderCommand {
    /// Places an order through the front door (saga.start or order.create, as its flow says);
    /// prints its id. Placing the same order again is the same order.
    Place {
        /// A JSON file with the order (`CreateOrder`: order_id, customer_id, lines,
        /// payment_method, shipping_address, flow).
        #[arg(long)]
        file: std::path::PathBuf,
        /// The flow, over the file's.
        #[arg(long, value_enum)]
        flow: Option<FlowArg>,
    },
    /// Every event of the order across its streams in time order, its saga's steps, and its
    /// dead letters.
    Show {
        /// The order id.
        order: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The flows an order can be placed on.
#[derive(Clone, Copy, clap::ValueEnum)]
enum FlowArg {
    /// The orchestrator runs the order's saga.
    Orchestrated,
    /// The services react to each other's events.
    Choreographed,
}

#[derive(clap::Args, Clone, Default)]
struct FilterArgs {
    /// Only letters written in this long (10m, 2h, 1d).
    #[arg(long)]
    since: Option<String>,
    /// Only letters whose reason contains this text (any case).
    #[arg(long)]
    reason: Option<String>,
    /// Only letters from this source topic.
    #[arg(long)]
    topic: Option<String>,
}

impl FilterArgs {
    fn filter(&self) -> Result<Filter, OperatorError> {
        Ok(Filter {
            since: self.since.as_deref().map(parse_duration).transpose()?,
            reason: self.reason.clone(),
            topic: self.topic.clone(),
        })
    }
}

#[derive(Subcommand)]
enum LetterCommand {
    /// The letters on the dead-letter topic, oldest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One letter, whole.
    Show {
        /// The letter's id, PARTITION:OFFSET.
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Publish letters' records again to the topics they came from; a letter redriven before is
    /// refused.
    Redrive {
        /// The letters' ids, PARTITION:OFFSET.
        ids: Vec<String>,
        /// Every letter the filter keeps, instead of ids.
        #[arg(long, conflicts_with = "ids")]
        all_matching: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

fn main() -> ExitCode {
    settings::load_env_file(Path::new(".run/env"));
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn now_ms() -> i64 {
    sagaflow_handlers::clock::now().as_millis()
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

async fn run(command: Command) -> Result<(), OperatorError> {
    match command {
        Command::Console {
            port,
            bind,
            access_token,
        } => {
            let wanted = std::net::SocketAddr::new(bind, port);
            // Refuse a wide address without a token before opening anything.
            Guard::new(wanted, access_token.clone())?;
            let listener = tokio::net::TcpListener::bind(wanted)
                .await
                .map_err(|e| OperatorError::Settings(format!("cannot listen on {wanted}: {e}")))?;
            let address = listener
                .local_addr()
                .map_err(|e| OperatorError::Settings(format!("cannot listen on {wanted}: {e}")))?;
            let guard = Guard::new(address, access_token)?;
            let deployment = Deployment::from_env().await?;
            let token_hint = if guard.needs_access_token() {
                " (open it with ?token=<your access token>)"
            } else {
                ""
            };
            println!("console on http://{address}/{token_hint}");
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
            Arc::new(Console::new(deployment, guard))
                .serve(listener)
                .await
        }
        Command::Order(OrderCommand::Place { file, flow }) => {
            let text = std::fs::read_to_string(&file).map_err(|e| {
                OperatorError::Settings(format!("cannot read {}: {e}", file.display()))
            })?;
            let flow = flow.map(|f| match f {
                FlowArg::Orchestrated => Flow::Orchestrated,
                FlowArg::Choreographed => Flow::Choreographed,
            });
            let deployment = Deployment::from_env().await?;
            let (order, record) = place::placement(
                &text,
                flow,
                &deployment.kafka.topics,
                sagaflow_handlers::clock::now(),
            )?;
            deployment
                .publisher()?
                .publish(std::slice::from_ref(&record))
                .await
                .map_err(|e| OperatorError::Kafka {
                    servers: deployment.kafka.bootstrap_servers.clone(),
                    reason: e.to_string(),
                })?;
            println!("{order}");
            Ok(())
        }
        Command::Saga(SagaCommand::List {
            status,
            older_than,
            json,
        }) => {
            let older = older_than.as_deref().map(parse_duration).transpose()?;
            let deployment = Deployment::from_env().await?;
            let rows = sagas::list(
                Arc::new(deployment.store.clone()),
                &deployment.dynamodb,
                status,
                older.map_or(0, |d| d.as_millis() as i64),
                now_ms(),
            )
            .await?;
            if json {
                print_json(&json!(rows));
            } else if rows.is_empty() {
                println!("no saga needs a person");
            } else {
                for row in &rows {
                    println!(
                        "{:<20} {:<20} {:<9} started {}  waits on {}",
                        row.saga_id,
                        row.status,
                        if row.cancelled { "cancelled" } else { "" },
                        row.started.as_deref().unwrap_or("-"),
                        row.awaiting.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(())
        }
        Command::Replay(ReplayCommand::Analytics { into, json }) => {
            let deployment = Deployment::from_env().await?;
            let (events, replayed) = replay::replayed(&deployment.store).await?;
            let live = deployment.analytics();
            let live_summary = replay::live_summary(&live).await?;
            let differences = replay::differences(&live_summary, &replayed);
            let written = match &into {
                Some(table) => {
                    ensure_analytics_table(&deployment.dynamodb, table)
                        .await
                        .map_err(|e| OperatorError::Dynamo {
                            operation: "CreateTable",
                            reason: e.to_string(),
                        })?;
                    let target = Arc::new(DynamoAnalyticsStore::new(
                        deployment.dynamodb.clone(),
                        table.clone(),
                    ));
                    Some(replay::write_into(events.clone(), target).await?)
                }
                None => None,
            };
            if json {
                print_json(&json!({
                    "events": events.len(),
                    "differences": differences,
                    "written_into": into,
                    "written": written,
                }));
            } else {
                println!(
                    "replayed {} events against {}",
                    events.len(),
                    deployment.analytics_table
                );
                if differences.is_empty() {
                    println!("the live table equals the replay");
                } else {
                    for d in &differences {
                        println!("  {:<44} live {}  replay {}", d.field, d.live, d.replayed);
                    }
                }
                if let (Some(table), Some(n)) = (&into, written) {
                    println!("wrote the replay of {n} events into {table}");
                }
            }
            Ok(())
        }
        Command::Order(OrderCommand::Show { order, json }) => {
            timeline::check_order_id(&order)?;
            let deployment = Deployment::from_env().await?;
            let timeline = timeline::timeline(&deployment.store, &order).await?;
            // The timeline stands without Kafka: an unreachable broker only leaves the letters out.
            let letters = deployment.letters().await.map(|all| {
                all.into_iter()
                    .filter(|l| l.correlation_id.as_deref() == Some(order.as_str()))
                    .collect::<Vec<Letter>>()
            });
            if json {
                let (letters, unread) = match &letters {
                    Ok(letters) => (json!(letters), None),
                    Err(e) => (json!(null), Some(e.to_string())),
                };
                print_json(&json!({
                    "timeline": timeline,
                    "dead_letters": letters,
                    "dead_letters_unread": unread,
                }));
            } else {
                print_timeline(&timeline, letters.as_deref().unwrap_or_default());
                if let Err(e) = &letters {
                    println!("dead letters: not read ({e})");
                }
            }
            Ok(())
        }
        Command::DeadLetters(LetterCommand::List { filter, json }) => {
            let filter = filter.filter()?;
            let deployment = Deployment::from_env().await?;
            let now = now_ms();
            let kept: Vec<Letter> = deployment
                .letters()
                .await?
                .into_iter()
                .filter(|l| filter.keeps(l, now))
                .collect();
            if json {
                print_json(&json!(kept));
            } else if kept.is_empty() {
                println!("no dead letters on {}", deployment.dead_letter_topic());
            } else {
                for letter in &kept {
                    let source = letter
                        .source
                        .as_ref()
                        .map_or("events table change".to_string(), |s| {
                            format!("{}-{}@{}", s.topic, s.partition, s.offset)
                        });
                    println!(
                        "{:<9} {}  {:<40} order {:<14} {}",
                        letter.id,
                        letter.at,
                        source,
                        letter.correlation_id.as_deref().unwrap_or("-"),
                        letter.reason
                    );
                }
            }
            Ok(())
        }
        Command::DeadLetters(LetterCommand::Show { id, json }) => {
            letters::parse_id(&id)?;
            let deployment = Deployment::from_env().await?;
            let letter = deployment.letter(&id).await?;
            let redriven = letters::redriven_at(
                &deployment.dynamodb,
                &deployment.table,
                &deployment.dead_letter_topic(),
                &id,
            )
            .await?;
            if json {
                print_json(&json!({ "letter": letter, "redriven_at_ms": redriven }));
            } else {
                println!(
                    "dead letter {} on {}",
                    letter.id,
                    deployment.dead_letter_topic()
                );
                println!("  written   {}", letter.at);
                println!("  reason    {}", letter.reason);
                if let Some(source) = &letter.source {
                    println!(
                        "  from      {}-{}@{}",
                        source.topic, source.partition, source.offset
                    );
                }
                println!(
                    "  order     {}",
                    letter.correlation_id.as_deref().unwrap_or("-")
                );
                match (letter.not_redrivable, redriven) {
                    (Some(why), _) => println!("  redrive   no: {why}"),
                    (None, Some(at)) => {
                        println!("  redrive   done at {}", sagaflow_operator::time::iso(at))
                    }
                    (None, None) => {
                        println!("  redrive   sagaflow dead-letters redrive {}", letter.id)
                    }
                }
                println!(
                    "{}",
                    serde_json::to_string_pretty(&letter.value).unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::DeadLetters(LetterCommand::Redrive {
            ids,
            all_matching,
            filter,
        }) => {
            if ids.is_empty() && !all_matching {
                return Err(OperatorError::Settings(
                    "name the letters to redrive (PARTITION:OFFSET ...) or pass --all-matching"
                        .into(),
                ));
            }
            for id in &ids {
                letters::parse_id(id)?;
            }
            let filter = filter.filter()?;
            let deployment = Deployment::from_env().await?;
            let all = deployment.letters().await?;
            let now = now_ms();
            let chosen: Vec<&Letter> = if all_matching {
                all.iter()
                    .filter(|l| filter.keeps(l, now) && l.not_redrivable.is_none())
                    .collect()
            } else {
                ids.iter()
                    .map(|id| {
                        all.iter().find(|l| &l.id == id).ok_or_else(|| {
                            OperatorError::NoSuchLetter {
                                id: id.clone(),
                                topic: deployment.dead_letter_topic(),
                            }
                        })
                    })
                    .collect::<Result<_, _>>()?
            };
            let publisher = deployment.publisher()?;
            let asked = chosen.len();
            let mut refused = Vec::new();
            for letter in chosen {
                match letters::redrive(
                    letter,
                    &deployment.dead_letter_topic(),
                    &deployment.dynamodb,
                    &deployment.table,
                    &publisher,
                    now,
                )
                .await
                {
                    Ok(source) => println!("redriven {} to {}", letter.id, source.topic),
                    // With --all-matching, the ones redriven before are passed over.
                    Err(OperatorError::AlreadyRedriven { .. }) if all_matching => {}
                    Err(e) => refused.push(e),
                }
            }
            match refused.len() {
                0 => Ok(()),
                1 if asked == 1 => Err(refused.remove(0)),
                n => {
                    for e in &refused {
                        eprintln!("error: {e}");
                    }
                    Err(OperatorError::Settings(format!(
                        "{n} of {asked} letters were not redriven"
                    )))
                }
            }
        }
    }
}

fn print_timeline(timeline: &timeline::Timeline, letters: &[Letter]) {
    println!("order {}: {}", timeline.order, timeline.status);
    for event in &timeline.events {
        println!(
            "  {}  {:<22} {:>3}  {:<34} caused by {}",
            event.at, event.stream, event.sequence, event.event_type, event.causation_id
        );
    }
    if !timeline.steps.is_empty() {
        println!("saga steps");
        for step in &timeline.steps {
            let took = step
                .duration_ms
                .map_or("-".to_string(), |ms| format!("{ms} ms"));
            println!(
                "  {:<18} {:<12} attempt {}  {:>9}  {}",
                step.step, step.kind, step.attempt, took, step.outcome
            );
        }
    }
    if letters.is_empty() {
        println!("dead letters: none");
    } else {
        println!("dead letters");
        for letter in letters {
            println!("  {}  {}  {}", letter.id, letter.at, letter.reason);
        }
    }
}
