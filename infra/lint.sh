#!/usr/bin/env bash
# Offline checks of the deployment description (make lint-infra). No AWS account, credentials
# or network needed; the tools come from infra/tools.sh. Exits non-zero on any finding.
#   1. infra/template.yaml is what infra/generate.py writes
#   2. every skipped check is listed in infra/SKIPPED_CHECKS.md, and the file lists no other
#   3. sam validate: the SAM translator accepts the template
#   4. cfn-lint with its own rules, informational ones included, and the serverless rules
#      (cfn-lint-serverless)
#   5. checkov on the CloudFormation the SAM translator makes of it (infra/transform.py)
# Steps 4 and 5 run side by side.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CACHE=${SAGAFLOW_CACHE:-$HOME/.cache/sagaflow}
TOOLS=$CACHE/infra-venv/bin
CHECKOV=$CACHE/infra-checkov-venv/bin
TEMPLATE=infra/template.yaml
OUT=target/infra
REGION=eu-west-1

infra/tools.sh
mkdir -p "$OUT"

# No telemetry, no instance-metadata probing for credentials that are not needed.
export SAM_CLI_TELEMETRY=0 AWS_EC2_METADATA_DISABLED=true AWS_DEFAULT_REGION=$REGION

failed=()
step() { printf '\n==> %s\n' "$*"; }

step "template up to date: $TOOLS/python infra/generate.py --check"
"$TOOLS/python" infra/generate.py --check || failed+=("generate --check")

step "skipped checks documented: ids in $TEMPLATE vs infra/SKIPPED_CHECKS.md"
used=$("$TOOLS/python" infra/generate.py --list-skips | sort -u)
# The table rows of SKIPPED_CHECKS.md start with | `ID` |
# shellcheck disable=SC2016 # the backquotes are literal
listed=$(grep -oE '^\| `[A-Z0-9_]+`' infra/SKIPPED_CHECKS.md | grep -oE '[A-Z0-9_]+' | sort -u)
if [ "$used" != "$listed" ]; then
  echo "skipped in the template but not listed: $(comm -23 <(echo "$used") <(echo "$listed") | xargs)"
  echo "listed but not skipped anywhere: $(comm -13 <(echo "$used") <(echo "$listed") | xargs)"
  failed+=("SKIPPED_CHECKS.md")
else
  echo "$(echo "$used" | wc -l) skipped checks, each listed with its reason: $(echo "$used" | xargs)"
fi

step "sam validate --template-file $TEMPLATE --region $REGION"
"$TOOLS/sam" validate --template-file "$TEMPLATE" --region "$REGION" || failed+=("sam validate")

step "cfn-lint --regions $REGION --include-checks I -a cfn_lint_serverless.rules -- $TEMPLATE   (in the background)"
"$TOOLS/cfn-lint" --regions "$REGION" --include-checks I -a cfn_lint_serverless.rules -- "$TEMPLATE" \
  > "$OUT/cfn-lint.txt" 2>&1 &
cfn_lint=$!

step "SAM -> CloudFormation: $TOOLS/python infra/transform.py"
if "$TOOLS/python" infra/transform.py "$TEMPLATE" "$OUT/template.json"; then
  step "checkov -f $OUT/template.json --framework cloudformation --quiet --compact --skip-download"
  # --skip-download: no call to the vendor's API; checkov runs on its bundled checks alone.
  "$CHECKOV/checkov" -f "$OUT/template.json" --framework cloudformation --quiet --compact --skip-download \
    || failed+=("checkov")
else
  failed+=("transform")
fi

step "cfn-lint result"
if wait $cfn_lint; then
  echo "no findings"
else
  cat "$OUT/cfn-lint.txt"
  failed+=("cfn-lint")
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "lint-infra: FAILED: ${failed[*]}"
  exit 1
fi
echo "lint-infra: all checks passed (generate, skips, sam validate, cfn-lint + serverless rules, checkov)"
