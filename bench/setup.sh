#!/usr/bin/env bash
# Installs or unpacks what `npm run bench` needs, and only what is missing
# (safe to run every time; bench/run.ts calls it first).
#
# Baseline *servers* are never installed as system packages: their Debian
# postinst scripts would start a service on the host's interfaces. Their
# .debs are fetched with `apt-get download` and unpacked with dpkg-deb -x
# into $SWARMBOOT_BENCH_CACHE/root; the benchmarks run those binaries by
# hand inside network namespaces. Clients and load generators (perfdhcp,
# wrk, atftp, curl) start no service and are installed normally.
set -euo pipefail

cache=${SWARMBOOT_BENCH_CACHE:-/var/tmp/swarmboot-bench}
root="$cache/root"
debs="$cache/debs"
mkdir -p "$root" "$debs"

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/setup.sh: the benchmarks need root (network namespaces)" >&2
  exit 1
fi

# Installed normally: clients, load generators, and kea/dnsmasq binaries
# whose packages start nothing by themselves on this machine's setup.
pkgs=(kea-admin kea-dhcp4-server dnsmasq-base atftp curl wrk iproute2 procps)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
updated=0
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/setup.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && updated=1
  # policy-rc.d 101: no service may start while these install.
  prc=/usr/sbin/policy-rc.d
  had_prc=0
  [ -e "$prc" ] && had_prc=1
  [ $had_prc -eq 1 ] || { printf '#!/bin/sh\nexit 101\n' >"$prc"; chmod +x "$prc"; }
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || { [ $had_prc -eq 1 ] || rm -f "$prc"; exit 1; }
  [ $had_prc -eq 1 ] || rm -f "$prc"
  # kea's package enables a host service; keep it off (it would listen on the host's interfaces).
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now kea-dhcp4-server >/dev/null 2>&1 || true
  fi
fi

# Unpacked only: tftpd-hpa (in.tftpd) and nginx.
unpack() { # package, file that proves it is unpacked
  local pkg=$1 probe=$2
  [ -e "$root/$probe" ] && return 0
  if [ $updated -eq 0 ]; then apt-get update -qq; updated=1; fi
  (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root "$pkg")
  local deb
  deb=$(ls -t "$debs"/"${pkg}"_*.deb | head -1)
  dpkg-deb -x "$deb" "$root"
  echo "bench/setup.sh: unpacked $(basename "$deb") into $root" >&2
}
unpack tftpd-hpa usr/sbin/in.tftpd
# in.tftpd links libwrap.so.0 (run with LD_LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu).
unpack libwrap0 usr/lib/x86_64-linux-gnu/libwrap.so.0
unpack nginx-common etc/nginx/mime.types
unpack nginx usr/sbin/nginx

# Both link only against libraries already present (or unpacked above); say so plainly if that changes.
for bin in usr/sbin/nginx usr/sbin/in.tftpd; do
  if LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu" ldd "$root/$bin" | grep -q "not found"; then
    echo "bench/setup.sh: $bin needs libraries that are missing:" >&2
    LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu" ldd "$root/$bin" | grep "not found" >&2
    exit 1
  fi
done
echo "bench/setup.sh: ready ($root)"
