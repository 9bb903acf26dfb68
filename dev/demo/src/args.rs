//! Command-line flags of the demo.

use sagaflow_orders::domain::Flow;

use crate::scenario::Scenario;

/// The help text.
pub const HELP: &str = "\
sagaflow demo: the whole order flow in one process, through the deployed handlers
(in-memory store, in-process broker feeding them Kafka trigger batches)

USAGE:
    sagaflow-demo [OPTIONS]        (make run ARGS=\"...\")

OPTIONS:
    --orders N          orders to place (default 36)
    --seed N            seed of every random choice (default 42)
    --mix LIST          share of each scenario, e.g. success=55,declined=10,out-of-stock=10,
                        shipment-failure=10,timeout=5,invalid=5,customer-cancel=5 (default as shown)
    --flows LIST        flows to use, round robin: orchestrated,choreographed,in-process (default all)
    --lost-commits PCT  share of batch commits lost, forcing redelivery (default 10, max 90)
    --partitions N      partitions per topic (default 4)
    --batch N           orders placed between runs of the functions (default 6)
    --rows N            order rows to print, 0 for all (default 60)
    --trace ORDER       print every log line the functions wrote about ORDER (e.g. ord-000007)
    -h, --help          this text

The first orders cover every scenario in every flow; the rest follow --mix.
Exit status: 0 when every invariant holds, 1 when one is broken, 2 on bad flags.";

/// The parsed flags.
#[derive(Clone, Debug)]
pub struct Args {
    /// Orders to place.
    pub orders: usize,
    /// Seed.
    pub seed: u64,
    /// Weight of each scenario.
    pub mix: Vec<(Scenario, u32)>,
    /// Flows, used round robin.
    pub flows: Vec<Flow>,
    /// Share of dropped commits.
    pub lost_commit_percent: u32,
    /// Partitions per topic.
    pub partitions: usize,
    /// Orders between bus runs.
    pub batch: usize,
    /// Rows to print.
    pub rows: usize,
    /// The order whose log lines to print.
    pub trace: Option<String>,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            orders: 36,
            seed: 42,
            mix: vec![
                (Scenario::Success, 55),
                (Scenario::Declined, 10),
                (Scenario::OutOfStock, 10),
                (Scenario::ShipmentFailure, 10),
                (Scenario::Timeout, 5),
                (Scenario::Invalid, 5),
                (Scenario::CustomerCancel, 5),
            ],
            flows: vec![Flow::Orchestrated, Flow::Choreographed, Flow::InProcess],
            lost_commit_percent: 10,
            partitions: 4,
            batch: 6,
            rows: 60,
            trace: None,
        }
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let value = value.ok_or(format!("{flag} needs a value"))?;
    value
        .parse()
        .map_err(|_| format!("{flag}: `{value}` is not a valid number"))
}

impl Args {
    /// Parses flags; `Ok(None)` means help was asked for.
    pub fn parse(mut raw: impl Iterator<Item = String>) -> Result<Option<Self>, String> {
        let mut args = Args::default();
        while let Some(flag) = raw.next() {
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--orders" => args.orders = number(&flag, raw.next())?,
                "--seed" => args.seed = number(&flag, raw.next())?,
                "--lost-commits" => args.lost_commit_percent = number(&flag, raw.next())?,
                "--partitions" => args.partitions = number(&flag, raw.next())?,
                "--batch" => args.batch = number(&flag, raw.next())?,
                "--rows" => args.rows = number(&flag, raw.next())?,
                "--trace" => args.trace = Some(raw.next().ok_or("--trace needs an order id")?),
                "--mix" => args.mix = parse_mix(&raw.next().ok_or("--mix needs a value")?)?,
                "--flows" => args.flows = parse_flows(&raw.next().ok_or("--flows needs a value")?)?,
                other => return Err(format!("unknown flag `{other}`")),
            }
        }
        if args.lost_commit_percent > 90 {
            return Err("--lost-commits must be at most 90".into());
        }
        if args.partitions == 0 || args.batch == 0 {
            return Err("--partitions and --batch must be at least 1".into());
        }
        if args.mix.iter().all(|(_, w)| *w == 0) {
            return Err("--mix needs at least one scenario with a weight above 0".into());
        }
        Ok(Some(args))
    }
}

fn parse_mix(text: &str) -> Result<Vec<(Scenario, u32)>, String> {
    text.split(',')
        .map(|part| {
            let (name, weight) = part
                .split_once('=')
                .ok_or(format!("--mix: `{part}` is not name=weight"))?;
            let scenario = Scenario::from_name(name.trim())
                .ok_or(format!("--mix: unknown scenario `{name}`"))?;
            let weight = weight
                .trim()
                .parse()
                .map_err(|_| format!("--mix: `{weight}` is not a whole number"))?;
            Ok((scenario, weight))
        })
        .collect()
}

fn parse_flows(text: &str) -> Result<Vec<Flow>, String> {
    let flows: Vec<Flow> = text
        .split(',')
        .map(|name| match name.trim() {
            "orchestrated" => Ok(Flow::Orchestrated),
            "choreographed" => Ok(Flow::Choreographed),
            "in-process" => Ok(Flow::InProcess),
            other => Err(format!("--flows: unknown flow `{other}`")),
        })
        .collect::<Result<_, _>>()?;
    if flows.is_empty() {
        return Err("--flows needs at least one flow".into());
    }
    Ok(flows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> Result<Option<Args>, String> {
        Args::parse(flags.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_flags_and_rejects_bad_ones() {
        let args = parse(&[
            "--orders",
            "10",
            "--seed",
            "7",
            "--flows",
            "choreographed",
            "--mix",
            "success=1,declined=2",
            "--trace",
            "ord-000007",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(args.orders, 10);
        assert_eq!(args.trace.as_deref(), Some("ord-000007"));
        assert!(parse(&["--trace"]).is_err());
        assert_eq!(args.seed, 7);
        assert_eq!(args.flows, vec![Flow::Choreographed]);
        assert_eq!(
            args.mix,
            vec![(Scenario::Success, 1), (Scenario::Declined, 2)]
        );
        assert!(parse(&["--help"]).unwrap().is_none());
        assert!(parse(&["--orders", "many"])
            .unwrap_err()
            .contains("not a valid number"));
        assert!(parse(&["--mix", "fast=1"])
            .unwrap_err()
            .contains("unknown scenario"));
        assert!(parse(&["--flows", "telepathy"])
            .unwrap_err()
            .contains("unknown flow"));
        assert!(parse(&["--lost-commits", "95"]).is_err());
        assert!(parse(&["--wat"]).unwrap_err().contains("unknown flag"));
    }
}
