//! Section 6: cost per order from the counts of sections 2 and 5, at AWS list prices, beside the
//! orchestration fee of the same saga on Step Functions Standard. Every assumption is printed.

use crate::end_to_end::EndToEndFigures;
use crate::requests::RequestFigures;

/// Lambda, per million requests (us-east-1 list price).
const LAMBDA_PER_MILLION_REQUESTS: f64 = 0.20;
/// Lambda arm64, per GB-second (us-east-1 list price, first pricing tier).
const LAMBDA_ARM_PER_GB_SECOND: f64 = 0.000_013_333_4;
/// Assumed memory of every function, in GB (the template's 128 MB... rounded as Lambda bills).
const MEMORY_GB: f64 = 0.125;
/// Assumed billed duration of an invocation, in seconds: a batch's 1 to 3 DynamoDB round trips
/// of single-digit milliseconds on AWS, plus the handler's own time.
const BILLED_SECONDS: f64 = 0.030;
/// DynamoDB on-demand, per million write request units (us-east-1 list price).
const DYNAMODB_PER_MILLION_WRITES: f64 = 0.625;
/// DynamoDB on-demand, per million read request units (us-east-1 list price).
const DYNAMODB_PER_MILLION_READS: f64 = 0.125;
/// Assumed size of a Kafka record (an event envelope with its headers), in KB.
const RECORD_KB: f64 = 1.0;
/// MSK Serverless, per GB written in and per GB read out (us-east-1 list prices).
const MSK_PER_GB_IN: f64 = 0.10;
const MSK_PER_GB_OUT: f64 = 0.05;
/// Step Functions Standard, per 1,000 state transitions (us-east-1 list price).
const SFN_PER_THOUSAND_TRANSITIONS: f64 = 0.025;
/// State transitions of the order saga on Step Functions Standard, happy path: start, charge,
/// reserve, schedule shipping, complete the order, succeed (compensation adds more).
const SFN_TRANSITIONS: f64 = 6.0;

/// Issue 18's write units per order: half of what an order cost before it (about 105).
const WRITE_UNITS_TARGET: f64 = 50.0;
/// Issue 18's cost per million orders: a quarter of Step Functions Standard's orchestration
/// fee for the same saga.
const COST_PER_MILLION_TARGET: f64 = 37.50;

/// `target: what <= limit: met (value)` or `missed by ...`, one line as the other sections print.
fn target_line(what: &str, value: f64, limit: f64, unit: &str) -> String {
    if value <= limit {
        format!("  target: {what} <= {unit}{limit:.2}: met ({unit}{value:.2})")
    } else {
        format!(
            "  target: {what} <= {unit}{limit:.2}: missed by {unit}{:.2} ({unit}{value:.2}, {:.2}x the target)",
            value - limit,
            value / limit
        )
    }
}

/// Why an order costs more write units than the target, from what section 5 measured: where
/// the units go, largest first, and what each kind is for.
fn why_write_units_missed(e2e: &EndToEndFigures) -> String {
    let mut kinds = e2e.transaction_items_per_order.clone();
    kinds.sort_by(|a, b| b.2.total_cmp(&a.2));
    let spent = kinds
        .iter()
        .filter(|(_, items, _)| *items > 0.0)
        .map(|(kind, items, units)| format!("{kind} ~{units:.1} ({items:.1} items)"))
        .collect::<Vec<_>>()
        .join(", ");
    let bookkeeping: f64 = kinds
        .iter()
        .filter(|(kind, _, _)| kind == "idempotency record" || kind == "analytics progress")
        .map(|(_, _, units)| units)
        .sum();
    format!(
        "  why: every write is part of a transaction, 2 units per KB of each item, and an order's \
         writes per item kind are {spent}; the exactly-once bookkeeping (idempotency records and \
         analytics progress, ~{bookkeeping:.1}) is what makes a redelivered command or a \
         republished event change nothing, and the events carrying a saga's commands are over \
         1 KB (BENCHMARKS.md section 6 says what would remove each)"
    )
}

