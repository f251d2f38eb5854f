#!/usr/bin/env bash
# The console's browser suite on a fresh machine: installs Debian's chromium (and node) when
# missing, the pinned npm packages, builds keypool-local, then runs tests/browser/run.mjs.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Only what is missing: the machine's own Node.js is newer than Debian's and stays.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from apt"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
(cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
cargo build --locked -p keypool-local
node tests/browser/run.mjs
