#!/usr/bin/env python3
"""Writes infra/template.yaml, the SAM template of sagaflow on AWS.

The template is generated because the topology (which function reads and writes which topic,
written once in functions/records/src/topology.rs and read here as the JSON of
`cargo run -p sagaflow-records --bin topology`) expands into 52 Kafka event source mappings
(an AWS mapping takes one topic, and each (function, topic) pair has an MSK and a self-managed
variant, one of which a Condition keeps), plus the IAM statements naming those topics and
consumer groups. Change the topology or this file, then run

    ~/.cache/sagaflow/infra-venv/bin/python infra/generate.py           # rewrite the template
    ~/.cache/sagaflow/infra-venv/bin/python infra/generate.py --check   # fail if it is stale
    ~/.cache/sagaflow/infra-venv/bin/python infra/generate.py --list-skips   # checks it skips

`make lint-infra` runs the --check. Needs PyYAML (the infra venv has it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

TEMPLATE = Path(__file__).resolve().parent / "template.yaml"

# ---------------------------------------------------------------------------------------------
# What runs where: the topology is written once, in Rust (functions/records/src/topology.rs),
# and read here as the JSON its `topology` binary prints. Topic names are relative to
# ${TopicPrefix}.
# ---------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent

# Events table actions of the functions that keep their state in it (TransactWriteItems of
# Put + ConditionCheck needs the item-level actions; DescribeTable is the init check).
EVENT_STORE_ACTIONS = [
    "dynamodb:DescribeTable",
    "dynamodb:Query",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:ConditionCheckItem",
]
# The saga functions also delete a saga's wake-up item (in the same TransactWriteItems) when
# it stops waiting on a deadline.
SAGA_STORE_ACTIONS = EVENT_STORE_ACTIONS + ["dynamodb:DeleteItem"]
# Each way the topology says a function uses the events table, as IAM actions.
EVENTS_TABLE_ACTIONS = {
    "describe": ["dynamodb:DescribeTable"],
    "event-store": EVENT_STORE_ACTIONS,
    "saga-store": SAGA_STORE_ACTIONS,
}
ANALYTICS_STORE_ACTIONS = [
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
]
STREAM_READ_ACTIONS = [
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
]


class Lambda:
    """One Lambda function of the topology: its binary, what triggers it, what it may touch."""

    def __init__(self, spec):
        self.key = spec["name"]  # used in logical ids and the function name suffix
        self.binary = spec["binary"]  # cargo bin name: target/lambda/<binary>/bootstrap.zip
        self.description = spec["description"]
        self.reads = spec["reads"]  # Kafka topics (one event source mapping each)
        self.writes_topics = spec["writes"]  # Kafka topics it produces to
        self.events_table = EVENTS_TABLE_ACTIONS[spec["events_table"]]
        self.analytics_table = ANALYTICS_STORE_ACTIONS if spec["analytics_table"] else []
        self.trigger = spec["trigger"]  # kafka | stream (the events table's) | schedule
        self.wake_index = ["dynamodb:Query"] if spec["wake_index"] else []

    @property
    def name(self):
        return self.key.capitalize()

    @property
    def is_kafka_triggered(self):
        return self.trigger == "kafka"


def load_topology():
    """The functions, as `cargo run -p sagaflow-records --bin topology` prints them."""
    out = subprocess.run(
        ["cargo", "run", "--quiet", "-p", "sagaflow-records", "--bin", "topology"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return [Lambda(spec) for spec in json.loads(out)["functions"]]


FUNCTIONS = load_topology()

# The events table's sparse index of wake-up times (functions/dynamodb: WAKE_INDEX).
WAKE_INDEX = "wake-index"

# Slots for the self-managed Kafka mappings' VPC_SUBNET / VPC_SECURITY_GROUP entries: a
# CloudFormation list parameter cannot be expanded into a variable number of objects.
SUBNET_SLOTS = 4
SECURITY_GROUP_SLOTS = 3

# Checks skipped on particular resources, each with its reason. infra/SKIPPED_CHECKS.md lists
# them all (infra/lint.sh fails if an id here is missing there).
CHECKOV_SKIPS = {
    "CKV_AWS_27": "SSE-SQS (SqsManagedSseEnabled) encrypts the queue; this check only knows KmsMasterKeyId",
    "CKV_AWS_119": "encrypted with the AWS managed KMS key aws/dynamodb, not a customer managed key",
    "CKV_AWS_158": "CloudWatch Logs encrypts log data by default; no customer managed key",
    "CKV_AWS_173": "environment encrypted at rest with the AWS managed key; no customer managed key",
    "CKV_AWS_116": "a failed scheduled run needs no dead-letter queue: its sagas stay due for the next run",
}
CFN_LINT_SKIPS = {
    "ES6000": "the on-failure queue is where failures end: a redrive policy would need yet another queue",
    "ES1007": "a failed scheduled run needs no on-failure destination: its sagas stay due for the next run",
    "ES4000": "a schedule's missed delivery needs no dead-letter queue: the next run does the same work",
}


def skip_metadata(checkov=(), cfn_lint=()):
    meta = {}
    if cfn_lint:
        meta["cfn-lint"] = {"config": {"ignore_checks": list(cfn_lint)}}
    if checkov:
        meta["checkov"] = {"skip": [{"id": c, "comment": CHECKOV_SKIPS[c]} for c in checkov]}
    return meta


# ---------------------------------------------------------------------------------------------
# Short-form intrinsic functions in the YAML output.
# ---------------------------------------------------------------------------------------------


class Tag:
    tag = ""

    def __init__(self, *args):
        self.args = args


class Ref(Tag):
    tag = "!Ref"


class GetAtt(Tag):
    tag = "!GetAtt"


class Condition(Tag):
    tag = "!Condition"


class Sub(Tag):
    tag = "!Sub"


class SeqTag(Tag):
    pass


class If(SeqTag):
    tag = "!If"


class Equals(SeqTag):
    tag = "!Equals"


class Not(SeqTag):
    tag = "!Not"


class And(SeqTag):
    tag = "!And"


class Or(SeqTag):
    tag = "!Or"


class Select(SeqTag):
    tag = "!Select"


class Split(SeqTag):
    tag = "!Split"


class Join(SeqTag):
    tag = "!Join"


class EachMemberEquals(SeqTag):
    tag = "!EachMemberEquals"


NO_VALUE = Ref("AWS::NoValue")


class Dumper(yaml.SafeDumper):
    """Block lists indented under their key, no aliases, and `!Ref Name` rather than `!Ref 'Name'`."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)

    def ignore_aliases(self, data):
        return True

    def choose_scalar_style(self):
        # PyYAML quotes every scalar with a tag of its own; a plain one is valid YAML wherever
        # the same text would be plain without the tag.
        if self.event.tag and self.event.tag.startswith("!") and not self.event.style:
            if self.analysis is None:
                self.analysis = self.analyze_scalar(self.event.value)
            a = self.analysis
            if not a.empty and not a.multiline and (
                (self.flow_level and a.allow_flow_plain) or (not self.flow_level and a.allow_block_plain)
            ):
                return ""
        return super().choose_scalar_style()


