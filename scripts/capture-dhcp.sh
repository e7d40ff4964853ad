#!/usr/bin/env bash
# Captures real DHCP client packets (busybox udhcpc, ISC dhclient) as raw UDP
# payloads into test/fixtures/dhcp/<client>-<variant>-<type>.bin, the inputs
# of test/server/dhcp/*.test.ts.
#
# Safety: everything happens between two network namespaces this script
# creates (a veth pair, 10.213.0.0/24 only inside them); nothing is sent on
# the host's interfaces. The namespaces and every process started here are
# removed on exit, failure included.
#
# The listener on port 67 answers DISCOVER with a hand-built OFFER and REQUEST
# with an ACK (bytes assembled here, not by swarmboot's codec, so the fixtures
# do not depend on the code they test); that is what makes the clients go on
# to send a REQUEST.
#
# Usage (root):  bash scripts/capture-dhcp.sh [outdir]
# Re-running overwrites the fixtures with new ones (new xids, secs): the
# golden dumps must then be regenerated (UPDATE_GOLDEN=1) and reviewed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/test/fixtures/dhcp}
SRV=sbcap-srv
CLI=sbcap-cli
WORK=$(mktemp -d /tmp/sbcap.XXXXXX)
LISTENER_PID=

[ "$(id -u)" = 0 ] || { echo "capture-dhcp.sh: needs root (network namespaces)" >&2; exit 1; }
for tool in ip node busybox dhclient; do
  command -v "$tool" >/dev/null || { echo "capture-dhcp.sh: $tool not found" >&2; exit 1; }
done

