//! A check of one line against CloudWatch's Embedded Metric Format specification, so a test
//! can say every metric line a function writes would be accepted.

use serde_json::Value;

/// The units the specification allows.
pub const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// `Ok` if `line` is an EMF document CloudWatch would extract metrics from; otherwise what
/// breaks the specification.
pub fn check_emf_line(line: &Value) -> Result<(), String> {
    let root = line.as_object().ok_or("the root is not an object")?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("no `_aws` object")?;
    let timestamp = aws.get("Timestamp").ok_or("`_aws.Timestamp` is missing")?;
    if !timestamp.is_u64() {
        return Err(format!(
            "`_aws.Timestamp` {timestamp} is not epoch milliseconds"
        ));
    }
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or("`_aws.CloudWatchMetrics` is not an array")?;
    if directives.is_empty() {
        return Err("`_aws.CloudWatchMetrics` is empty".into());
    }
    for directive in directives {
        let namespace = directive["Namespace"]
            .as_str()
            .ok_or("a directive has no `Namespace` string")?;
        if namespace.is_empty() || namespace.len() > 255 || namespace.starts_with(':') {
            return Err(format!(
                "namespace `{namespace}` breaks its length or form rules"
            ));
        }
        let sets = directive["Dimensions"]
            .as_array()
            .ok_or("a directive has no `Dimensions` array")?;
        for set in sets {
            let set = set.as_array().ok_or("a dimension set is not an array")?;
            if set.len() > 30 {
                return Err(format!(
                    "a dimension set has {} dimensions, over 30",
                    set.len()
                ));
            }
            for dimension in set {
                let name = dimension
                    .as_str()
                    .ok_or("a dimension name is not a string")?;
                match root.get(name) {
                    Some(Value::String(value)) if !value.is_empty() && value.len() <= 1024 => {}
                    other => return Err(format!("dimension `{name}` is {other:?} at the root, not a string of 1 to 1024 characters")),
                }
            }
        }
        let metrics = directive["Metrics"]
            .as_array()
            .ok_or("a directive has no `Metrics` array")?;
        if metrics.len() > 100 {
            return Err(format!(
                "{} metrics in one directive, over 100",
                metrics.len()
            ));
        }
        for metric in metrics {
            let name = metric["Name"]
                .as_str()
                .ok_or("a metric definition has no `Name` string")?;
            if name.is_empty() || name.len() > 1024 {
                return Err(format!(
                    "metric name `{name}` is empty or over 1024 characters"
                ));
            }
            match root.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(values))
                    if values.len() <= 100 && values.iter().all(Value::is_number) => {}
                other => {
                    return Err(format!(
                    "metric `{name}` is {other:?} at the root, not a number or up to 100 numbers"
                ))
                }
            }
            if let Some(unit) = metric.get("Unit") {
                let unit = unit.as_str().ok_or("a `Unit` is not a string")?;
                if !UNITS.contains(&unit) {
                    return Err(format!("metric `{name}` has the unknown unit `{unit}`"));
                }
            }
            if let Some(resolution) = metric.get("StorageResolution") {
                if resolution != 1 && resolution != 60 {
                    return Err(format!(
                        "metric `{name}` has storage resolution {resolution}, not 1 or 60"
                    ));
                }
            }
        }
    }
    Ok(())
}