def _is_small(value):
    return not isinstance(value, (dict, list))


def _represent(dumper, data):
    # Intrinsics go on one line ("flow style"), except an If with a block of YAML in a branch.
    if isinstance(data, Sub) and len(data.args) == 2:
        return dumper.represent_sequence("!Sub", list(data.args), flow_style=True)
    if isinstance(data, SeqTag):
        args = list(data.args)
        flow = not isinstance(data, If) or all(_is_small(a) for a in args)
        return dumper.represent_sequence(data.tag, args, flow_style=flow)
    return dumper.represent_scalar(data.tag, data.args[0])


for _cls in (Ref, GetAtt, Condition, Sub, If, Equals, Not, And, Or, Select, Split, Join, EachMemberEquals):
    Dumper.add_representer(_cls, _represent)


def camel(topic):
    """`events.payment` -> `EventsPayment`, `dead-letter` -> `DeadLetter`."""
    return "".join(part.capitalize() for part in topic.replace("-", ".").split("."))


def if_(condition, value):
    return If(condition, value, NO_VALUE)


def topic_name(topic):
    return Sub("${TopicPrefix}." + topic)


def consumer_group(fn, topic):
    # Lambda requires a consumer group id unique among all Kafka event source mappings.
    return f"${{TopicPrefix}}-{fn.key}-{topic}"


def statement(sid, actions, resources):
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": actions,
        "Resource": resources if isinstance(resources, list) else [resources],
    }


# ---------------------------------------------------------------------------------------------
# The template.
# ---------------------------------------------------------------------------------------------


