//! `infra/template.yaml` deploys exactly the topology of `sagaflow_records::topology`: every
//! function with its binary, one Kafka event source mapping per topic it reads (in both the MSK
//! and the self-managed variant), the stream and schedule triggers, and MSK grants to read and
//! write exactly its topics. A subscription added in Rust and not to the template fails here.

use std::collections::{BTreeMap, BTreeSet};

use sagaflow_records::topology::{Function, Trigger, FUNCTIONS};
use serde_yaml::Value;

fn template() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string("../../infra/template.yaml").expect("infra/template.yaml");
    let template: Value = serde_yaml::from_str(&text).expect("the template is YAML");
    let resources = template
        .get("Resources")
        .and_then(Value::as_mapping)
        .expect("Resources");
    resources
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v.clone()))
        .collect()
}

/// Every string under `value`, through CloudFormation's short-form tags.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Mapping(map) => map.values().for_each(|v| strings(v, out)),
        Value::Tagged(tagged) => strings(&tagged.value, out),
        _ => {}
    }
}

/// The topic suffixes (`events.payment`) named under `value` as `${TopicPrefix}.<topic>`.
fn topics_in(value: &Value) -> BTreeSet<String> {
    let mut all = Vec::new();
    strings(value, &mut all);
    all.iter()
        .filter_map(|s| s.split("${TopicPrefix}.").nth(1))
        .map(|rest| rest.trim_end_matches(['\'', ']']).to_string())
        .collect()
}

/// The statement with `sid` anywhere under `value` (the template wraps them in `!If`).
fn statement<'a>(value: &'a Value, sid: &str) -> Option<&'a Value> {
    match value {
        Value::Mapping(map) if map.get("Sid").and_then(Value::as_str) == Some(sid) => Some(value),
        Value::Mapping(map) => map.values().find_map(|v| statement(v, sid)),
        Value::Sequence(items) => items.iter().find_map(|v| statement(v, sid)),
        Value::Tagged(tagged) => statement(&tagged.value, sid),
        _ => None,
    }
}

fn logical_id(function: &Function) -> String {
    let mut chars = function.name.chars();
    let first = chars.next().unwrap().to_ascii_uppercase();
    format!("{first}{}", chars.as_str())
}

fn suffixes(topics: &[sagaflow_records::topology::Topic]) -> BTreeSet<String> {
    topics.iter().map(|t| t.suffix()).collect()
}

/// The function a mapping feeds (`FunctionName: !Ref XFunction`).
fn mapping_target(mapping: &Value) -> String {
    let mut names = Vec::new();
    strings(&mapping["Properties"]["FunctionName"], &mut names);
    names.join("")
}

#[test]
fn every_function_is_deployed_with_its_binary_and_nothing_else_is() {
    let resources = template();
    let deployed: BTreeSet<&String> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(id, _)| id)
        .collect();
    let expected: BTreeSet<String> = FUNCTIONS
        .iter()
        .map(|f| format!("{}Function", logical_id(f)))
        .collect();
    assert_eq!(
        deployed.into_iter().cloned().collect::<BTreeSet<_>>(),
        expected
    );
    for f in &FUNCTIONS {
        let resource = &resources[&format!("{}Function", logical_id(f))];
        assert_eq!(
            resource["Properties"]["CodeUri"].as_str(),
            Some(format!("../target/lambda/{}/bootstrap.zip", f.binary).as_str()),
            "{}",
            f.name
        );
    }
}