/// Prints the cost per order and per million orders.
pub fn print(requests: &RequestFigures, e2e: &EndToEndFigures) {
    let million = 1_000_000.0;
    let invocations = e2e.invocations_per_order;
    let lambda = invocations * (LAMBDA_PER_MILLION_REQUESTS / million)
        + invocations * MEMORY_GB * BILLED_SECONDS * LAMBDA_ARM_PER_GB_SECOND;
    let dynamodb = e2e.write_units_per_order * DYNAMODB_PER_MILLION_WRITES / million
        + e2e.read_units_per_order * DYNAMODB_PER_MILLION_READS / million;
    let gb = |records: f64| records * RECORD_KB / (1024.0 * 1024.0);
    let kafka = gb(e2e.records_produced_per_order) * MSK_PER_GB_IN
        + gb(e2e.records_consumed_per_order) * MSK_PER_GB_OUT;
    let total = lambda + dynamodb + kafka;
    let sfn = SFN_TRANSITIONS * SFN_PER_THOUSAND_TRANSITIONS / 1_000.0;

    println!(
        "\n6. Cost per order (from sections 2 and 5; us-east-1 list prices; assumptions below)"
    );
    println!(
        "  per order: {:.1} Lambda invocations, ~{:.1} DynamoDB write and ~{:.1} read request units, {:.1} Kafka records in and {:.1} out",
        invocations,
        e2e.write_units_per_order,
        e2e.read_units_per_order,
        e2e.records_produced_per_order,
        e2e.records_consumed_per_order
    );
    println!("  per million orders:");
    println!("    Lambda     ${:>10.2}", lambda * million);
    println!("    DynamoDB   ${:>10.2}", dynamodb * million);
    println!(
        "    Kafka data ${:>10.2}  (MSK Serverless data only)",
        kafka * million
    );
    println!("    sagaflow   ${:>10.2}", total * million);
    println!(
        "    Step Functions Standard orchestration fee alone: ${:.2} ({SFN_TRANSITIONS} transitions x ${SFN_PER_THOUSAND_TRANSITIONS} per 1,000), before the same services' Lambda and DynamoDB costs",
        sfn * million
    );
    println!(
        "{}",
        target_line(
            "DynamoDB write units per order",
            e2e.write_units_per_order,
            WRITE_UNITS_TARGET,
            ""
        )
    );
    if e2e.write_units_per_order > WRITE_UNITS_TARGET {
        println!("{}", why_write_units_missed(e2e));
    }
    println!(
        "{}",
        target_line(
            "cost per million orders",
            total * million,
            COST_PER_MILLION_TARGET,
            "$"
        )
    );
    if total * million > COST_PER_MILLION_TARGET && dynamodb > 0.0 {
        println!(
            "  why: DynamoDB is {:.0}% of it, and {:.0}% of DynamoDB's share is the write units above",
            100.0 * dynamodb / total,
            100.0 * (e2e.write_units_per_order * DYNAMODB_PER_MILLION_WRITES / million) / dynamodb
        );
    }
    println!(
        "  event store floor: {:.2} requests per command one by one, {:.2} when a batch holds several for one aggregate",
        requests.one_by_one_per_command, requests.batched_per_command
    );
    println!("  assumptions: every function arm64 with 128 MB and {:.0} ms billed per invocation; DynamoDB on-demand at ${DYNAMODB_PER_MILLION_WRITES}/M writes and ${DYNAMODB_PER_MILLION_READS}/M reads, request units as the endpoint reported them (dynoxide bills as DynamoDB: transactional writes 2 per KB of each item, an update by the whole item it changes, consistent reads 1 per 4 KB; a response without units, such as a failed condition, is estimated from the request's size); the relay's Streams reads are free to Lambda triggers; Kafka records of {RECORD_KB} KB at MSK Serverless ${MSK_PER_GB_IN}/GB in and ${MSK_PER_GB_OUT}/GB out; fixed costs (MSK cluster or broker hours, event poller units of provisioned mappings, CloudWatch) are left out, as they do not grow with orders.", BILLED_SECONDS * 1_000.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_lists_the_kinds_largest_first_and_adds_up_the_bookkeeping() {
        let e2e = EndToEndFigures {
            write_units_per_order: 80.0,
            transaction_items_per_order: vec![
                ("event".into(), 12.0, 30.0),
                ("idempotency record".into(), 9.0, 18.0),
                ("analytics progress".into(), 8.0, 16.0),
                ("snapshot".into(), 0.0, 0.0),
            ],
            ..EndToEndFigures::default()
        };
        let why = why_write_units_missed(&e2e);
        let event = why.find("event ~30.0 (12.0 items)").expect(&why);
        let record = why.find("idempotency record ~18.0").expect(&why);
        assert!(event < record, "{why}");
        assert!(why.contains("~34.0)"), "{why}");
        assert!(!why.contains("snapshot"), "{why}");
    }
}
