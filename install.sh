#!/bin/sh
# skiff installer: builds (from this checkout) or installs a release binary,
# puts it at /usr/local/bin/skiff, and starts `skiff server` (SQLite store,
# one node). Re-running is safe. Environment:
#   SKIFF_BIN=path            install this binary instead of building
#   INSTALL_SKIFF_SKIP_START=true   install only
#   INSTALL_SKIFF_EXEC="server --tls-san x"  arguments for skiff (default: server)
set -eu
say() { echo "[skiff] $*"; }
[ "$(id -u)" = 0 ] || { echo "install.sh must run as root (try: sudo sh install.sh)" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)

if [ -z "${SKIFF_BIN:-}" ]; then
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust (https://rustup.rs) or set SKIFF_BIN to a prebuilt skiff binary" >&2
    exit 1
  fi
  if ! command -v protoc >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    say "installing build packages"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler libc6-dev >/dev/null 2>&1 || true
  fi
  say "building skiff (release)"
  (cd "$here" && cargo build --release --locked 2>&1 | tail -n 3)
  SKIFF_BIN="$here/target/release/skiff"
fi
# stripped: the release build keeps line tables for developers; users get ~27 MB
install -s -m 0755 "$SKIFF_BIN" /usr/local/bin/skiff
# the node agent runs containers with containerd + runc and programs nftables
if command -v apt-get >/dev/null 2>&1 && ! command -v containerd >/dev/null 2>&1; then
  say "installing containerd, runc, nftables"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd runc nftables conntrack iproute2 >/dev/null 2>&1 \
    || say "could not install containerd; run skiff with --disable-agent or --container-runtime-endpoint"
fi
mkdir -p /etc/skiff /var/lib/skiff
chmod 0700 /var/lib/skiff
say "installed /usr/local/bin/skiff"

[ "${INSTALL_SKIFF_SKIP_START:-false}" = true ] && exit 0

# stop a previous instance started by this script
if [ -f /run/skiff.pid ] && kill -0 "$(cat /run/skiff.pid)" 2>/dev/null; then
  say "stopping the running skiff (pid $(cat /run/skiff.pid))"
  kill "$(cat /run/skiff.pid)" || true
  for _ in $(seq 1 50); do kill -0 "$(cat /run/skiff.pid)" 2>/dev/null || break; sleep 0.1; done
fi

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  cat > /etc/systemd/system/skiff.service <<UNIT
[Unit]
Description=skiff - lightweight Kubernetes
After=network-online.target
[Service]
ExecStart=/usr/local/bin/skiff ${INSTALL_SKIFF_EXEC:-server}
KillMode=process
Delegate=yes
Restart=always
LimitNOFILE=1048576
[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable --now skiff
else
  # no systemd (containers, minimal VMs): run in the background
  # shellcheck disable=SC2086
  nohup /usr/local/bin/skiff ${INSTALL_SKIFF_EXEC:-server} >>/var/log/skiff.log 2>&1 &
  echo $! > /run/skiff.pid
fi

say "waiting for the API server"
for _ in $(seq 1 100); do
  if [ -f /etc/skiff/skiff.yaml ] && curl -ksf https://127.0.0.1:6443/readyz >/dev/null 2>&1; then
    say "ready: kubeconfig at /etc/skiff/skiff.yaml (try: skiff kubectl get ns)"
    exit 0
  fi
  sleep 0.2
done
echo "skiff did not become ready; see /var/log/skiff.log" >&2
exit 1
