#!/usr/bin/env bash
# Builds the deploy on this machine: checks template.yaml with `sam validate --lint`, runs
# `sam build` (cargo-lambda, release profile) for one architecture, and zips each of the seven
# functions' bootstrap into .aws-sam/zips/, printing each zip's size.
#
#   infra/build.sh                 # x86_64: all a machine with only the x86_64 std can build
#   ARCH=arm64 infra/build.sh      # needs `rustup target add aarch64-unknown-linux-gnu`
#   SKIP_BUILD=1 infra/build.sh    # only install the tools and validate the template
#
# Deploy what it built with the same architecture:
#   sam deploy --guided --parameter-overrides Architecture=x86_64 ...
#
# Needs python3 (with venv), cargo and PyPI; no AWS credentials, no other network. The tools
# (infra/requirements-sam.txt) go into .venv-sam. Cargo's target directory is
# CARGO_TARGET_DIR if set, else target/ (cargo-lambda and SAM both honour it); the build
# holds the lock file CARGO_LOCK (default /tmp/keypool-cargo.lock) so it never runs beside
# another cargo build sharing that directory.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=${ARCH:-x86_64}
venv=${VENV:-.venv-sam}
lock=${CARGO_LOCK:-/tmp/keypool-cargo.lock}
case "$arch" in arm64 | x86_64) ;; *) echo "ARCH must be arm64 or x86_64, not $arch" >&2; exit 2 ;; esac

if ! "$venv/bin/python" -c 'import samcli, ziglang' 2>/dev/null || [ ! -x "$venv/bin/cargo-lambda" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r infra/requirements-sam.txt
fi
# cargo-lambda is found on PATH by SAM, and finds zig as `python3 -m ziglang` on PATH.
export PATH="$PWD/$venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
# SAM wants a region even for work that never calls AWS.
export AWS_REGION=${AWS_REGION:-us-east-1} AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}

sam validate --lint
[ -n "${SKIP_BUILD:-}" ] && exit 0

start=$(date +%s)
flock "$lock" sam build --parameter-overrides "Architecture=$arch"
echo "sam build took $(($(date +%s) - start)) s"

mkdir -p .aws-sam/zips
for function in PoolAdmin:pool-admin KeyGeneration:key-generation Redemption:redemption Export:export Billing:billing Webhooks:webhooks Stats:stats; do
  resource=${function%%:*}Function name=${function#*:}
  python3 - ".aws-sam/build/$resource/bootstrap" ".aws-sam/zips/$name.zip" "$name" <<'PY'
import os, sys, zipfile
binary, out, name = sys.argv[1:]
# As `sam deploy` uploads it: deflate, the file named bootstrap, executable.
info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
info.external_attr = 0o100755 << 16
info.compress_type = zipfile.ZIP_DEFLATED
with open(binary, "rb") as f, zipfile.ZipFile(out, "w") as z:
    z.writestr(info, f.read(), compresslevel=9)
print(f"{name:15} bootstrap {os.path.getsize(binary) / 1e6:5.1f} MB  zip {os.path.getsize(out) / 1e6:5.1f} MB  {out}")
PY
done