#[test]
fn each_function_has_one_kafka_mapping_per_topic_it_reads_in_both_variants() {
    let resources = template();
    for f in &FUNCTIONS {
        let target = format!("{}Function", logical_id(f));
        let mappings: Vec<&Value> = resources
            .values()
            .filter(|r| r["Type"].as_str() == Some("AWS::Lambda::EventSourceMapping"))
            .filter(|r| mapping_target(r) == target)
            .collect();
        for condition in ["UseMsk", "UseSelfManagedKafka"] {
            let mut topics = Vec::new();
            for m in mappings
                .iter()
                .filter(|m| m["Condition"].as_str() == Some(condition))
            {
                let named = topics_in(&m["Properties"]["Topics"]);
                assert_eq!(named.len(), 1, "{target}: one topic per mapping");
                topics.extend(named);
            }
            let unique: BTreeSet<String> = topics.iter().cloned().collect();
            assert_eq!(
                unique.len(),
                topics.len(),
                "{target} {condition}: a topic twice"
            );
            assert_eq!(unique, suffixes(f.reads), "{target} {condition}");
        }
        let stream_mappings = mappings.iter().filter(|m| m["Condition"].is_null()).count();
        assert_eq!(
            stream_mappings,
            usize::from(f.trigger == Trigger::EventsTableStream),
            "{target}: the events table's stream feeds the relay only"
        );
        let schedules = resources[&target]["Properties"]["Events"]
            .as_mapping()
            .map(|events| {
                events
                    .values()
                    .filter(|e| e["Type"].as_str() == Some("Schedule"))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(
            schedules,
            usize::from(f.trigger == Trigger::Schedule),
            "{target}: only a scheduled function has a schedule"
        );
    }
}

#[test]
fn msk_grants_name_exactly_the_topics_each_function_reads_and_writes() {
    let resources = template();
    for f in &FUNCTIONS {
        let policy = &resources[&format!("{}MskPolicy", logical_id(f))];
        let reads = statement(policy, "ReadTopics")
            .map(|s| topics_in(&s["Resource"]))
            .unwrap_or_default();
        assert_eq!(reads, suffixes(f.reads), "{}: ReadTopics", f.name);
        let groups = statement(policy, "ConsumerGroups")
            .map(|s| {
                let mut all = Vec::new();
                strings(&s["Resource"], &mut all);
                all.iter()
                    .filter_map(|s| s.split(&format!("${{TopicPrefix}}-{}-", f.name)).nth(1))
                    .map(|rest| rest.trim_end_matches(['\'', ']']).to_string())
                    .collect::<BTreeSet<_>>()
            })
            .unwrap_or_default();
        assert_eq!(groups, suffixes(f.reads), "{}: ConsumerGroups", f.name);
        let writes = statement(policy, "WriteTopics")
            .map(|s| topics_in(&s["Resource"]))
            .unwrap_or_default();
        assert_eq!(writes, suffixes(f.writes), "{}: WriteTopics", f.name);
    }
}

#[test]
fn only_the_functions_the_topology_names_touch_the_analytics_table() {
    let resources = template();
    for f in &FUNCTIONS {
        let role = &resources[&format!("{}Role", logical_id(f))];
        assert_eq!(
            statement(role, "AnalyticsTable").is_some(),
            f.analytics_table,
            "{}",
            f.name
        );
    }
}

#[test]
fn the_alarms_and_the_dashboard_watch_metrics_the_functions_write() {
    let written = sagaflow_handlers::metrics::metric_names();
    let resources = template();
    let alarms: Vec<&Value> = resources
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .filter(|r| r["Properties"]["Namespace"].as_str() == Some("sagaflow"))
        .collect();
    assert!(
        alarms.len() > FUNCTIONS.len() / 2,
        "the dead-letter and compensation alarms: {}",
        alarms.len()
    );
    for alarm in alarms {
        let metric = alarm["Properties"]["MetricName"].as_str().unwrap();
        assert!(
            written.contains(&metric),
            "an alarm watches `{metric}`, which nothing writes"
        );
    }
    let mut body = Vec::new();
    strings(
        &resources["Dashboard"]["Properties"]["DashboardBody"],
        &mut body,
    );
    let body: serde_json::Value = serde_json::from_str(&body.join("")).expect("the body is JSON");
    let mut watched = 0;
    for widget in body["widgets"].as_array().unwrap() {
        for metric in widget["properties"]["metrics"].as_array().unwrap() {
            if metric[0] == "sagaflow" {
                let name = metric[1].as_str().unwrap();
                assert!(
                    written.contains(&name),
                    "the dashboard shows `{name}`, which nothing writes"
                );
                watched += 1;
            }
            // A search expression names its metric as MetricName="...".
            if let Some(expression) = metric[0]["expression"].as_str() {
                let name = expression
                    .split("MetricName=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_else(|| panic!("no metric in `{expression}`"));
                assert!(
                    expression.contains("{sagaflow,") && written.contains(&name),
                    "the dashboard searches for `{name}`, which nothing writes"
                );
                watched += 1;
            }
        }
    }
    assert!(watched > 0);
}

fn whole_template() -> Value {
    let text = std::fs::read_to_string("../../infra/template.yaml").expect("infra/template.yaml");
    serde_yaml::from_str(&text).expect("the template is YAML")
}

/// The parameter a `!Ref` names, if `value` is one.
fn referenced(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "!Ref" => tagged.value.as_str(),
        _ => None,
    }
}

#[test]
fn no_secret_can_reach_a_functions_environment() {
    let template = whole_template();
    let parameters = template["Parameters"].as_mapping().unwrap();
    for (name, parameter) in parameters {
        assert!(
            parameter.get("NoEcho").is_none(),
            "parameter {name:?} is NoEcho: a secret would be passed as a parameter"
        );
    }
    let mut environments = vec![&template["Globals"]["Function"]["Environment"]["Variables"]];
    let resources = template["Resources"].as_mapping().unwrap();
    environments.extend(
        resources
            .values()
            .filter_map(|r| r["Properties"].get("Environment"))
            .map(|e| &e["Variables"]),
    );
    for variables in environments {
        for (variable, value) in variables.as_mapping().unwrap() {
            let variable = variable.as_str().unwrap();
            let mut texts = Vec::new();
            strings(value, &mut texts);
            for text in &texts {
                assert!(
                    !["password", "secret_string"]
                        .iter()
                        .any(|word| text.to_ascii_lowercase().contains(word)),
                    "{variable} = {text}"
                );
            }
            if let Some(parameter) = referenced(value).and_then(|name| parameters.get(name)) {
                let description = parameter["Description"].as_str().unwrap_or("");
                assert!(
                    !description.to_ascii_lowercase().contains("sasl.password"),
                    "{variable} takes a parameter whose description says it may hold a password"
                );
            }
        }
    }
    let globals = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(
        referenced(&globals["SAGAFLOW_KAFKA_AUTH"]),
        Some("ProducerAuth")
    );
    assert_eq!(
        referenced(&globals["SAGAFLOW_KAFKA_SECRET_ARN"]),
        Some("KafkaSecretArn"),
        "the secret's ARN, which the functions read at init"
    );
    let arn = parameters["KafkaSecretArn"]["AllowedPattern"]
        .as_str()
        .unwrap();
    assert!(arn.contains("secretsmanager"), "only an ARN: {arn}");
    let modes: Vec<&str> = parameters["ProducerAuth"]["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(modes, ["iam", "scram", "tls", "none"]);
}

#[test]
fn each_producer_is_granted_what_its_auth_mode_needs_and_only_then() {
    let whole = whole_template();
    let rules = whole["Rules"].as_mapping().unwrap();
    assert!(
        rules.contains_key("ProducerIamNeedsMsk") && rules.contains_key("ProducerScramNeedsSecret")
    );
    let resources = template();
    for f in FUNCTIONS.iter().filter(|f| !f.writes.is_empty()) {
        let role = &resources[&format!("{}Role", logical_id(f))];
        let secret = statement(role, "KafkaSecret").expect("the secret grant, under a condition");
        assert_eq!(
            referenced(&secret["Resource"][0]),
            Some("KafkaSecretArn"),
            "{}",
            f.name
        );
        assert_eq!(
            secret["Action"][0].as_str(),
            Some("secretsmanager:GetSecretValue")
        );
        let key = statement(role, "KafkaSecretKey").expect("the key grant");
        assert_eq!(key["Action"][0].as_str(), Some("kms:Decrypt"));
        assert!(
            serde_yaml::to_string(&key["Condition"])
                .unwrap()
                .contains("kms:ViaService"),
            "{}: the key only through Secrets Manager",
            f.name
        );
        let mut conditions = Vec::new();
        strings(&role["Properties"]["Policies"], &mut conditions);
        let wanted = if f.trigger == Trigger::Kafka {
            "HasKafkaSecret"
        } else {
            "ProducerUsesScram"
        };
        assert!(
            conditions.iter().any(|c| c == wanted),
            "{}: {wanted}",
            f.name
        );
        let msk = &resources[&format!("{}MskPolicy", logical_id(f))];
        let connect = statement(msk, "ProducerConnect").expect("the producer's connect");
        let actions: Vec<&str> = connect["Action"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            [
                "kafka-cluster:Connect",
                "kafka-cluster:WriteDataIdempotently"
            ]
        );
        let mut guards = Vec::new();
        strings(&msk["Properties"]["PolicyDocument"], &mut guards);
        let guarded = msk["Condition"].as_str() == Some("ProducerUsesIam")
            || guards.iter().any(|g| g == "ProducerUsesIam");
        assert!(
            guarded,
            "{}: the IAM producer grants only with ProducerAuth iam",
            f.name
        );
    }
}