def parameters():
    return {
        "TopicPrefix": {
            "Type": "String",
            "Default": "sagaflow",
            "AllowedPattern": "^[a-zA-Z0-9_-][a-zA-Z0-9._-]*$",
            "Description": "Prefix of every Kafka topic and consumer group (SAGAFLOW_TOPIC_PREFIX).",
        },
        "KafkaBootstrapServers": {
            "Type": "String",
            "MinLength": 1,
            "AllowedPattern": "^[^,\\s]+:[0-9]+(,[^,\\s]+:[0-9]+)*$",
            "Description": "Comma-separated host:port bootstrap brokers. The functions produce to them in"
            " both modes (SAGAFLOW_KAFKA_BOOTSTRAP); the self-managed mappings consume from them."
            " For MSK give the brokers of the listener your auth uses (IAM 9098, SCRAM 9096, TLS 9094).",
        },
        "MskClusterArn": {
            "Type": "String",
            "Default": "",
            "AllowedPattern": "^$|^arn:aws[a-zA-Z-]*:kafka:[a-z0-9-]+:[0-9]{12}:cluster/[^/]+/[^/]+$",
            "Description": "ARN of an Amazon MSK cluster to consume from. Empty: self-managed Kafka at"
            " KafkaBootstrapServers.",
        },
        "KafkaSecretArn": {
            "Type": "String",
            "Default": "",
            "AllowedPattern": "^$|^arn:aws[a-zA-Z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$",
            "Description": "Secrets Manager secret (username, password) for SASL/SCRAM-SHA-512, used by the"
            " event source mappings. Empty: MSK uses IAM auth; self-managed Kafka no auth.",
        },
        "ProducerAuth": {
            "Type": "String",
            "Default": "none",
            "AllowedValues": ["iam", "scram", "tls", "none"],
            "Description": "How the functions' producers authenticate (SAGAFLOW_KAFKA_AUTH): iam (MSK IAM"
            " tokens signed with each function's role; needs MskClusterArn; brokers on 9098), scram"
            " (SASL/SCRAM-SHA-512 with the username and password read at init from KafkaSecretArn; 9096),"
            " tls (TLS only; 9094) or none (plaintext). Every mode but none is TLS with the system CA.",
        },
        "KafkaSecretKmsKeyArn": {
            "Type": "String",
            "Default": "",
            "AllowedPattern": "^$|^arn:aws[a-zA-Z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$",
            "Description": "The customer managed KMS key KafkaSecretArn is encrypted with, if any (MSK"
            " SCRAM secrets must use one): the functions get kms:Decrypt on it through Secrets Manager.",
        },
        "KafkaClientProperties": {
            "Type": "String",
            "Default": "",
            "AllowedPattern": "^[^;=]+=[^;]*(;[^;=]+=[^;]*)*;?$|^$",
            "Description": "Other librdkafka properties for the functions' producers, name=value;name=value"
            " (SAGAFLOW_KAFKA_PROPERTIES), e.g. client.id=shop. Never a secret: the functions refuse any"
            " property that holds one (a password, secret, token or key) and ProducerAuth sets the security"
            " properties.",
        },
        "SubnetIds": {
            "Type": "CommaDelimitedList",
            "Default": "",
            "Description": "Subnets for the functions (needed to reach a private MSK or Kafka cluster) and,"
            f" self-managed Kafka, for its mappings (the first {SUBNET_SLOTS}). Empty: no VPC.",
        },
        "SecurityGroupIds": {
            "Type": "CommaDelimitedList",
            "Default": "",
            "Description": "Security groups for the functions and, self-managed Kafka, for its mappings"
            f" (the first {SECURITY_GROUP_SLOTS}). Required when SubnetIds is given.",
        },
        "BatchSize": {
            "Type": "Number",
            "Default": 100,
            "MinValue": 1,
            "MaxValue": 10000,
            "Description": "Most records per invocation, for every event source mapping.",
        },
        "BatchingWindowSeconds": {
            "Type": "Number",
            "Default": 1,
            "MinValue": 0,
            "MaxValue": 300,
            "Description": "Longest wait to fill a batch, for every event source mapping.",
        },
        "MaximumRetryAttempts": {
            "Type": "Number",
            "Default": 10,
            "MinValue": 0,
            "MaxValue": 10000,
            "Description": "Retries of a failing batch (Kafka and stream mappings) before it goes to the"
            " on-failure queue.",
        },
        "MaximumRecordAgeSeconds": {
            "Type": "Number",
            "Default": 21600,
            "MinValue": 60,
            "MaxValue": 604800,
            "Description": "Records older than this are not retried but sent to the on-failure queue.",
        },
        "KafkaMaximumPollers": {
            "Type": "Number",
            "Default": 2,
            "MinValue": 1,
            "MaxValue": 2000,
            "Description": "Provisioned-mode maximum event pollers per Kafka mapping (the minimum is 1).",
        },
        "ShareKafkaPollers": {
            "Type": "String",
            "Default": "true",
            "AllowedValues": ["true", "false"],
            "Description": "true: the Kafka mappings share their event pollers in one poller group named"
            " after the stack (fewer billed poller units); false: each mapping has its own.",
        },
        "StepTimeoutMilliseconds": {
            "Type": "Number",
            "Default": 30000,
            "MinValue": 1,
            "Description": "How long the first attempt of a saga step's command is awaited (each further"
            " attempt twice as long, up to 8 times) before the deadline timer acts (SAGAFLOW_STEP_TIMEOUT_MS).",
        },
        "ForwardAttempts": {
            "Type": "Number",
            "Default": 2,
            "MinValue": 1,
            "Description": "Sends of a saga step's forward command, each awaited twice as long as the one"
            " before, before the step fails and the saga compensates (SAGAFLOW_FORWARD_ATTEMPTS).",
        },
        "StepAttempts": {
            "Type": "Number",
            "Default": 6,
            "MinValue": 1,
            "Description": "Sends of a saga compensation, each awaited twice as long as the one before"
            " (up to 8 step timeouts), before the saga records it as failed (SAGAFLOW_STEP_ATTEMPTS).",
        },
        "DeadlineSchedule": {
            "Type": "String",
            "Default": "rate(1 minute)",
            "Description": "EventBridge schedule expression of the deadline timer.",
        },
        "LogRetentionDays": {
            "Type": "Number",
            "Default": 30,
            "AllowedValues": [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                              2557, 2922, 3288, 3653],
            "Description": "Days the functions' logs are kept.",
        },
        "DeadLetterAlarmPerMinute": {
            "Type": "Number",
            "Default": 5,
            "MinValue": 0,
            "Description": "Dead letters a minute, three minutes running, above which a function's"
            " dead-letter alarm fires (sagaflow RecordsDeadLettered).",
        },
        "ApplicationLogLevel": {
            "Type": "String",
            "Default": "INFO",
            "AllowedValues": ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"],
            "Description": "The functions' own log level (Lambda's advanced logging controls; the"
            " functions read it as AWS_LAMBDA_LOG_LEVEL).",
        },
        "TracesEndpoint": {
            "Type": "String",
            "Default": "",
            "AllowedPattern": "^$|^https?://[^\\s]+$",
            "Description": "OTLP/HTTP endpoint the functions export their spans to (OTEL_EXPORTER_OTLP_ENDPOINT;"
            " /v1/traces is appended), e.g. http://localhost:4318 with the ADOT collector layer. Empty: spans"
            " still link the records of one order (traceparent headers) but are not exported.",
        },
        "SystemLogLevel": {
            "Type": "String",
            "Default": "WARN",
            "AllowedValues": ["DEBUG", "INFO", "WARN"],
            "Description": "The Lambda platform's log level in the functions' log groups.",
        },
        "ReservedConcurrency": {
            "Type": "String",
            "Default": "",
            "AllowedPattern": "^$|^[0-9]+$",
            "Description": "Reserved concurrency of each function. Empty: none reserved (reserving can fail"
            " in accounts with a small concurrency quota).",
        },
        "AlarmTopicArn": {
            "Type": "String",
            "Default": "",
            "AllowedPattern": "^$|^arn:aws[a-zA-Z-]*:sns:[a-z0-9-]+:[0-9]{12}:.+$",
            "Description": "SNS topic the alarms notify. Empty: alarms without actions.",
        },
        "OffsetLagAlarmThreshold": {
            "Type": "Number",
            "Default": 1000,
            "MinValue": 0,
            "Description": "Kafka consumer lag (records) above which a function's lag alarm fires.",
        },
        "IteratorAgeAlarmMilliseconds": {
            "Type": "Number",
            "Default": 60000,
            "MinValue": 0,
            "Description": "Age of the relay's newest processed stream record above which its alarm fires.",
        },
    }


