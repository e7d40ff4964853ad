#!/usr/bin/env bash
# Installs what swarmboot needs on a Debian machine, and only what is
# missing, so `npm start` / `npm test` can run it every time.
#   scripts/setup.sh          what `swarmboot serve` needs (boot binaries)
#   scripts/setup.sh --test   plus the real peers the test suites use
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-run}

# Node 20+ (the code uses ES2022 and Node 20 APIs).
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "swarmboot: Node $(node --version) is too old; installing Node 20 from the npm registry" >&2
  npm install -g node@20
fi

# npm dependencies: install when missing or older than the lock file.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

run_pkgs=(ipxe pxelinux syslinux-common iproute2)
test_pkgs=(
  ignition systemd cpio curl busybox udhcpc isc-dhcp-client
  kea-admin kea-dhcp4-server dnsmasq-base atftp tftp-hpa
  docker.io qemu-system-x86 ovmf ipxe-qemu procps psmisc
)
pkgs=("${run_pkgs[@]}")
[ "$mode" = "--test" ] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "swarmboot: missing Debian packages: ${missing[*]}" >&2
    echo "swarmboot: run as root (sudo npm ...) or: sudo apt-get install ${missing[*]}" >&2
    [ "$mode" = "--test" ] || exit 1
  elif command -v apt-get >/dev/null; then
    echo "swarmboot: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "swarmboot: not a Debian system; install the equivalents of: ${missing[*]}" >&2
  fi
fi
