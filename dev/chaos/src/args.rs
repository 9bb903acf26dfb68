//! The chaos run's flags.

use std::time::Duration;

use sagaflow_local_trigger::FaultRates;

/// What `make chaos ARGS="--help"` prints.
pub const HELP: &str = "\
make chaos: orders through the functions on the local servers (dynoxide and tansu), with faults
injected on a seeded schedule; prints one line per invariant and exits 1 if any is broken.

  --orders N             orders to place (default 2000)
  --seed N               the fault schedule and the order mix (default 1)
  --partitions N         partitions per topic (default 3)
  --twice R              share of batches delivered twice (default 0.05)
  --crash R              share of invocations that crash after their commit (default 0.03)
  --error R              share of invocations that fail half-way (default 0.03)
  --race R               share of invocations raced by a second one (default 0.03)
  --relay-crash R        share of relay batches re-published (crash before checkpoint) (default 0.05)
  --throttle R           share of DynamoDB requests throttled (default 0.02)
  --lost-answer R        share of DynamoDB writes whose answer is lost after commit (default 0.01)
  --silent R             share of orchestrated orders whose shipment is never scheduled (default 0.02)
  --outages N            DynamoDB endpoint outages while orders are placed: the emulator is stopped
                         and started again on its database file (default 2)
  --outage-secs N        how long each outage lasts (default 8)
  --bad-records N        bad records mixed in, each must be dead-lettered (default 10)
  --in-flight N          orders placed but not finished at any time, at most (default 20)
  --step-timeout-ms N    how long a saga step waits for its reply (default 20000)
  --step-attempts N      sends of a compensation before the saga records it failed (default 6)
  --forward-attempts N   sends of a forward step's command before the step fails (default 2)
  --cancels SHARE        orchestrated orders their customer cancels while they run, at a seeded
                         moment, some with the cancel sent twice and cancelled again (default 0.08)
  --stall-secs N         give up when nothing finished for this long (default 180)
  --no-faults            the same run with every fault rate at zero
  --help                 this text";

/// The parsed flags.
#[derive(Clone, Debug)]
pub struct Args {
    /// Orders to place.
    pub orders: usize,
    /// The seed.
    pub seed: u64,
    /// Partitions per topic.
    pub partitions: i32,
    /// Fault shares.
    pub rates: FaultRates,
    /// Share of orchestrated orders silenced.
    pub silent: f64,
    /// Bad records mixed in.
    pub bad_records: usize,
    /// Orders in flight at most.
    pub in_flight: usize,
    /// Saga step timeout.
    pub step_timeout_ms: i64,
    /// Sends of a compensation before it is recorded as failed.
    pub step_attempts: u32,
    /// Sends of a forward step's command before the step fails.
    pub forward_attempts: u32,
    /// Share of orchestrated orders their customer cancels while they run.
    pub cancels: f64,
    /// Give up after no progress for this long.
    pub stall: Duration,
    /// DynamoDB endpoint outages, spread over the placing of the orders.
    pub outages: usize,
    /// How long each outage lasts.
    pub outage: Duration,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            orders: 2_000,
            seed: 1,
            partitions: 3,
            rates: FaultRates {
                deliver_twice: 0.05,
                crash_after_commit: 0.03,
                error_halfway: 0.03,
                race: 0.03,
                relay_crash: 0.05,
                dynamodb_throttle: 0.02,
                dynamodb_lost_answer: 0.01,
            },
            silent: 0.02,
            bad_records: 10,
            in_flight: 20,
            step_timeout_ms: 20_000,
            step_attempts: sagaflow_orders::flow::sagas::STEP_ATTEMPTS,
            forward_attempts: sagaflow_orders::flow::sagas::FORWARD_ATTEMPTS,
            cancels: 0.08,
            stall: Duration::from_secs(180),
            outages: 2,
            outage: Duration::from_secs(8),
        }
    }
}

/// Why the flags cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum ArgsError {
    /// `--help` was asked for.
    Help,
    /// A flag is unknown, lacks its value, or its value is out of range.
    Invalid(String),
}

