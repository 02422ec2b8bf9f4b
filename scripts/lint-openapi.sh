#!/usr/bin/env bash
# Lints the service's OpenAPI document with two linters written elsewhere: Redocly's
# recommended rules and Spectral's spectral:oas. Any error or warning fails.
#
# Usage: scripts/lint-openapi.sh VENV_BIN
#
# The linters are npm packages, pinned here and installed once under .tools/npm; Node.js
# and npm come from Debian's packages when the machine has none.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$1
REDOCLY=@redocly/cli@2.77.0
SPECTRAL=@stoplight/spectral-cli@6.16.3
TOOLS=.tools/npm

if ! command -v npm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends nodejs npm >/dev/null
fi
stamp="$TOOLS/.installed-$(echo "$REDOCLY $SPECTRAL" | tr '/@ ' '___')"
if [[ ! -f "$stamp" ]]; then
    mkdir -p "$TOOLS"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS" "$REDOCLY" "$SPECTRAL" >/dev/null
    touch "$stamp"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$BIN/boxoffice" openapi > "$work/openapi.json"
# Redocly reads its ignore file from the folder it runs in; its exit status counts
# errors only, so its report is read here and warnings fail too.
cp .redocly.lint-ignore.yaml "$work/"
(cd "$work" && NO_UPDATE_NOTIFIER=1 "$OLDPWD/$TOOLS/node_modules/.bin/redocly" lint openapi.json \
    --format json 2>/dev/null) | "$BIN/python" -c '
import json, sys
report = json.load(sys.stdin)
problems = [p for p in report["problems"] if not p.get("ignored")]
for p in problems:
    where = ", ".join(l.get("pointer", "") for l in p["location"])
    print("redocly:", p["severity"], p["ruleId"], p["message"], where)
print(f"redocly: {len(problems)} problems")
sys.exit(1 if problems else 0)'
"$TOOLS/node_modules/.bin/spectral" lint "$work/openapi.json" -r .spectral.yaml --fail-severity=warn
