#!/usr/bin/env bash
# Installs, starts and stops the local servers sagaflow's tests talk to:
#   dynoxide  (DynamoDB and DynamoDB Streams, a Rust emulator on SQLite) built from crates.io
#             once into ~/.cache/sagaflow/dynoxide (about 3 minutes cold on 2 cores), run on a
#             database file under .run/ so it can be stopped and started again with its data
#             (the chaos run's endpoint outages)
#   tansu     (a Kafka-protocol broker, in-memory storage) built from crates.io once into
#             ~/.cache/sagaflow/tansu (10 to 20 minutes cold on 2 cores)
#   moto      (Secrets Manager only, which dynoxide does not serve: the SCRAM secret the functions
#             read at init) from PyPI once into ~/.cache/sagaflow/moto-venv (about 20 seconds)
# With SAGAFLOW_USE_DOCKER=1 and a Docker engine that answers, it runs localstack/docker-compose.yml
# instead (Redpanda, and dynoxide's image or LocalStack for DynamoDB); never without being asked.
# Everything binds to 127.0.0.1. `down` stops only the processes `up` started, by their PIDs.
#
#   dev/scripts/servers.sh up       install what is missing, start, wait until ready, write .run/env
#   dev/scripts/servers.sh down     stop what `up` started
#   dev/scripts/servers.sh running  exit 0 if the servers of an earlier `up` still run
#   dev/scripts/servers.sh status   say what is running
#   dev/scripts/servers.sh outage dynamodb SECONDS
#                               stop the DynamoDB endpoint, wait, start it again on its database
#                               file (the chaos run's outage fault)
#   dev/scripts/servers.sh install  install what is missing, start nothing
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${SAGAFLOW_CACHE:-$HOME/.cache/sagaflow}
RUN=$ROOT/.run
DYNOXIDE_VERSION=3.2.0
DYNOXIDE=$CACHE/dynoxide/bin/dynoxide
DYNAMODB_PORT=${SAGAFLOW_DYNAMODB_PORT:-8000}
TANSU_VERSION=0.6.0
TANSU=$CACHE/tansu/bin/tansu
KAFKA_PORT=${SAGAFLOW_KAFKA_PORT:-9092}
MOTO_PIN="moto[server]==5.2.5"
MOTO_VENV=$CACHE/moto-venv
SECRETS_PORT=${SAGAFLOW_SECRETS_PORT:-8001}