def padded(list_param, slots):
    """The list parameter joined, padded with empty items so every slot can be selected."""
    return Split(",", Sub("${Items}" + "," * slots, {"Items": Join(",", Ref(list_param))}))


def conditions():
    conds = {
        "UseMsk": Not(Equals(Ref("MskClusterArn"), "")),
        "UseSelfManagedKafka": Equals(Ref("MskClusterArn"), ""),
        "HasKafkaSecret": Not(Equals(Ref("KafkaSecretArn"), "")),
        "HasVpc": Not(Equals(Join("", Ref("SubnetIds")), "")),
        "NeedsNetworkInterfaces": Or(Condition("UseMsk"), Condition("HasVpc")),
        "HasSelfManagedAccessConfig": Or(Condition("HasKafkaSecret"), Condition("HasVpc")),
        "HasReservedConcurrency": Not(Equals(Ref("ReservedConcurrency"), "")),
        "SharePollers": Equals(Ref("ShareKafkaPollers"), "true"),
        "HasAlarmTopic": Not(Equals(Ref("AlarmTopicArn"), "")),
        "ProducerUsesIam": And(Condition("UseMsk"), Equals(Ref("ProducerAuth"), "iam")),
        "ProducerUsesScram": And(Condition("HasKafkaSecret"), Equals(Ref("ProducerAuth"), "scram")),
        "HasKafkaSecretKey": And(
            Condition("HasKafkaSecret"), Not(Equals(Ref("KafkaSecretKmsKeyArn"), ""))
        ),
    }
    # Slot 1 is HasVpc itself, so that linters see a VPC always gives the mapping a subnet.
    for i in range(1, SUBNET_SLOTS):
        conds[f"HasSubnet{i + 1}"] = Not(Equals(Select(i, padded("SubnetIds", SUBNET_SLOTS)), ""))
    for i in range(SECURITY_GROUP_SLOTS):
        conds[f"HasSecurityGroup{i + 1}"] = Not(
            Equals(Select(i, padded("SecurityGroupIds", SECURITY_GROUP_SLOTS)), "")
        )
    return conds


def rules():
    return {
        "VpcNeedsSecurityGroups": {
            "RuleCondition": Not(EachMemberEquals(Ref("SubnetIds"), "")),
            "Assertions": [
                {
                    "Assert": Not(EachMemberEquals(Ref("SecurityGroupIds"), "")),
                    "AssertDescription": "SecurityGroupIds must be given with SubnetIds",
                }
            ],
        },
        "ProducerIamNeedsMsk": {
            "RuleCondition": Equals(Ref("ProducerAuth"), "iam"),
            "Assertions": [
                {
                    "Assert": Not(Equals(Ref("MskClusterArn"), "")),
                    "AssertDescription": "ProducerAuth iam signs MSK IAM tokens: give MskClusterArn",
                }
            ],
        },
        "ProducerScramNeedsSecret": {
            "RuleCondition": Equals(Ref("ProducerAuth"), "scram"),
            "Assertions": [
                {
                    "Assert": Not(Equals(Ref("KafkaSecretArn"), "")),
                    "AssertDescription": "ProducerAuth scram reads its credentials from KafkaSecretArn: give it",
                }
            ],
        },
    }


def globals_():
    return {
        "Function": {
            "Runtime": "provided.al2023",
            "Architectures": ["arm64"],
            "Handler": "bootstrap",
            "MemorySize": 256,
            "Timeout": 60,
            "Tracing": "Active",
            # JSON lines, which the functions write too (functions/lambdas/src/logging.rs).
            "LoggingConfig": {
                "LogFormat": "JSON",
                "ApplicationLogLevel": Ref("ApplicationLogLevel"),
                "SystemLogLevel": Ref("SystemLogLevel"),
            },
            "ReservedConcurrentExecutions": if_("HasReservedConcurrency", Ref("ReservedConcurrency")),
            "VpcConfig": if_(
                "HasVpc", {"SubnetIds": Ref("SubnetIds"), "SecurityGroupIds": Ref("SecurityGroupIds")}
            ),
            "Environment": {
                "Variables": {
                    "SAGAFLOW_EVENTS_TABLE": Ref("EventsTable"),
                    "SAGAFLOW_ANALYTICS_TABLE": Ref("AnalyticsTable"),
                    "SAGAFLOW_KAFKA_BOOTSTRAP": Ref("KafkaBootstrapServers"),
                    "SAGAFLOW_TOPIC_PREFIX": Ref("TopicPrefix"),
                    "SAGAFLOW_KAFKA_PROPERTIES": Ref("KafkaClientProperties"),
                    "SAGAFLOW_KAFKA_AUTH": Ref("ProducerAuth"),
                    # The secret's ARN, not its content: the functions read it at init.
                    "SAGAFLOW_KAFKA_SECRET_ARN": Ref("KafkaSecretArn"),
                    "SAGAFLOW_STEP_TIMEOUT_MS": Ref("StepTimeoutMilliseconds"),
                    "SAGAFLOW_STEP_ATTEMPTS": Ref("StepAttempts"),
                    "SAGAFLOW_FORWARD_ATTEMPTS": Ref("ForwardAttempts"),
                    "OTEL_EXPORTER_OTLP_ENDPOINT": Ref("TracesEndpoint"),
                }
            },
        }
    }


