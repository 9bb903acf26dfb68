#!/usr/bin/env bash
# Installs, starts and stops the local servers sagaflow's tests talk to. With a Docker engine
# (and SAGAFLOW_USE_DOCKER not 'never') it runs localstack/docker-compose.yml; without one:
#   moto_server  (DynamoDB and DynamoDB Streams) from PyPI, in a venv under ~/.cache/sagaflow
#   tansu        (a Kafka-protocol broker, in-memory storage) built from crates.io once, kept
#                under ~/.cache/sagaflow/tansu (a cold build takes 10 to 20 minutes on 2 cores)
# Everything binds to 127.0.0.1. `down` stops only the processes `up` started, by their PIDs.
#
#   scripts/servers.sh up      install what is missing, start, wait until ready, write .run/env
#   scripts/servers.sh down    stop what `up` started
#   scripts/servers.sh running exit 0 if the servers of an earlier `up` still run
#   scripts/servers.sh status  say what is running
#   scripts/servers.sh check-moto  install moto if missing; check the corrected moto against moto
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${SAGAFLOW_CACHE:-$HOME/.cache/sagaflow}
RUN=$ROOT/.run
MOTO_VERSION=5.2.5
MOTO_PORT=${SAGAFLOW_MOTO_PORT:-4566}
VENV=$CACHE/venv
TANSU_VERSION=0.6.0
TANSU=$CACHE/tansu/bin/tansu
KAFKA_PORT=${SAGAFLOW_KAFKA_PORT:-9092}

log() { printf 'servers: %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  local name=$1 port=$2 pid=$3 tries=${4:-150}
  for _ in $(seq "$tries"); do
    if port_open "$port"; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited while starting; its log:"; tail -20 "$RUN/$name.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
  log "$name did not open port $port in time"; return 1
}

ensure_moto() {
  if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/python" -c "import moto,sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
    return 0
  fi
  log "installing moto[server]==$MOTO_VERSION into $VENV (once per machine)"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

start_moto() {
  if [ -f "$RUN/moto.pid" ] && kill -0 "$(cat "$RUN/moto.pid")" 2>/dev/null; then
    log "moto already running (pid $(cat "$RUN/moto.pid"))"; return 0
  fi
  if port_open "$MOTO_PORT"; then
    log "port $MOTO_PORT is taken by a process this script did not start; set SAGAFLOW_MOTO_PORT"; return 1
  fi
  # One request at a time: see scripts/moto_serialized.py for the moto race this avoids.
  "$VENV/bin/python" "$ROOT/scripts/moto_serialized.py" 127.0.0.1 "$MOTO_PORT" > "$RUN/moto.log" 2>&1 &
  echo $! > "$RUN/moto.pid"
  wait_for_port moto "$MOTO_PORT" "$(cat "$RUN/moto.pid")"
  log "moto $MOTO_VERSION (serialized) on 127.0.0.1:$MOTO_PORT (pid $(cat "$RUN/moto.pid"))"
}

ensure_tansu() {
  if [ -x "$TANSU" ]; then return 0; fi
  log "building tansu $TANSU_VERSION into $CACHE/tansu (once per machine; 10 to 20 minutes cold)"
  mkdir -p "$CACHE/logs"
  cargo install tansu --version "$TANSU_VERSION" --locked --no-default-features --features dynostore \
    --root "$CACHE/tansu" > "$CACHE/logs/tansu-build.log" 2>&1 \
    || { tail -30 "$CACHE/logs/tansu-build.log" >&2; return 1; }
}

start_tansu() {
  if [ -f "$RUN/tansu.pid" ] && kill -0 "$(cat "$RUN/tansu.pid")" 2>/dev/null; then
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
  cat > "$RUN/env" <<EOF
AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
AWS_REGION=us-east-1
AWS_DEFAULT_REGION=us-east-1
AWS_ACCESS_KEY_ID=test
AWS_SECRET_ACCESS_KEY=test
AWS_EC2_METADATA_DISABLED=true
SAGAFLOW_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
EOF
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

docker_available() {
  [ "${SAGAFLOW_USE_DOCKER:-auto}" != "never" ] && command -v docker > /dev/null 2>&1 \
    && docker info > /dev/null 2>&1
}

case "${1:-}" in
  up)
    mkdir -p "$RUN"
    if docker_available; then
      log "Docker engine found: starting LocalStack and Redpanda from localstack/"
      docker compose -f "$ROOT/localstack/docker-compose.yml" up -d --wait
      touch "$RUN/docker"
      write_env
      "$ROOT/localstack/init.sh"
      exit 0
    fi
    ensure_moto
    ensure_tansu
    start_moto
    start_tansu
    write_env
    ;;
  down)
    if [ -f "$RUN/docker" ]; then
      docker compose -f "$ROOT/localstack/docker-compose.yml" down
      rm -f "$RUN/docker"
    fi
    stop tansu
    stop moto
    rm -f "$RUN/env"
    ;;
  running)
    # Exit 0 when the servers of an earlier `up` are all still running.
    [ -f "$RUN/env" ] || exit 1
    [ -f "$RUN/docker" ] && exit 0
    for name in moto tansu; do
      [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null || exit 1
    done
    ;;
  status)
    for name in moto tansu; do
      if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
        echo "$name: running (pid $(cat "$RUN/$name.pid"))"
      else
        echo "$name: stopped"
      fi
    done
    ;;
  check-moto)
    ensure_moto
    "$VENV/bin/python" "$ROOT/scripts/moto_serialized_check.py" "${2:-400}"
    ;;
  *)
    echo "usage: $0 up|down|running|status|check-moto [writes]" >&2; exit 2 ;;
esac
