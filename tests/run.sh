#!/usr/bin/env bash
# Every test, on both DynamoDB engines: the embedded one (dynoxide) for the whole workspace,
# then moto's server for the store, API and Lambda suites. Installs moto into .venv when it is
# missing, so this works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${KEYPOOL_VENV:-.venv}"
if ! "$VENV/bin/python" -c "import moto.server, werkzeug, standardwebhooks, jsonschema" 2>/dev/null; then
  echo "installing moto into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/moto/requirements.txt
fi

"$VENV/bin/python" tests/template/check.py

cargo test --workspace --locked

echo "the same suites on moto's server"
KEYPOOL_TEST_ENGINE=moto KEYPOOL_MOTO_PYTHON="$PWD/$VENV/bin/python" \
  cargo test --locked -p keypool-tests --test store --test api --test lambda --test billing --test exports --test jobs

echo "schemathesis against the local server, with its OpenAPI document"
bash tests/fuzz/schemathesis.sh

echo "the console in headless Chromium"
bash tests/browser/run.sh