def tables():
    sse = {"SSEEnabled": True}  # KMS with the AWS managed key aws/dynamodb
    pitr = {"PointInTimeRecoveryEnabled": True}
    return {
        "EventsTable": {
            "Type": "AWS::DynamoDB::Table",
            "Metadata": skip_metadata(checkov=["CKV_AWS_119"]),
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "N"},
                    {"AttributeName": "wake_shard", "AttributeType": "S"},
                    {"AttributeName": "wake_at", "AttributeType": "N"},
                ],
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                # Sparse: only items with a wake-up time are in it (functions/dynamodb/src/tables.rs).
                "GlobalSecondaryIndexes": [
                    {
                        "IndexName": WAKE_INDEX,
                        "KeySchema": [
                            {"AttributeName": "wake_shard", "KeyType": "HASH"},
                            {"AttributeName": "wake_at", "KeyType": "RANGE"},
                        ],
                        "Projection": {
                            "ProjectionType": "INCLUDE",
                            "NonKeyAttributes": ["aggregate_type", "aggregate_id"],
                        },
                    }
                ],
                "StreamSpecification": {"StreamViewType": "NEW_IMAGE"},
                "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                "PointInTimeRecoverySpecification": pitr,
                "SSESpecification": sse,
            },
        },
        "AnalyticsTable": {
            "Type": "AWS::DynamoDB::Table",
            "Metadata": skip_metadata(checkov=["CKV_AWS_119"]),
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "PointInTimeRecoverySpecification": pitr,
                "SSESpecification": sse,
            },
        },
        "FailureQueue": {
            "Type": "AWS::SQS::Queue",
            "Metadata": skip_metadata(checkov=["CKV_AWS_27"], cfn_lint=["ES6000"]),
            # Goes with the stack: what it holds points into the retained events table.
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "SqsManagedSseEnabled": True,
                "MessageRetentionPeriod": 1209600,
            },
        },
    }


def msk_arn(kind, name):
    """ARN of an MSK topic or group: the cluster ARN `arn:...:kafka:REGION:ACCOUNT:cluster/NAME/UUID`
    becomes `arn:...:kafka:REGION:ACCOUNT:KIND/NAME/UUID/NAME-OF-IT` (only in resources of
    Condition UseMsk, where MskClusterArn has that form)."""
    halves = Split(":cluster/", Ref("MskClusterArn"))
    return Sub(
        "${ArnPrefix}:" + kind + "/${Cluster}/" + name,
        {"ArnPrefix": Select(0, halves), "Cluster": Select(1, halves)},
    )


def role(fn):
    statements = [
        # The function's own log group (named here, not referenced: the group names the function).
        statement(
            "OwnLogGroup",
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            Sub(
                "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/lambda/${AWS::StackName}-"
                + fn.key
                + ":*"
            ),
        ),
        # X-Ray accepts no resource narrower than "*" for these actions.
        statement("XRayTraces", ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "*"),
        statement("EventsTable", fn.events_table, GetAtt("EventsTable.Arn")),
    ]
    if fn.trigger != "schedule":
        # The mapping's on-failure destination and the function's dead-letter queue.
        statements.insert(
            2, statement("FailureQueue", ["sqs:SendMessage"], GetAtt("FailureQueue.Arn"))
        )
    if fn.analytics_table:
        statements.append(statement("AnalyticsTable", fn.analytics_table, GetAtt("AnalyticsTable.Arn")))
    if fn.wake_index:
        statements.append(
            statement("WakeIndex", fn.wake_index, Sub("${EventsTable.Arn}/index/" + WAKE_INDEX))
        )
    if fn.trigger == "stream":
        statements.append(statement("EventsStream", STREAM_READ_ACTIONS, GetAtt("EventsTable.StreamArn")))
    # The mappings read the secret with the function's role; a producer with SCRAM reads it at
    # init. The key grant holds only through Secrets Manager.
    secret_condition = "HasKafkaSecret" if fn.is_kafka_triggered else "ProducerUsesScram"
    if fn.is_kafka_triggered or fn.writes_topics:
        statements.append(
            if_(
                secret_condition,
                statement("KafkaSecret", ["secretsmanager:GetSecretValue"], Ref("KafkaSecretArn")),
            )
        )
        key = statement("KafkaSecretKey", ["kms:Decrypt"], Ref("KafkaSecretKmsKeyArn"))
        key["Condition"] = {
            "StringEquals": {"kms:ViaService": Sub("secretsmanager.${AWS::Region}.amazonaws.com")}
        }
        statements.append(If(secret_condition, if_("HasKafkaSecretKey", key), NO_VALUE))
    if fn.is_kafka_triggered:
        # The Kafka mappings create network interfaces in the cluster's (MSK) or the given (self-
        # managed) VPC with this role; the Describe* actions and new interfaces take no narrower
        # resource than "*".
        statements.append(
            if_(
                "NeedsNetworkInterfaces",
                statement(
                    "MappingNetworkInterfaces",
                    [
                        "ec2:CreateNetworkInterface",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DeleteNetworkInterface",
                        "ec2:DescribeVpcs",
                        "ec2:DescribeSubnets",
                        "ec2:DescribeSecurityGroups",
                    ],
                    "*",
                ),
            )
        )
    # A function in a VPC manages its own network interfaces (as AWSLambdaVPCAccessExecutionRole).
    statements.append(
        if_(
            "HasVpc",
            statement(
                "FunctionNetworkInterfaces",
                [
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSubnets",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                "*",
            ),
        )
    )
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": f"sagaflow {fn.key} function",
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "Policies": [
                {
                    "PolicyName": f"sagaflow-{fn.key}",
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                }
            ],
        },
    }


