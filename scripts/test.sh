#!/usr/bin/env bash
# Installs every test dependency and runs the whole test suite:
# formatting, lints, unit tests, then the end-to-end suite (real binary,
# real kubectl 1.27–1.33, the official Python client, kube-rs).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=""
  for p in protobuf-compiler curl containerd runc nftables conntrack iproute2 busybox-static libc6-dev containernetworking-plugins util-linux; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
  fi
fi
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r tests/e2e/requirements.txt

echo "== cargo fmt --check"
cargo fmt --check
echo "== build (release, shared by unit and e2e tests)"
cargo build --release --locked --all-targets
echo "== clippy"
cargo clippy --release --locked --all-targets -- -D warnings
echo "== unit and integration tests"
cargo test --release --locked
echo "== end-to-end"
SKIFF_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/skiff" python3 -m pytest -q -x tests/e2e "$@"
