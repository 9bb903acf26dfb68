//! The bench run's flags.

/// What `make bench ARGS="--help"` prints.
pub const HELP: &str = "\
make bench: sagaflow measured beside the Rust stack users would otherwise pick, in one run.

  --quick            fewer samples and smaller runs (under five minutes once built)
  --only SECTIONS    comma-separated sections to run: core,requests,batch,init,e2e,cost,scale
                     (default: all; cost needs requests and e2e, and runs them if asked alone)
  --help             this text

Sections:
  core      sagaflow-eventsourcing against cqrs-es (in memory): commands/s, events applied/s on rehydration
  requests  DynamoDB requests per command, counted by an SDK interceptor: sagaflow and dynamo-es
  batch     one 1,000-record Kafka batch over 100 aggregates through one handler invocation
  init      function start to ready for the first invocation, under a local Runtime API
  e2e       orders through every function on the local servers: orders/s, p50/p99 latency
  cost      per-order Lambda, DynamoDB and Kafka counts and list prices, beside Step Functions
  scale     orders/s at 1 to 16 partitions per topic, the whole flow in one process with
            DynamoDB's and Lambda's latency modelled (needs no server)";

/// One section of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// sagaflow-eventsourcing against cqrs-es.
    Core,
    /// DynamoDB requests per command.
    Requests,
    /// One Kafka batch through one invocation.
    Batch,
    /// Function init time and bootstrap sizes.
    Init,
    /// Orders through the local stack.
    EndToEnd,
    /// Cost per order.
    Cost,
    /// Throughput against partitions, in one process.
    Scale,
}

impl Section {
    /// Every section, in the order the report prints them.
    pub const ALL: [Section; 7] = [
        Section::Core,
        Section::Requests,
        Section::Batch,
        Section::Init,
        Section::EndToEnd,
        Section::Cost,
        Section::Scale,
    ];

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "core" => Section::Core,
            "requests" => Section::Requests,
            "batch" => Section::Batch,
            "init" => Section::Init,
            "e2e" => Section::EndToEnd,
            "cost" => Section::Cost,
            "scale" => Section::Scale,
            _ => return None,
        })
    }
}

/// The parsed flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Fewer samples and smaller runs.
    pub quick: bool,
    /// The sections to run.
    pub sections: Vec<Section>,
}

/// What the flags asked for.
#[derive(Debug)]
pub enum Parsed {
    /// Run with these settings.
    Run(Settings),
    /// Print the help.
    Help,
}

/// Parses the flags after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut settings = Settings {
        quick: false,
        sections: Section::ALL.to_vec(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => return Ok(Parsed::Help),
            "--quick" => settings.quick = true,
            "--only" => {
                let list = args.next().ok_or("--only needs a list of sections")?;
                let mut sections = Vec::new();
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    sections.push(
                        Section::parse(name).ok_or_else(|| format!("unknown section `{name}`"))?,
                    );
                }
                if sections.contains(&Section::Cost) {
                    for needed in [Section::Requests, Section::EndToEnd] {
                        if !sections.contains(&needed) {
                            sections.push(needed);
                        }
                    }
                }
                settings.sections = Section::ALL
                    .into_iter()
                    .filter(|s| sections.contains(s))
                    .collect();
            }
            other => return Err(format!("unknown flag `{other}` (see --help)")),
        }
    }
    Ok(Parsed::Run(settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Settings {
        match parse(args.iter().map(|a| a.to_string())).unwrap() {
            Parsed::Run(s) => s,
            Parsed::Help => panic!("help"),
        }
    }

    #[test]
    fn cost_pulls_in_what_it_is_computed_from() {
        let s = run(&["--quick", "--only", "cost,core"]);
        assert!(s.quick);
        assert_eq!(
            s.sections,
            vec![
                Section::Core,
                Section::Requests,
                Section::EndToEnd,
                Section::Cost
            ]
        );
    }

    #[test]
    fn unknown_sections_and_flags_are_refused() {
        assert!(parse(["--only".to_string(), "speed".to_string()]).is_err());
        assert!(parse(["--fast".to_string()]).is_err());
        assert_eq!(run(&[]).sections, Section::ALL.to_vec());
    }
}
