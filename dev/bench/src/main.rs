//! `make bench`: sagaflow measured beside cqrs-es and dynamo-es, on the local servers, in one
//! run. `BENCHMARKS.md` explains each figure and what the machine was.

mod core_vs_cqrs;
mod cost;
mod cqrs_stock;
mod end_to_end;
mod init;
mod kafka_batch;
mod requests;
mod scale;
mod settings;
mod stats;

use std::process::ExitCode;

use settings::{Parsed, Section};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let settings = match settings::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(settings)) => settings,
        Ok(Parsed::Help) => {
            println!("{}", settings::HELP);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sagaflow-bench: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "sagaflow bench{} on {} CPU(s), {}",
        if settings.quick { " (quick)" } else { "" },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        machine()
    );
    let mut failed = Vec::new();
    let mut request_figures = None;
    let mut e2e_figures = None;
    for section in &settings.sections {
        let outcome = match section {
            Section::Core => {
                core_vs_cqrs::run(&settings).await;
                Ok(())
            }
            Section::Requests => requests::run(&settings)
                .await
                .map(|f| request_figures = Some(f)),
            Section::Batch => kafka_batch::run(&settings).await.map(|_| ()),
            Section::Init => init::run(&settings).await.map(|_| ()),
            Section::EndToEnd => end_to_end::run(&settings)
                .await
                .map(|f| e2e_figures = Some(f)),
            Section::Cost => match (&request_figures, &e2e_figures) {
                (Some(r), Some(e)) => {
                    cost::print(r, e);
                    Ok(())
                }
                _ => Err("needs the requests and e2e figures, which failed".to_string()),
            },
            Section::Scale => scale::run(&settings, e2e_figures.as_ref()).await,
        };
        if let Err(e) = outcome {
            eprintln!("\n{section:?} failed: {e}");
            failed.push(*section);
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("\nsections that failed: {failed:?}");
        ExitCode::FAILURE
    }
}

/// The processor's model name, from /proc/cpuinfo where there is one.
fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