def msk_policy(fn):
    """MSK access: the mapping's cluster look-ups and, with IAM auth, its kafka-cluster reads; with
    ProducerAuth iam, the producer's connect and writes to its own topics.

    A resource of its own with a condition (UseMsk, or ProducerUsesIam for a function that only
    produces), so that the topic and group ARNs built from MskClusterArn are never evaluated when
    it is empty.
    """
    cluster = Ref("MskClusterArn")
    consumer = fn.is_kafka_triggered
    mapping = []
    if consumer:
        mapping.append(
            statement(
                "ClusterConnect",
                ["kafka-cluster:Connect", "kafka-cluster:DescribeClusterDynamicConfiguration"],
                cluster,
            )
        )
        mapping.append(
            statement(
                "ReadTopics",
                ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
                [msk_arn("topic", "${TopicPrefix}." + t) for t in fn.reads],
            )
        )
        mapping.append(
            statement(
                "ConsumerGroups",
                ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"],
                [msk_arn("group", consumer_group(fn, t)) for t in fn.reads],
            )
        )
    producer = []
    if fn.writes_topics:
        # The idempotent producer needs WriteDataIdempotently on the cluster.
        producer.append(
            statement(
                "ProducerConnect",
                ["kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"],
                cluster,
            )
        )
        producer.append(
            statement(
                "WriteTopics",
                ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
                [msk_arn("topic", "${TopicPrefix}." + t) for t in fn.writes_topics],
            )
        )
    statements = []
    if consumer:
        statements.append(
            statement("MappingClusterLookup", ["kafka:DescribeClusterV2", "kafka:GetBootstrapBrokers"], cluster)
        )
        statements += [If("HasKafkaSecret", NO_VALUE, s) for s in mapping]
        statements += [if_("ProducerUsesIam", s) for s in producer]
        condition = "UseMsk"
    else:
        statements += producer
        condition = "ProducerUsesIam"
    if not statements:
        return None
    return {
        "Type": "AWS::IAM::RolePolicy",
        "Condition": condition,
        "Properties": {
            "RoleName": Ref(f"{fn.name}Role"),
            "PolicyName": f"sagaflow-{fn.key}-msk",
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
        },
    }


def function(fn):
    props = {
        "FunctionName": Sub("${AWS::StackName}-" + fn.key),
        "Description": fn.description,
        "CodeUri": f"../target/lambda/{fn.binary}/bootstrap.zip",
        "Role": GetAtt(f"{fn.name}Role.Arn"),
    }
    skips = ["CKV_AWS_173"]
    lint_skips = []
    if fn.trigger == "schedule":
        props["Events"] = {
            "Schedule": {
                "Type": "Schedule",
                "Properties": {
                    "Schedule": Ref("DeadlineSchedule"),
                    "Description": f"runs the sagaflow {fn.key} function",
                },
            }
        }
        # The next scheduled run is the retry: a run that failed leaves its sagas due.
        props["EventInvokeConfig"] = {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
        skips.append("CKV_AWS_116")
        lint_skips = ["ES1007", "ES4000"]
    else:
        # Failed asynchronous invocations (the analytics query can be one) end here too.
        props["DeadLetterQueue"] = {"Type": "SQS", "TargetArn": GetAtt("FailureQueue.Arn")}
    return {
        "Type": "AWS::Serverless::Function",
        "Metadata": skip_metadata(checkov=skips, cfn_lint=lint_skips),
        "Properties": props,
    }


def log_group(fn):
    return {
        "Type": "AWS::Logs::LogGroup",
        "Metadata": skip_metadata(checkov=["CKV_AWS_158"]),
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Delete",
        "Properties": {
            "LogGroupName": Sub("/aws/lambda/${" + fn.name + "Function}"),
            "RetentionInDays": Ref("LogRetentionDays"),
        },
    }


def kafka_mapping_common(fn, topic):
    return {
        "FunctionName": Ref(f"{fn.name}Function"),
        "Topics": [topic_name(topic)],
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": Ref("BatchSize"),
        "MaximumBatchingWindowInSeconds": Ref("BatchingWindowSeconds"),
        # Provisioned mode: Kafka mappings accept the error-handling settings below only in it.
        "ProvisionedPollerConfig": {
            "MinimumPollers": 1,
            "MaximumPollers": Ref("KafkaMaximumPollers"),
            "PollerGroupName": if_("SharePollers", Ref("AWS::StackName")),
        },
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": Ref("MaximumRetryAttempts"),
        "MaximumRecordAgeInSeconds": Ref("MaximumRecordAgeSeconds"),
        "DestinationConfig": {"OnFailure": {"Destination": GetAtt("FailureQueue.Arn")}},
        "MetricsConfig": {"Metrics": ["EventCount", "ErrorCount", "KafkaMetrics"]},
    }


def msk_mapping(fn, topic):
    props = kafka_mapping_common(fn, topic)
    props.update(
        {
            "EventSourceArn": Ref("MskClusterArn"),
            "AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": Sub(consumer_group(fn, topic))},
            "SourceAccessConfigurations": if_(
                "HasKafkaSecret", [{"Type": "SASL_SCRAM_512_AUTH", "URI": Ref("KafkaSecretArn")}]
            ),
        }
    )
    return {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Condition": "UseMsk",
        "DependsOn": [f"{fn.name}MskPolicy", f"{fn.name}LogGroup"],
        "Properties": props,
    }