cleanup() {
  if [ -n "$LISTENER_PID" ]; then kill "$LISTENER_PID" 2>/dev/null || true; fi
  ip netns pids "$CLI" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns pids "$SRV" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$CLI" 2>/dev/null || true
  ip netns del "$SRV" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cleanup_stale() { ip netns del "$CLI" 2>/dev/null || true; ip netns del "$SRV" 2>/dev/null || true; }
cleanup_stale

mkdir -p "$OUT"
ip netns add "$SRV"
ip netns add "$CLI"
ip link add sbcap-s netns "$SRV" type veth peer name sbcap-c netns "$CLI"
# A fixed client MAC keeps chaddr (and option 61) stable across re-captures.
ip -n "$CLI" link set sbcap-c address 02:5b:00:00:00:01
ip -n "$SRV" addr add 10.213.0.1/24 dev sbcap-s
ip -n "$SRV" link set lo up
ip -n "$CLI" link set lo up
ip -n "$SRV" link set sbcap-s up
ip -n "$CLI" link set sbcap-c up
# Limited broadcast (255.255.255.255) needs a route inside the server namespace.
ip -n "$SRV" route add default dev sbcap-s

cat >"$WORK/listener.cjs" <<'EOF'
// Saves the first packet of each DHCP message type as <prefix>-<type>.bin and
// answers with a minimal OFFER/ACK so the client proceeds to REQUEST.
const dgram = require('node:dgram');
const fs = require('node:fs');
const [outDir, prefix] = process.argv.slice(2);
const TYPES = { 1: 'discover', 3: 'request', 7: 'release', 8: 'inform' };
const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
function msgType(buf) {
  for (let i = 240; i < buf.length; ) {
    const code = buf[i];
    if (code === 255) break;
    if (code === 0) { i++; continue; }
    if (code === 53) return buf[i + 2];
    i += 2 + buf[i + 1];
  }
  return 0;
}
sock.on('message', (buf) => {
  const type = msgType(buf);
  const name = TYPES[type] ?? `type${type}`;
  const file = `${outDir}/${prefix}-${name}.bin`;
  if (!fs.existsSync(file)) fs.writeFileSync(file, buf);
  if (type !== 1 && type !== 3) return;
  const r = Buffer.alloc(300);
  r[0] = 2; r[1] = 1; r[2] = 6;
  buf.copy(r, 4, 4, 8); // xid
  r.writeUInt16BE(0x8000, 10);
  Buffer.from([10, 213, 0, 50]).copy(r, 16); // yiaddr
  Buffer.from([10, 213, 0, 1]).copy(r, 20); // siaddr
  buf.copy(r, 28, 28, 44); // chaddr
  r.writeUInt32BE(0x63825363, 236);
  Buffer.from([53, 1, type === 1 ? 2 : 5, 54, 4, 10, 213, 0, 1, 51, 4, 0, 0, 14, 16,
    1, 4, 255, 255, 255, 0, 255]).copy(r, 240);
  sock.send(r, 68, '255.255.255.255');
});
sock.bind(67, () => { sock.setBroadcast(true); console.log('listening'); });
EOF

start_listener() {
  ip netns exec "$SRV" node "$WORK/listener.cjs" "$OUT" "$1" >"$WORK/listener.log" 2>&1 &
  LISTENER_PID=$!
  for _ in $(seq 50); do grep -q listening "$WORK/listener.log" && return 0; sleep 0.1; done
  echo "capture-dhcp.sh: listener did not start" >&2; cat "$WORK/listener.log" >&2; exit 1
}
stop_listener() { kill "$LISTENER_PID" 2>/dev/null || true; wait "$LISTENER_PID" 2>/dev/null || true; LISTENER_PID=; }

# udhcpc <prefix> [udhcpc args...]: one full DISCOVER/OFFER/REQUEST/ACK exchange.
udhcpc_run() {
  local prefix=$1; shift
  rm -f "$OUT/$prefix"-*.bin
  start_listener "$prefix"
  ip netns exec "$CLI" timeout 20 busybox udhcpc -f -q -n -t 3 -T 2 -i sbcap-c -s /bin/true "$@" \
    >"$WORK/$prefix.log" 2>&1 || { echo "udhcpc $prefix failed:" >&2; cat "$WORK/$prefix.log" >&2; }
  stop_listener
}

UUID=00112233445566778899aabbccddeeff
# PXE firmware as emulated by udhcpc: option 60 class id, 93 arch, 94 NDI (UNDI 2.1), 97 UUID (type 0).
udhcpc_run udhcpc-bios -V PXEClient:Arch:00000:UNDI:002001 -x 0x5d:0000 -x 0x5e:010201 -x 0x61:00$UUID
udhcpc_run udhcpc-efi-x64 -V PXEClient:Arch:00007:UNDI:003016 -x 0x5d:0007 -x 0x5e:010300 -x 0x61:00$UUID
udhcpc_run udhcpc-efi-bc -V PXEClient:Arch:00009:UNDI:003016 -x 0x5d:0009
udhcpc_run udhcpc-arm64 -V PXEClient:Arch:00011:UNDI:003000 -x 0x5d:000b -x 0x61:00$UUID
udhcpc_run udhcpc-ia32 -V PXEClient:Arch:00006:UNDI:003016 -x 0x5d:0006
udhcpc_run udhcpc-http -V HTTPClient:Arch:00016:UNDI:003000 -x 0x5d:0010
# iPXE: user class "iPXE" (plain, not RFC 3004) and an option 175 block
# (sub-options 0x11 pxeext, 0x13 iscsi, 0x15 http = 1, as iPXE's feature list sends them).
udhcpc_run udhcpc-ipxe -V PXEClient:Arch:00000:UNDI:002001 -x 0x5d:0000 -x 0x4d:69505845 \
  -x 0xaf:110101130101150101 -x hostname:blade1
# User class in RFC 3004 form (length-prefixed list: "iPXE", "rack1"), as
# opposed to the plain string iPXE itself sends.
udhcpc_run udhcpc-rfc3004 -V PXEClient:Arch:00007:UNDI:003016 -x 0x5d:0007 -x 0x4d:0469505845057261636b31
# A plain Linux client: no PXE options at all.
udhcpc_run udhcpc-plain

# dhclient, with PXE-like options and an RFC 3004 user class declared in its config.
dhclient_run() {
  local prefix=$1 conf=$2
  rm -f "$OUT/$prefix"-*.bin
  start_listener "$prefix"
  printf '%s\n' "$conf" >"$WORK/$prefix.conf"
  ip netns exec "$CLI" dhclient -d -1 -v -cf "$WORK/$prefix.conf" -lf "$WORK/$prefix.leases" \
    -pf "$WORK/$prefix.pid" -sf /bin/true sbcap-c >"$WORK/$prefix.log" 2>&1 &
  local pid=$!
  for _ in $(seq 150); do [ -e "$OUT/$prefix-request.bin" ] && break; sleep 0.1; done
  sleep 0.3
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  [ -e "$OUT/$prefix-request.bin" ] || { echo "dhclient $prefix failed:" >&2; cat "$WORK/$prefix.log" >&2; }
  stop_listener
}

dhclient_run dhclient-efi-x64 '
option pxe-arch code 93 = unsigned integer 16;
option pxe-uuid code 97 = string;
send vendor-class-identifier "PXEClient:Arch:00007:UNDI:003016";
send pxe-arch 7;
send pxe-uuid 00:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff;
send user-class "iPXE";
send host-name "blade2";
request subnet-mask, routers, domain-name-servers, host-name, tftp-server-name, bootfile-name;
'
dhclient_run dhclient-plain '
request subnet-mask, routers, domain-name-servers, domain-name;
'

ls -l "$OUT"
