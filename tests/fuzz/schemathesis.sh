#!/usr/bin/env bash
# Fuzzes the running local server with its own OpenAPI document (schemathesis): examples,
# coverage, fuzzing and stateful phases (following the document's links), a bounded number of
# examples per operation, and fails on any 5xx, any response outside the document (status,
# content type, headers, body schema). Admin routes run with an admin token, learner routes with
# a learner token; both over one fresh data folder on a free port.
#
#   bash tests/fuzz/schemathesis.sh            (KEYPOOL_FUZZ_EXAMPLES=40 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV="${KEYPOOL_VENV:-.venv}"
EXAMPLES="${KEYPOOL_FUZZ_EXAMPLES:-40}"
if ! "$VENV/bin/schemathesis" --version >/dev/null 2>&1; then
  echo "installing schemathesis into $VENV"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/fuzz/requirements.txt
fi

# KEYPOOL_LOCAL_BIN: a server built already (the build is skipped).
BIN="${KEYPOOL_LOCAL_BIN:-}"
if [ -z "$BIN" ]; then
  cargo build --locked -q -p keypool-local
  BIN="${CARGO_TARGET_DIR:-target}/debug/keypool-local"
fi

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

DATA="$WORK/data"
mkdir -p "$DATA"
ADMIN="$("$BIN" token --org fuzz-org --role admin --sub fuzz-admin --data-dir "$DATA")"
LEARNER="$("$BIN" token --role learner --sub fuzz-learner --data-dir "$DATA")"

# --port 0: the server prints the port it bound.
"$BIN" serve --port 0 --data-dir "$DATA" --export-every 0 >"$WORK/stdout" 2>"$WORK/stderr" &
SERVER_PID=$!
BASE=""
for _ in $(seq 1 200); do
  BASE="$(grep -o 'http://[0-9.:]*' "$WORK/stdout" 2>/dev/null | head -n1 || true)"
  [ -n "$BASE" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/stderr" >&2; exit 1; }
  sleep 0.1
done
[ -n "$BASE" ] || { echo "the server did not start" >&2; exit 1; }
echo "fuzzing $BASE with its own document, $EXAMPLES examples per operation"

# The document as the server serves it, without a token.
"$VENV/bin/python" - "$BASE/v1/openapi.json" "$WORK/openapi.json" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1]) as answer, open(sys.argv[2], "wb") as out:
    out.write(answer.read())
PY
if [ -z "${KEYPOOL_FUZZ_ANY_DOCUMENT:-}" ]; then
  cmp -s "$WORK/openapi.json" docs/openapi.json \
    || { echo "the served document differs from docs/openapi.json" >&2; exit 1; }
fi

CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
run() {
  local token="$1"
  shift
  "$VENV/bin/schemathesis" run "$WORK/openapi.json" --url "$BASE" \
    --checks "$CHECKS" \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$EXAMPLES" --seed 20261203 --workers 1 \
    --request-timeout 30 --suppress-health-check all --warnings off \
    --header "Authorization: Bearer $token" \
    --report junit --report-dir "$WORK/report" \
    "$@"
}
status=0
run "$ADMIN" --include-tag admin --include-tag service --include-tag local || status=1
run "$LEARNER" --include-tag learner || status=1

# Anything the server logged as an internal error is a failure too, even if it answered.
if grep -q "internal error" "$WORK/stderr"; then
  echo "the server logged internal errors:" >&2
  grep "internal error" "$WORK/stderr" | head -n 20 >&2
  status=1
fi
exit "$status"
