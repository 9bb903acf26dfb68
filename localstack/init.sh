#!/usr/bin/env bash
# Creates sagaflow's events table and topics on the Docker local stack (LocalStack + Redpanda).
# The tests and the local trigger also create what they need, so this is for trying the
# functions by hand (`cargo lambda watch`, `make test-e2e`) against a named deployment.
set -euo pipefail
PREFIX=${SAGAFLOW_TOPIC_PREFIX:-sagaflow}
TABLE=${SAGAFLOW_EVENTS_TABLE:-sagaflow-events}
ANALYTICS=${SAGAFLOW_ANALYTICS_TABLE:-sagaflow-analytics}
PARTITIONS=${SAGAFLOW_PARTITIONS:-3}
cd "$(dirname "$0")"

docker compose exec -T localstack awslocal dynamodb create-table \
  --table-name "$TABLE" \
  --attribute-definitions AttributeName=pk,AttributeType=S AttributeName=sk,AttributeType=N \
    AttributeName=wake_shard,AttributeType=S AttributeName=wake_at,AttributeType=N \
  --key-schema AttributeName=pk,KeyType=HASH AttributeName=sk,KeyType=RANGE \
  --global-secondary-indexes '[{"IndexName":"wake-index","KeySchema":[{"AttributeName":"wake_shard","KeyType":"HASH"},{"AttributeName":"wake_at","KeyType":"RANGE"}],"Projection":{"ProjectionType":"INCLUDE","NonKeyAttributes":["aggregate_type","aggregate_id"]}}]' \
  --billing-mode PAY_PER_REQUEST \
  --stream-specification StreamEnabled=true,StreamViewType=NEW_IMAGE > /dev/null 2>&1 \
  || echo "table $TABLE exists"
docker compose exec -T localstack awslocal dynamodb update-time-to-live \
  --table-name "$TABLE" --time-to-live-specification Enabled=true,AttributeName=expires_at > /dev/null 2>&1 || true

docker compose exec -T localstack awslocal dynamodb create-table \
  --table-name "$ANALYTICS" \
  --attribute-definitions AttributeName=pk,AttributeType=S \
  --key-schema AttributeName=pk,KeyType=HASH \
  --billing-mode PAY_PER_REQUEST > /dev/null 2>&1 \
  || echo "table $ANALYTICS exists"

topics=()
for aggregate in order payment inventory shipment saga; do topics+=("$PREFIX.events.$aggregate"); done
for service in order payment inventory shipment saga; do topics+=("$PREFIX.commands.$service"); done
topics+=("$PREFIX.dead-letter")
docker compose exec -T redpanda rpk topic create "${topics[@]}" --partitions "$PARTITIONS" --replicas 1 \
  | grep -v "TOPIC_ALREADY_EXISTS" || true
echo "sagaflow: tables $TABLE and $ANALYTICS and ${#topics[@]} topics ready"
