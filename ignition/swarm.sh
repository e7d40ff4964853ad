#!/bin/sh
# swarmboot: join the Docker swarm at boot, leave it at shutdown.
#
# Installed by swarmboot's Ignition config as /opt/swarmboot/swarm.sh and run
# by swarmboot-swarm.service: `swarm.sh join` (ExecStart), `swarm.sh leave`
# (ExecStop), with /etc/swarmboot/swarm.env as its environment:
#   SWARMBOOT_URL SWARMBOOT_MAC SWARMBOOT_SECRET SWARMBOOT_ROLE (manager|worker)
#   SWARMBOOT_HOSTNAME SWARMBOOT_MODE (automatic|static)
#   automatic: SWARMBOOT_LEAVE_LAST_MANAGER (0|1)
#   static:    SWARMBOOT_MANAGERS (host:port,...) SWARMBOOT_TOKEN
# Overridable (tests): DOCKER, CURL, SWARMBOOT_SLEEP, SWARMBOOT_RETRY_MAX,
#   SWARMBOOT_ADVERTISE_ADDR, SWARMBOOT_DOCKER_WAIT (tries, 2 s apart).
#
# Exit codes (the unit's RestartPreventExitStatus= lists 1 and 2):
#   0 done; 1 refused by the server (403/404: wrong secret or unknown
#   machine, retrying cannot help); 2 usage or configuration error;
#   3 transient failure (dockerd not answering, no manager accepted us),
#   which systemd retries.
#
# Join tokens and the secret are never printed (stdout and stderr end up in
# the journal) and never put on curl's command line (ps would show them):
# curl reads them from its config on stdin.
set -eu

# Word splitting of these is deliberate: DOCKER="docker -H unix:///x" works.
DOCKER=${DOCKER:-docker}
CURL=${CURL:-curl}
SLEEP=${SWARMBOOT_SLEEP:-sleep}
RETRY_MAX=${SWARMBOOT_RETRY_MAX:-30}
DOCKER_WAIT=${SWARMBOOT_DOCKER_WAIT:-90}
MODE=${SWARMBOOT_MODE:-}
ROLE=${SWARMBOOT_ROLE:-}
URL=${SWARMBOOT_URL:-}

log() { printf 'swarmboot: %s\n' "$*" >&2; }
die() { _code=$1; shift; log "$*"; exit "$_code"; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/swarmboot.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

is_uint() { case $1 in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }

# ---- docker ----------------------------------------------------------------

docker_info() { $DOCKER info --format "$1" 2>/dev/null || true; }
node_state() { docker_info '{{.Swarm.LocalNodeState}}'; }
node_id() { docker_info '{{.Swarm.NodeID}}'; }

wait_docker() {
  _n=0
  until $DOCKER info >/dev/null 2>&1; do
    _n=$((_n + 1))
    [ "$_n" -lt "$DOCKER_WAIT" ] || die 3 "dockerd did not answer after $_n tries"
    $SLEEP 2
  done
}

# try_join TOKEN MANAGERS: join through the first manager (of a comma list)
# that accepts us. A join that timed out may still complete in the
# background (state active) or linger as pending, which blocks the next try.
try_join() {
  _tok=$1
  _old_ifs=$IFS
  IFS=,
  set -f
  # shellcheck disable=SC2086
  set -- $2
  set +f
  IFS=$_old_ifs
  for _m in "$@"; do
    [ -n "$_m" ] || continue
    if $DOCKER swarm join --token "$_tok" --advertise-addr "$ADDR" "$_m" >/dev/null; then
      log "joined the swarm as $ROLE via $_m"
      return 0
    fi
    case $(node_state) in
      active) log "joined the swarm as $ROLE via $_m (completed in the background)"; return 0 ;;
      pending) $DOCKER swarm leave --force >/dev/null 2>&1 || true ;;
    esac
    log "join via $_m failed"
  done
  return 1
}

# ---- rendezvous API --------------------------------------------------------

# Double-quoted string in a curl config file.
cfg_quote() { printf '%s' "$1" | sed 's/[\\"]/\\&/g'; }

# api ENDPOINT MAXTIME name=value...: POST form fields to
# $SWARMBOOT_URL/api/swarm/ENDPOINT, body to $TMP/body; prints the HTTP
# status (000 when there was no answer).
api() {
  _ep=$1 _mt=$2
  shift 2
  : >"$TMP/body"
  {
    printf 'header = "Authorization: Bearer %s"\n' "$(cfg_quote "$SWARMBOOT_SECRET")"
    printf 'header = "X-Swarmboot-Mac: %s"\n' "$(cfg_quote "$SWARMBOOT_MAC")"
    for _kv in "$@"; do
      printf 'data-urlencode = "%s"\n' "$(cfg_quote "$_kv")"
    done
  } | $CURL -sS -K - --max-time "$_mt" -o "$TMP/body" -w '%{http_code}' "$URL/api/swarm/$_ep" || true
}