log() { printf 'servers: %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running_pid() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

wait_for_port() {
  local name=$1 port=$2 pid=$3 tries=${4:-150}
  for _ in $(seq "$tries"); do
    if port_open "$port"; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited while starting; its log:"; tail -20 "$RUN/$name.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  log "$name did not open port $port in time"; return 1
}

# cargo install records what it installed in the root's .crates.toml; a different pin rebuilds.
cargo_install() {
  local name=$1 crate=$2 version=$3 features=$4 root=$CACHE/$1
  if [ -x "$root/bin/$name" ] && grep -q "\"$crate $version " "$root/.crates.toml" 2>/dev/null; then
    return 0
  fi
  command -v cargo > /dev/null || { log "cargo is needed to build $crate"; return 1; }
  log "building $crate $version into $root (once per machine)"
  mkdir -p "$CACHE/logs"
  # shellcheck disable=SC2086 # the features are one word
  cargo install "$crate" --version "$version" --locked --no-default-features --features $features \
    --root "$root" > "$CACHE/logs/$name-build.log" 2>&1 \
    || { tail -30 "$CACHE/logs/$name-build.log" >&2; log "building $crate failed (log: $CACHE/logs/$name-build.log)"; return 1; }
}

ensure_dynoxide() { cargo_install dynoxide dynoxide-rs "$DYNOXIDE_VERSION" native-sqlite,http-server,cli; }
ensure_tansu() { cargo_install tansu tansu "$TANSU_VERSION" dynostore; }

ensure_moto() {
  if [ -x "$MOTO_VENV/bin/moto_server" ] && [ "$(cat "$MOTO_VENV/.sagaflow-pins" 2>/dev/null)" = "$MOTO_PIN" ]; then
    return 0
  fi
  command -v python3 > /dev/null || { log "python3 is needed for moto"; return 1; }
  log "installing $MOTO_PIN into $MOTO_VENV (once per machine)"
  mkdir -p "$CACHE/logs"
  rm -rf "$MOTO_VENV"
  { python3 -m venv "$MOTO_VENV" && "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "$MOTO_PIN"; } \
    > "$CACHE/logs/moto-venv.log" 2>&1 \
    || { tail -30 "$CACHE/logs/moto-venv.log" >&2; log "installing moto failed"; return 1; }
  printf '%s' "$MOTO_PIN" > "$MOTO_VENV/.sagaflow-pins"
}

start_moto() {
  if running_pid secrets; then
    log "moto already running (pid $(cat "$RUN/secrets.pid"))"; return 0
  fi
  if port_open "$SECRETS_PORT"; then
    log "port $SECRETS_PORT is taken by a process this script did not start; set SAGAFLOW_SECRETS_PORT"; return 1
  fi
  "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$SECRETS_PORT" > "$RUN/secrets.log" 2>&1 &
  echo $! > "$RUN/secrets.pid"
  wait_for_port secrets "$SECRETS_PORT" "$(cat "$RUN/secrets.pid")"
  log "moto (Secrets Manager) on 127.0.0.1:$SECRETS_PORT (pid $(cat "$RUN/secrets.pid"))"
}

start_dynoxide() {
  if running_pid dynamodb; then
    log "dynoxide already running (pid $(cat "$RUN/dynamodb.pid"))"; return 0
  fi
  if port_open "$DYNAMODB_PORT"; then
    log "port $DYNAMODB_PORT is taken by a process this script did not start; set SAGAFLOW_DYNAMODB_PORT"; return 1
  fi
  # The database file outlives the process, so an outage loses nothing; `up` starts it empty.
  "$DYNOXIDE" serve --host 127.0.0.1 --port "$DYNAMODB_PORT" --db-path "$RUN/dynamodb.db" \
    --log quiet >> "$RUN/dynamodb.log" 2>&1 &
  echo $! > "$RUN/dynamodb.pid"
  wait_for_port dynamodb "$DYNAMODB_PORT" "$(cat "$RUN/dynamodb.pid")"
  log "dynoxide $DYNOXIDE_VERSION on 127.0.0.1:$DYNAMODB_PORT (pid $(cat "$RUN/dynamodb.pid"), database $RUN/dynamodb.db)"
}

start_tansu() {
  if running_pid tansu; then
    log "tansu already running (pid $(cat "$RUN/tansu.pid"))"; return 0
  fi
  if port_open "$KAFKA_PORT"; then
    log "port $KAFKA_PORT is taken by a process this script did not start; set SAGAFLOW_KAFKA_PORT"; return 1
  fi
  "$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ > "$RUN/tansu.log" 2>&1 &
  echo $! > "$RUN/tansu.pid"
  wait_for_port tansu "$KAFKA_PORT" "$(cat "$RUN/tansu.pid")"
  log "tansu $TANSU_VERSION on 127.0.0.1:$KAFKA_PORT (pid $(cat "$RUN/tansu.pid"))"
}

write_env() {
  cat > "$RUN/env" <<ENV
AWS_ENDPOINT_URL=http://127.0.0.1:$DYNAMODB_PORT
AWS_REGION=us-east-1
AWS_DEFAULT_REGION=us-east-1
AWS_ACCESS_KEY_ID=test
AWS_SECRET_ACCESS_KEY=test
AWS_EC2_METADATA_DISABLED=true
SAGAFLOW_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
AWS_ENDPOINT_URL_SECRETS_MANAGER=http://127.0.0.1:$SECRETS_PORT
ENV
}

stop() {
  local name=$1 file=$RUN/$1.pid
  [ -f "$file" ] || return 0
  local pid; pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$file"
}

docker_wanted() {
  [ "${SAGAFLOW_USE_DOCKER:-0}" = 1 ] || return 1
  if ! command -v docker > /dev/null 2>&1 || ! docker info > /dev/null 2>&1; then
    log "SAGAFLOW_USE_DOCKER=1, but no Docker engine answers"; exit 1
  fi
}

case "${1:-}" in
  up)
    mkdir -p "$RUN"
    if docker_wanted; then
      "$ROOT/localstack/up.sh"
      touch "$RUN/docker"
      # Secrets Manager from moto beside the containers: dynoxide's image has none.
      ensure_moto
      start_moto
      DYNAMODB_PORT=${SAGAFLOW_DYNAMODB_PORT:-8000} write_env
      exit 0
    fi
    ensure_dynoxide
    ensure_tansu
    ensure_moto
    if ! running_pid dynamodb; then rm -f "$RUN/dynamodb.db" "$RUN/dynamodb.db-wal" "$RUN/dynamodb.db-shm"; fi
    start_dynoxide
    start_tansu
    start_moto
    write_env
    ;;
  down)
    if [ -f "$RUN/docker" ]; then
      COMPOSE_PROFILES=dynoxide,localstack docker compose -f "$ROOT/localstack/docker-compose.yml" down --volumes
      rm -f "$RUN/docker"
    fi
    stop secrets
    stop tansu
    stop dynamodb
    rm -f "$RUN/env" "$RUN/dynamodb.db" "$RUN/dynamodb.db-wal" "$RUN/dynamodb.db-shm"
    ;;
  running)
    # Exit 0 when the servers of an earlier `up` are all still running.
    [ -f "$RUN/env" ] || exit 1
    [ -f "$RUN/docker" ] && exit 0
    for name in dynamodb tansu secrets; do running_pid "$name" || exit 1; done
    ;;
  status)
    for name in dynamodb tansu secrets; do
      if running_pid "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"; else echo "$name: stopped"; fi
    done
    ;;
  outage)
    [ "${2:-}" = dynamodb ] && [ -n "${3:-}" ] || { echo "usage: $0 outage dynamodb SECONDS" >&2; exit 2; }
    [ -f "$RUN/docker" ] && { log "outages are injected only into the servers this script starts"; exit 1; }
    running_pid dynamodb || { log "dynoxide is not running"; exit 1; }
    stop dynamodb
    sleep "$3"
    start_dynoxide
    ;;
  install)
    ensure_dynoxide
    ensure_tansu
    ensure_moto
    ;;
  *)
    echo "usage: $0 up|down|running|status|outage dynamodb SECONDS|install" >&2; exit 2 ;;
esac
