#!/usr/bin/env bash
# Starts the Docker local stack (called by `SAGAFLOW_USE_DOCKER=1 make up`): Redpanda, and
# dynoxide's image for DynamoDB unless SAGAFLOW_DYNAMODB=localstack, which needs
# LOCALSTACK_AUTH_TOKEN. The tables and topics are created by whatever runs against the stack
# (tests, local triggers, `make run-local`), as on the plain-process path.
set -euo pipefail
cd "$(dirname "$0")"
dynamodb=${SAGAFLOW_DYNAMODB:-dynoxide}
case "$dynamodb" in
  dynoxide) ;;
  localstack)
    if [ -z "${LOCALSTACK_AUTH_TOKEN:-}" ]; then
      echo "localstack: the LocalStack image needs LOCALSTACK_AUTH_TOKEN since March 2026 (even for DynamoDB);" >&2
      echo "localstack: set it, or leave SAGAFLOW_DYNAMODB unset to run dynoxide's image, which needs none" >&2
      exit 1
    fi ;;
  *) echo "localstack: SAGAFLOW_DYNAMODB is dynoxide or localstack, not '$dynamodb'" >&2; exit 2 ;;
esac
echo "localstack: starting Redpanda and $dynamodb with Docker" >&2
COMPOSE_PROFILES=$dynamodb docker compose -f docker-compose.yml up -d --wait