# report EVENT MAXTIME [name=value...]: tell the server, best effort.
report() {
  _ev=$1 _rmt=$2
  shift 2
  _rst=$(api report "$_rmt" "event=$_ev" "$@")
  case $_rst in
    2??) return 0 ;;
    *) log "report event=$_ev failed (HTTP $_rst); continuing"; return 1 ;;
  esac
}

refused() {
  _why=$(head -n 1 "$TMP/body" 2>/dev/null | tr -cd '[:print:]' | cut -c 1-200)
  die 1 "rendezvous refused (HTTP $1${_why:+: $_why}): check the machine's swarm secret and that $SWARMBOOT_MAC is listed"
}

# ---- join ------------------------------------------------------------------

advertise_addr() {
  if [ -n "${SWARMBOOT_ADVERTISE_ADDR:-}" ]; then
    printf '%s\n' "$SWARMBOOT_ADVERTISE_ADDR"
    return
  fi
  # The address this node reaches swarmboot from is the one the other
  # blades (on the same segment) can reach it at.
  _h=${URL#*://}
  _h=${_h%%/*}
  _h=${_h##*@}
  _h=${_h%:*}
  case $_h in
    *[!0-9.]*) _h=$(getent ahostsv4 "$_h" 2>/dev/null | awk 'NR == 1 { print $1 }') ;;
  esac
  [ -n "$_h" ] || return 0
  ip -4 route get "$_h" 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n 1
}

join_static() {
  [ -n "${SWARMBOOT_MANAGERS:-}" ] || die 2 "static mode without SWARMBOOT_MANAGERS"
  [ -n "${SWARMBOOT_TOKEN:-}" ] || die 2 "static mode without SWARMBOOT_TOKEN"
  try_join "$SWARMBOOT_TOKEN" "$SWARMBOOT_MANAGERS" || die 3 "no manager of $SWARMBOOT_MANAGERS accepted the join"
  report joined 10 "node_id=$(node_id)" "addr=$ADDR" || true
}

# The first manager publishes the tokens; nobody else can join until it
# has, so this report is retried rather than best effort.
report_init() {
  _wtok=$($DOCKER swarm join-token -q worker 2>/dev/null) || die 3 "cannot read the worker join token after init"
  _mtok=$($DOCKER swarm join-token -q manager 2>/dev/null) || die 3 "cannot read the manager join token after init"
  _id=$(node_id)
  _d=1
  _try=1
  while :; do
    _st=$(api report 30 event=init "node_id=$_id" "addr=$ADDR" "worker_token=$_wtok" "manager_token=$_mtok")
    case $_st in
      2??) log "swarm created (node $_id); tokens reported"; return 0 ;;
      403 | 404) refused "$_st" ;;
    esac
    [ "$_try" -lt 10 ] || die 3 "could not report the new swarm to $URL (HTTP $_st)"
    log "report event=init failed (HTTP $_st); retrying in ${_d}s"
    $SLEEP "$_d"
    _try=$((_try + 1))
    _d=$((_d * 2))
    [ "$_d" -le "$RETRY_MAX" ] || _d=$RETRY_MAX
  done
}

join_automatic() {
  _delay=1
  while :; do
    _st=$(api join 30 "role=$ROLE" "hostname=${SWARMBOOT_HOSTNAME:-}" "addr=$ADDR")
    _pause=$_delay
    case $_st in
      200)
        action='' token='' managers='' retry=''
        while IFS='=' read -r _k _v || [ -n "$_k" ]; do
          _v=${_v%"$(printf '\r')"}
          case $_k in
            action) action=$_v ;;
            token) token=$_v ;;
            managers) managers=$_v ;;
            retry) retry=$_v ;;
          esac
        done <"$TMP/body"
        case $action in
          init)
            if $DOCKER swarm init --advertise-addr "$ADDR" >/dev/null; then
              report_init
              return 0
            fi
            log "docker swarm init failed; asking again"
            ;;
          join)
            if [ -z "$token" ] || [ -z "$managers" ]; then
              log "server said join without token or managers; asking again"
            elif try_join "$token" "$managers"; then
              report joined 10 "node_id=$(node_id)" "addr=$ADDR" || true
              return 0
            else
              log "no manager of $managers accepted the join; asking again"
            fi
            ;;
          wait)
            if is_uint "$retry" && [ "$retry" -gt 0 ]; then _pause=$retry; fi
            log "swarm not ready yet; asking again in ${_pause}s"
            ;;
          *) log "unexpected answer from the server (action=$action); asking again" ;;
        esac
        ;;
      403 | 404) refused "$_st" ;;
      *) log "rendezvous at $URL failed (HTTP $_st); retrying in ${_pause}s" ;;
    esac
    $SLEEP "$_pause"
    _delay=$((_delay * 2))
    [ "$_delay" -le "$RETRY_MAX" ] || _delay=$RETRY_MAX
  done
}

do_join() {
  wait_docker
  if [ "$(node_state)" = active ]; then
    log "already in the swarm; nothing to do"
    if [ "$MODE" = automatic ]; then
      report active 10 "node_id=$(node_id)" "addr=$ADDR" || true
    fi
    exit 0
  fi
  case $MODE in
    static) join_static ;;
    automatic) join_automatic ;;
  esac
}

# ---- leave -----------------------------------------------------------------

# Managers other than this node that are up and part of the raft quorum.
other_managers() {
  _self=$1
  $DOCKER node ls --filter role=manager --format '{{.ID}} {{.Self}} {{.Status}} {{.ManagerStatus}}' 2>/dev/null |
    awk -v self="$_self" '$1 != self && $2 != "true" && $3 == "Ready" && ($4 == "Leader" || $4 == "Reachable") { n++ } END { print n + 0 }'
}

leave_manager() {
  _id=$(node_id)
  _others=$(other_managers "$_id")
  if [ "$_others" -gt 0 ]; then
    # Leaving as a manager would shrink the raft group without telling it;
    # a demoted node leaves as a plain worker and the quorum stays sound.
    $DOCKER node demote "$_id" >/dev/null || die 3 "docker node demote $_id failed"
    _n=0
    while [ "$(docker_info '{{.Swarm.ControlAvailable}}')" != false ]; do
      _n=$((_n + 1))
      [ "$_n" -lt 30 ] || die 3 "still a manager 60s after the demote; not leaving"
      $SLEEP 2
    done
    $DOCKER swarm leave >/dev/null || die 3 "docker swarm leave failed"
    log "demoted and left the swarm ($_others other managers remain)"
  elif [ "${SWARMBOOT_LEAVE_LAST_MANAGER:-0}" = 1 ]; then
    $DOCKER swarm leave --force >/dev/null || die 3 "docker swarm leave --force failed"
    log "last manager left the swarm (leave_last_manager is set): the swarm is gone"
  else
    log "last manager: staying in the swarm so it is not discarded (set leave_last_manager to change this)"
    exit 0
  fi
}

do_leave() {
  ADDR=${SWARMBOOT_ADVERTISE_ADDR:-}
  report leaving 5 "node_id=$(node_id)" || true
  _state=$(node_state)
  if [ "$_state" != active ]; then
    log "not in a swarm (state: ${_state:-unknown}); nothing to leave"
    exit 0
  fi
  case $ROLE in
    worker)
      $DOCKER swarm leave >/dev/null || die 3 "docker swarm leave failed"
      log "left the swarm"
      ;;
    manager) leave_manager ;;
  esac
  if [ "$MODE" = automatic ]; then report left 5 || true; fi
}

# ---- main ------------------------------------------------------------------

case $MODE in automatic | static) ;; *) die 2 "SWARMBOOT_MODE must be automatic or static, not '$MODE'" ;; esac
case $ROLE in manager | worker) ;; *) die 2 "SWARMBOOT_ROLE must be manager or worker, not '$ROLE'" ;; esac
[ -n "$URL" ] || die 2 "SWARMBOOT_URL is not set"
[ -n "${SWARMBOOT_MAC:-}" ] || die 2 "SWARMBOOT_MAC is not set"
[ -n "${SWARMBOOT_SECRET:-}" ] || die 2 "SWARMBOOT_SECRET is not set"
is_uint "$RETRY_MAX" && [ "$RETRY_MAX" -ge 1 ] || RETRY_MAX=30
is_uint "$DOCKER_WAIT" && [ "$DOCKER_WAIT" -ge 1 ] || DOCKER_WAIT=90

case ${1:-} in
  join)
    ADDR=$(advertise_addr)
    [ -n "$ADDR" ] || die 3 "cannot tell this node's address towards $URL; set SWARMBOOT_ADVERTISE_ADDR"
    do_join
    ;;
  leave) do_leave ;;
  *) die 2 "usage: swarm.sh join|leave" ;;
esac
