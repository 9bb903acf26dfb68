#!/usr/bin/env bash
# Installs, once per machine, the tools of the deployment (make lint-infra, package, deploy):
#   ~/.cache/sagaflow/infra-venv          aws-sam-cli, cfn-lint, cfn-lint-serverless,
#                                          cargo-lambda and the zig it links with (ziglang)
#   ~/.cache/sagaflow/infra-checkov-venv  checkov
#   ~/.cache/sagaflow/signer-venv         AWS's MSK IAM SASL signer for Python and freezegun:
#                                          the reference the MSK IAM token test signs against
# Separate venvs: aws-sam-cli, checkov and the signer each want their own boto3, so pip finds
# no install that holds all of them.
# Needs only python3 with its venv module. Prints nothing when the pinned versions are there.
#
#   infra/tools.sh                 install what is missing (or pinned differently)
#   infra/tools.sh run CMD ARGS    install, then run CMD with both venvs' bin on PATH
#                                          (e.g. infra/tools.sh run sam --version)
set -euo pipefail

CACHE=${SAGAFLOW_CACHE:-$HOME/.cache/sagaflow}
TOOLS_VENV=$CACHE/infra-venv
CHECKOV_VENV=$CACHE/infra-checkov-venv
SIGNER_VENV=$CACHE/signer-venv
# Versions tested together; change one, and the next run reinstalls that venv.
TOOLS_PINS="aws-sam-cli==1.170.0 cfn-lint==1.58.0 cfn-lint-serverless==0.3.6 cargo-lambda==1.9.2 ziglang==0.16.0"
CHECKOV_PINS="checkov==3.3.30"
SIGNER_PINS="aws-msk-iam-sasl-signer-python==1.0.2 botocore==1.44.8 freezegun==1.5.5"
STAMP=.sagaflow-pins

log() { printf 'infra_tools: %s\n' "$*" >&2; }

# The venv at $1 holds exactly the pins $2 (written last by a successful install).
installed() { [ -x "$1/bin/python" ] && [ -f "$1/$STAMP" ] && [ "$(cat "$1/$STAMP")" = "$2" ]; }

install_venv() {
  local venv=$1 pins=$2 logfile=$3
  rm -rf "$venv"
  python3 -m venv "$venv" > "$logfile" 2>&1 || {
    cat "$logfile" >&2
    log "python3 -m venv failed: install python3's venv module (Debian: apt-get install python3-venv)"
    return 1
  }
  # shellcheck disable=SC2086 # the pins are separate words
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check $pins >> "$logfile" 2>&1; then
    tail -30 "$logfile" >&2
    log "installing $pins into $venv failed (log: $logfile)"
    return 1
  fi
  printf '%s' "$pins" > "$venv/$STAMP"
}

ensure_tools() {
  local todo=()
  installed "$TOOLS_VENV" "$TOOLS_PINS" || todo+=(tools)
  installed "$CHECKOV_VENV" "$CHECKOV_PINS" || todo+=(checkov)
  installed "$SIGNER_VENV" "$SIGNER_PINS" || todo+=(signer)
  [ ${#todo[@]} -eq 0 ] && return 0

  command -v python3 > /dev/null || { log "python3 is needed"; return 1; }
  mkdir -p "$CACHE/logs"
  local start=$SECONDS pids=() status=0
  for what in "${todo[@]}"; do
    case $what in
      tools)
        log "installing $TOOLS_PINS into $TOOLS_VENV (once per machine)"
        install_venv "$TOOLS_VENV" "$TOOLS_PINS" "$CACHE/logs/infra-venv.log" & ;;
      checkov)
        log "installing $CHECKOV_PINS into $CHECKOV_VENV (once per machine)"
        install_venv "$CHECKOV_VENV" "$CHECKOV_PINS" "$CACHE/logs/infra-checkov-venv.log" & ;;
      signer)
        log "installing $SIGNER_PINS into $SIGNER_VENV (once per machine)"
        install_venv "$SIGNER_VENV" "$SIGNER_PINS" "$CACHE/logs/signer-venv.log" & ;;
    esac
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  [ $status -eq 0 ] && log "installed in $((SECONDS - start)) s"
  return $status
}

ensure_tools
if [ "${1:-}" = run ]; then
  shift
  [ $# -gt 0 ] || { log "usage: $0 run CMD [ARGS...]"; exit 2; }
  export PATH="$TOOLS_VENV/bin:$CHECKOV_VENV/bin:$PATH"
  export SAM_CLI_TELEMETRY=${SAM_CLI_TELEMETRY:-0}
  exec "$@"
elif [ $# -gt 0 ]; then
  log "usage: $0 [run CMD [ARGS...]]"; exit 2
fi