def self_managed_mapping(fn, topic):
    access = [if_("HasKafkaSecret", {"Type": "SASL_SCRAM_512_AUTH", "URI": Ref("KafkaSecretArn")})]
    for i in range(SUBNET_SLOTS):
        access.append(
            if_(
                f"HasSubnet{i + 1}" if i else "HasVpc",
                # Selected from the padded list: in range even where the If is not taken.
                {"Type": "VPC_SUBNET", "URI": Sub("subnet:${Id}", {"Id": Select(i, padded("SubnetIds", SUBNET_SLOTS))})},
            )
        )
    for i in range(SECURITY_GROUP_SLOTS):
        access.append(
            if_(
                f"HasSecurityGroup{i + 1}",
                {
                    "Type": "VPC_SECURITY_GROUP",
                    "URI": Sub(
                        "security_group:${Id}",
                        {"Id": Select(i, padded("SecurityGroupIds", SECURITY_GROUP_SLOTS))},
                    ),
                },
            )
        )
    props = kafka_mapping_common(fn, topic)
    props.update(
        {
            "SelfManagedEventSource": {
                "Endpoints": {"KafkaBootstrapServers": Split(",", Ref("KafkaBootstrapServers"))}
            },
            "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": Sub(consumer_group(fn, topic))},
            "SourceAccessConfigurations": if_("HasSelfManagedAccessConfig", access),
        }
    )
    return {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Condition": "UseSelfManagedKafka",
        "DependsOn": [f"{fn.name}LogGroup"],
        "Properties": props,
    }


def stream_mapping(fn):
    return {
        "Type": "AWS::Lambda::EventSourceMapping",
        "DependsOn": [f"{fn.name}LogGroup"],
        "Properties": {
            "FunctionName": Ref(f"{fn.name}Function"),
            "EventSourceArn": GetAtt("EventsTable.StreamArn"),
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": Ref("BatchSize"),
            "MaximumBatchingWindowInSeconds": Ref("BatchingWindowSeconds"),
            "ParallelizationFactor": 1,
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": Ref("MaximumRetryAttempts"),
            "MaximumRecordAgeInSeconds": Ref("MaximumRecordAgeSeconds"),
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {"OnFailure": {"Destination": GetAtt("FailureQueue.Arn")}},
        },
    }


def alarm(description, namespace, metric, dimensions, statistic, threshold, periods):
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "Namespace": namespace,
            "MetricName": metric,
            "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
            "Statistic": statistic,
            "Period": 60,
            "EvaluationPeriods": periods,
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": if_("HasAlarmTopic", [Ref("AlarmTopicArn")]),
            "OKActions": if_("HasAlarmTopic", [Ref("AlarmTopicArn")]),
        },
    }


def dashboard():
    """One CloudWatch dashboard over the functions' EMF metrics and the trigger metrics."""
    kafka_fns = [fn for fn in FUNCTIONS if fn.is_kafka_triggered]

    def widget(title, metrics, x, y, stat="Sum"):
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": 12,
            "height": 6,
            "properties": {
                "title": title,
                "region": "${AWS::Region}",
                "stat": stat,
                "period": 60,
                "view": "timeSeries",
                "metrics": metrics,
            },
        }

    per_function = lambda metric: [["sagaflow", metric, "function", fn.key] for fn in kafka_fns]

    def search(schema, metric, stat, id_):
        # One line per dimension value (each command, each outcome), found by a search.
        return [{
            "expression": f"SEARCH('{schema} MetricName=\"{metric}\"', '{stat}', 60)",
            "id": id_,
            "label": "",
        }]

    widgets = [
        widget("Records processed per function (flow throughput)", per_function("RecordsProcessed"), 0, 0),
        widget(
            "Saga outcomes",
            [["sagaflow", m, "function", "orchestrator"] for m in (
                "SagasStarted", "SagasCompleted", "SagasCompensated", "SagasCompensationFailed",
                "SagasCancelled", "SagaStepsFailed")],
            12,
            0,
        ),
        widget("Records retried per function", per_function("RecordsRetried"), 0, 6),
        widget("Records dead-lettered per function", per_function("RecordsDeadLettered"), 12, 6),
        widget(
            "Kafka offset lag per function",
            [["AWS/Lambda", "OffsetLag", "FunctionName", "${AWS::StackName}-" + fn.key] for fn in kafka_fns],
            0,
            12,
            "Maximum",
        ),
        widget(
            "Relay iterator age (ms)",
            [["AWS/Lambda", "IteratorAge", "FunctionName", "${AWS::StackName}-relay"]],
            12,
            12,
            "Maximum",
        ),
        widget("Batch duration (ms, p99)", per_function("BatchDuration"), 0, 18, "p99"),
        widget(
            "DynamoDB throttles and conflicts per function",
            per_function("DynamoDbThrottles") + per_function("DynamoDbConflicts"),
            12,
            18,
        ),
        widget(
            "Step latency by command (ms, p99): issued to recorded",
            [search("{sagaflow,function,command}", "StepLatency", "p99", "steps")],
            0,
            24,
            "p99",
        ),
        widget(
            "Order and saga duration by outcome (ms, p50 and p99)",
            [
                search("{sagaflow,function,outcome}", "OrderDuration", "p50", "orders50"),
                search("{sagaflow,function,outcome}", "OrderDuration", "p99", "orders99"),
                search("{sagaflow,function,outcome}", "SagaDuration", "p99", "sagas99"),
            ],
            12,
            24,
            "p99",
        ),
    ]
    return {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {
            "DashboardName": Sub("${AWS::StackName}-sagaflow"),
            "DashboardBody": Sub(json.dumps({"widgets": widgets}, separators=(",", ":"))),
        },
    }