impl Args {
    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, ArgsError> {
        let mut parsed = Args::default();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            if flag == "--help" || flag == "-h" {
                return Err(ArgsError::Help);
            }
            if flag == "--no-faults" {
                parsed.rates = FaultRates::default();
                parsed.silent = 0.0;
                parsed.outages = 0;
                continue;
            }
            let value = args
                .next()
                .ok_or_else(|| ArgsError::Invalid(format!("{flag} needs a value")))?;
            let number = |v: &str| -> Result<u64, ArgsError> {
                v.parse()
                    .map_err(|_| ArgsError::Invalid(format!("{flag}: `{v}` is not a whole number")))
            };
            let share = |v: &str| -> Result<f64, ArgsError> {
                v.parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        ArgsError::Invalid(format!("{flag}: `{v}` is not a share in [0, 1]"))
                    })
            };
            match flag.as_str() {
                "--orders" => parsed.orders = number(&value)? as usize,
                "--seed" => parsed.seed = number(&value)?,
                "--partitions" => {
                    parsed.partitions = i32::try_from(number(&value)?.max(1))
                        .map_err(|_| ArgsError::Invalid("--partitions: too many".into()))?
                }
                "--twice" => parsed.rates.deliver_twice = share(&value)?,
                "--crash" => parsed.rates.crash_after_commit = share(&value)?,
                "--error" => parsed.rates.error_halfway = share(&value)?,
                "--race" => parsed.rates.race = share(&value)?,
                "--relay-crash" => parsed.rates.relay_crash = share(&value)?,
                "--throttle" => parsed.rates.dynamodb_throttle = share(&value)?,
                "--lost-answer" => parsed.rates.dynamodb_lost_answer = share(&value)?,
                "--silent" => parsed.silent = share(&value)?,
                "--cancels" => parsed.cancels = share(&value)?,
                "--bad-records" => parsed.bad_records = number(&value)? as usize,
                "--in-flight" => parsed.in_flight = number(&value)?.max(1) as usize,
                "--step-timeout-ms" => parsed.step_timeout_ms = number(&value)?.max(1) as i64,
                "--step-attempts" => {
                    parsed.step_attempts = u32::try_from(number(&value)?.max(1)).unwrap_or(u32::MAX)
                }
                "--forward-attempts" => {
                    parsed.forward_attempts =
                        u32::try_from(number(&value)?.max(1)).unwrap_or(u32::MAX)
                }
                "--outages" => parsed.outages = number(&value)? as usize,
                "--outage-secs" => parsed.outage = Duration::from_secs(number(&value)?.max(1)),
                "--stall-secs" => parsed.stall = Duration::from_secs(number(&value)?.max(1)),
                other => return Err(ArgsError::Invalid(format!("unknown flag {other}"))),
            }
        }
        let r = &parsed.rates;
        let trigger_total = r.deliver_twice + r.crash_after_commit + r.error_halfway + r.race;
        if trigger_total >= 0.5 || r.dynamodb_throttle + r.dynamodb_lost_answer >= 0.5 {
            return Err(ArgsError::Invalid(
                "trigger faults together, and DynamoDB faults together, must stay under 0.5 or little would ever commit".into(),
            ));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, ArgsError> {
        Args::parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn flags_set_the_run_and_bad_ones_are_refused() {
        let args = parse(&["--orders", "300", "--seed", "9", "--race", "0.1"]).unwrap();
        assert_eq!((args.orders, args.seed, args.rates.race), (300, 9, 0.1));
        let quiet = parse(&["--no-faults"]).unwrap();
        assert_eq!(quiet.rates.deliver_twice, 0.0);
        assert_eq!(quiet.silent, 0.0);
        assert_eq!(quiet.outages, 0);
        let outages = parse(&["--outages", "3", "--outage-secs", "5"]).unwrap();
        assert_eq!(
            (outages.outages, outages.outage),
            (3, Duration::from_secs(5))
        );
        assert_eq!(parse(&["--help"]).unwrap_err(), ArgsError::Help);
        assert!(matches!(
            parse(&["--race", "2"]),
            Err(ArgsError::Invalid(_))
        ));
        assert!(matches!(parse(&["--orders"]), Err(ArgsError::Invalid(_))));
        assert!(matches!(
            parse(&["--bogus", "1"]),
            Err(ArgsError::Invalid(_))
        ));
        assert!(matches!(
            parse(&["--twice", "0.3", "--crash", "0.3"]),
            Err(ArgsError::Invalid(_))
        ));
    }
}