def resources():
    res = tables()
    res["Dashboard"] = dashboard()
    res["SagaCompensationFailedAlarm"] = alarm(
        "A saga gave up undoing a step: an order needs a person (sagaflow SagasCompensationFailed)",
        "sagaflow",
        "SagasCompensationFailed",
        {"function": "orchestrator"},
        "Sum",
        0,
        1,
    )
    res["FailureQueueDepthAlarm"] = alarm(
        "A batch failed for good: its pointers are on the on-failure queue",
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": GetAtt("FailureQueue.QueueName")},
        "Maximum",
        0,
        1,
    )
    for fn in FUNCTIONS:
        res[f"{fn.name}Role"] = role(fn)
        msk = msk_policy(fn)
        if msk:
            res[f"{fn.name}MskPolicy"] = msk
        res[f"{fn.name}LogGroup"] = log_group(fn)
        res[f"{fn.name}Function"] = function(fn)
        res[f"{fn.name}ErrorsAlarm"] = alarm(
            f"The {fn.key} function returned errors",
            "AWS/Lambda",
            "Errors",
            {"FunctionName": Ref(f"{fn.name}Function")},
            "Sum",
            0,
            1,
        )
        if fn.is_kafka_triggered:
            res[f"{fn.name}DeadLetterAlarm"] = alarm(
                f"The {fn.key} function dead-letters records faster than DeadLetterAlarmPerMinute",
                "sagaflow",
                "RecordsDeadLettered",
                {"function": fn.key},
                "Sum",
                Ref("DeadLetterAlarmPerMinute"),
                3,
            )
            for topic in fn.reads:
                res[f"{fn.name}From{camel(topic)}Msk"] = msk_mapping(fn, topic)
                res[f"{fn.name}From{camel(topic)}SelfManaged"] = self_managed_mapping(fn, topic)
            res[f"{fn.name}OffsetLagAlarm"] = alarm(
                f"The {fn.key} function falls behind its Kafka topics",
                "AWS/Lambda",
                "OffsetLag",
                {"FunctionName": Ref(f"{fn.name}Function")},
                "Maximum",
                Ref("OffsetLagAlarmThreshold"),
                5,
            )
        elif fn.trigger == "stream":
            res[f"{fn.name}StreamMapping"] = stream_mapping(fn)
            res[f"{fn.name}IteratorAgeAlarm"] = alarm(
                "The relay falls behind the events table's stream",
                "AWS/Lambda",
                "IteratorAge",
                {"FunctionName": Ref(f"{fn.name}Function")},
                "Maximum",
                Ref("IteratorAgeAlarmMilliseconds"),
                5,
            )
    return res


def outputs():
    out = {
        "EventsTableName": {"Description": "SAGAFLOW_EVENTS_TABLE", "Value": Ref("EventsTable")},
        "EventsTableArn": {"Value": GetAtt("EventsTable.Arn")},
        "EventsTableStreamArn": {"Value": GetAtt("EventsTable.StreamArn")},
        "AnalyticsTableName": {"Description": "SAGAFLOW_ANALYTICS_TABLE", "Value": Ref("AnalyticsTable")},
        "AnalyticsTableArn": {"Value": GetAtt("AnalyticsTable.Arn")},
        "FailureQueueUrl": {
            "Description": "Where batches that failed for good are recorded (pointers, not payloads)",
            "Value": Ref("FailureQueue"),
        },
        "FailureQueueArn": {"Value": GetAtt("FailureQueue.Arn")},
    }
    for fn in FUNCTIONS:
        out[f"{fn.name}FunctionArn"] = {"Value": GetAtt(f"{fn.name}Function.Arn")}
    out["AnalyticsFunctionName"] = {
        "Description": 'Invoke with {"query": "summary"} for the analytics summary',
        "Value": Ref("AnalyticsFunction"),
    }
    return out


def template():
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": "sagaflow: order sagas on Lambda, Kafka (MSK or self-managed) and DynamoDB",
        "Metadata": {
            "Generator": "infra/generate.py writes this file; edit that, not this",
        },
        "Parameters": parameters(),
        "Rules": rules(),
        "Conditions": conditions(),
        "Globals": globals_(),
        "Resources": resources(),
        "Outputs": outputs(),
    }


HEADER = """\
# GENERATED by infra/generate.py: edit that file, then run it (`make lint-infra` checks the two agree).
# sagaflow on AWS: see infra/DEPLOY.md. Code comes from `make package` (cargo lambda build --arm64).
"""


def render():
    body = yaml.dump(template(), Dumper=Dumper, sort_keys=False, width=200, default_flow_style=False)
    return HEADER + body


def skipped_ids(node):
    """Every check id skipped in the template's metadata (cfn-lint ignore_checks, checkov skip)."""
    ids = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "ignore_checks":
                ids.update(value)
            elif key == "checkov":
                ids.update(s["id"] for s in value.get("skip", []))
            else:
                ids |= skipped_ids(value)
    elif isinstance(node, list):
        for item in node:
            ids |= skipped_ids(item)
    return ids


def main(argv):
    if argv[1:] == ["--list-skips"]:
        print("\n".join(sorted(skipped_ids(template()))))
        return 0
    text = render()
    if argv[1:] == ["--check"]:
        if not TEMPLATE.exists() or TEMPLATE.read_text() != text:
            print(f"{TEMPLATE} is stale: run infra/generate.py", file=sys.stderr)
            return 1
        return 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    TEMPLATE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
