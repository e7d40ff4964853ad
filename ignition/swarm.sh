#!/bin/sh
# swarmboot: join the Docker swarm at boot, leave it at shutdown, and (on
# the swarm leader) keep it in the shape the profiles describe.
#
# Installed by swarmboot's Ignition config as /opt/swarmboot/swarm.sh and run
# by swarmboot-swarm.service: `swarm.sh join` (ExecStart), `swarm.sh leave`
# (ExecStop); on managers in automatic mode also by
# swarmboot-reconcile.service (every 30 s from its timer): `swarm.sh
# reconcile`. All read /etc/swarmboot/swarm.env as their environment:
#   SWARMBOOT_URL SWARMBOOT_MAC SWARMBOOT_SECRET SWARMBOOT_ROLE (manager|worker)
#   SWARMBOOT_HOSTNAME SWARMBOOT_MODE (automatic|static)
#   automatic: SWARMBOOT_LEAVE_LAST_MANAGER (0|1)
#   static:    SWARMBOOT_MANAGERS (host:port,...) SWARMBOOT_TOKEN
# Overridable (tests): DOCKER, CURL, SWARMBOOT_SLEEP, SWARMBOOT_RETRY_MAX,
#   SWARMBOOT_ADVERTISE_ADDR, SWARMBOOT_DOCKER_WAIT (tries, 2 s apart),
#   SWARMBOOT_NOW (epoch seconds, for reconcile's remove_down_after).
#
# Exit codes (the unit's RestartPreventExitStatus= lists 1 and 2):
#   0 done; 1 refused by the server (403/404: wrong secret or unknown
#   machine, retrying cannot help); 2 usage or configuration error;
#   3 transient failure (dockerd not answering, no manager accepted us,
#   a reconcile step failed), which systemd (or the next timer run) retries.
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

CR=$(printf '\r')

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

# The first line of the last reply, printable characters only: the
# server's reason, never a token (replies that carry one are not shown).
body_line() { head -n 1 "$TMP/body" 2>/dev/null | tr -cd '[:print:]' | cut -c 1-200; }

refused() {
  _why=$(body_line)
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
# has, so this report is retried rather than best effort. Returns 1 when
# the server refused this swarm (and it was left).
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
      409)
        # This node's init lease ran out and another manager took it over
        # (or a swarm was adopted meanwhile): keeping this swarm would split
        # the cluster in two, so it goes and the node joins the chosen one.
        log "the server refused this swarm ($(body_line)); leaving it"
        $DOCKER swarm leave --force >/dev/null || die 3 "docker swarm leave --force of the refused swarm failed"
        return 1
        ;;
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
          _v=${_v%"$CR"}
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
              if report_init; then return 0; fi
              log "asking again to join the cluster's swarm"
            else
              log "docker swarm init failed; asking again"
            fi
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

# ---- reconcile (the leader, from swarmboot-reconcile.timer) ------------------

# One line per node. UpdatedAt is the last change swarmkit made to the node
# object; marking it down is one, so for a Down node it is when it went down
# (or later, if someone changed it since: the clock then restarts, which
# errs on the side of keeping it).
NODE_FMT='{{.ID}} {{.Description.Hostname}} {{.Status.State}} {{.Spec.Role}} {{.UpdatedAt.Unix}} {{if .ManagerStatus}}{{.ManagerStatus.Reachability}} {{.ManagerStatus.Addr}}{{else}}- -{{end}}'
LABELS_FMT='{{range $k, $v := .Spec.Labels}}{{$k}}={{$v}}{{println}}{{end}}'

is_leader() {
  [ "$($DOCKER node inspect self --format '{{.ManagerStatus.Leader}}' 2>/dev/null || true)" = true ]
}

# remove_node ID ROLE. A Down manager is still a raft member and counts
# against the quorum; it has to be demoted before it can be removed.
remove_node() {
  if [ "$2" = manager ]; then
    $DOCKER node demote "$1" >/dev/null || return 1
  fi
  $DOCKER node rm "$1" >/dev/null
}

# apply_labels ID HOSTNAME: add the labels the profiles give HOSTNAME that
# the node lacks or holds with another value, in one `docker node update`.
# Labels the profiles do not name are left alone (set by hand or by another
# tool); removing a label from a profile therefore does not remove it from
# the node.
apply_labels() {
  _lid=$1 _lhost=$2
  awk -v h="$_lhost" 'index($0, h " ") == 1 { print substr($0, length(h) + 2) }' "$TMP/labels" >"$TMP/want"
  [ -s "$TMP/want" ] || return 0
  $DOCKER node inspect --format "$LABELS_FMT" "$_lid" >"$TMP/have" 2>/dev/null || return 1
  set --
  while IFS= read -r _kv <&4; do
    grep -qxF -e "$_kv" "$TMP/have" || set -- "$@" --label-add "$_kv"
  done 4<"$TMP/want"
  [ $# -gt 0 ] || return 0
  $DOCKER node update "$@" "$_lid" >/dev/null || return 1
  LABELED=$((LABELED + 1))
  log "set $(($# / 2)) label(s) on $_lhost ($_lid)"
}

# report_tokens EVENT [name=value...]: hand the current tokens to the
# server (event=rotated after a rotation, event=tokens when the server's
# were stale). Retried: until it lands, new nodes get tokens that no longer
# work.
report_tokens() {
  _tev=$1
  shift
  _try=1
  _d=1
  while :; do
    _tst=$(api report 30 "event=$_tev" "node_id=$SELF" "worker_token=$WTOK" "manager_token=$MTOK" "$@")
    case $_tst in
      2??) log "join tokens handed to the server (event=$_tev)"; return 0 ;;
      403 | 404) refused "$_tst" ;;
      409) log "the server refused the join tokens: $(body_line)"; return 1 ;;
    esac
    [ "$_try" -lt 3 ] || { log "could not hand the join tokens to the server (HTTP $_tst)"; return 1; }
    $SLEEP "$_d"
    _try=$((_try + 1))
    _d=$((_d * 2))
  done
}

do_reconcile() {
  [ "$MODE" = automatic ] || die 2 "reconcile needs SWARMBOOT_MODE=automatic"
  [ "$ROLE" = manager ] || die 2 "reconcile runs on managers only"
  $DOCKER info >/dev/null 2>&1 || die 3 "dockerd is not answering"
  _state=$(node_state)
  if [ "$_state" != active ]; then
    log "not in a swarm (state: ${_state:-unknown}); nothing to reconcile"
    exit 0
  fi
  # Every manager's timer fires; only the leader acts, so two managers
  # never remove nodes or rotate tokens at the same time.
  is_leader || exit 0

  _st=$(api desired 30)
  case $_st in
    200) ;;
    403 | 404) refused "$_st" ;;
    *) die 3 "cannot fetch the desired state from $URL (HTTP $_st)" ;;
  esac
  remove_after=never rotate=none want_sum=''
  : >"$TMP/labels"
  while IFS= read -r _line || [ -n "$_line" ]; do
    _line=${_line%"$CR"}
    case $_line in
      remove_down_after=*) remove_after=${_line#*=} ;;
      rotate=*) rotate=${_line#*=} ;;
      tokens_sha256=*) want_sum=${_line#*=} ;;
      label=*) printf '%s\n' "${_line#label=}" >>"$TMP/labels" ;;
    esac
  done <"$TMP/body"
  [ "$remove_after" = never ] || is_uint "$remove_after" || die 3 "the server sent remove_down_after=$remove_after"
  case $rotate in none | worker | manager | both) ;; *) die 3 "the server sent rotate=$rotate" ;; esac

  SELF=$(node_id)
  _ids=$($DOCKER node ls -q 2>/dev/null) || die 3 "docker node ls failed"
  # shellcheck disable=SC2086
  $DOCKER node inspect --format "$NODE_FMT" $_ids >"$TMP/nodes" 2>/dev/null || die 3 "docker node inspect failed"
  _now=${SWARMBOOT_NOW:-$(date +%s)}
  awk '$3 == "ready" { print $2 }' "$TMP/nodes" >"$TMP/ready"
  LABELED=0 FAILED=0 KEPT=0 GONE=0 REMOVED=''

  # Stale nodes. Only state "down" counts (not unknown or disconnected),
  # and never this node.
  while read -r _id _host _nst _role _upd _rest <&3; do
    [ "$_nst" = down ] && [ "$_id" != "$SELF" ] || continue
    _why=''
    if grep -qxF -e "$_host" "$TMP/ready"; then
      _why="a Ready node has its hostname (it rebooted without its swarm state)"
    elif [ "$remove_after" != never ] && is_uint "$_upd" && [ $((_now - _upd)) -ge "$remove_after" ]; then
      _why="down for $((_now - _upd))s, remove_down_after is ${remove_after}s"
    fi
    if [ -z "$_why" ]; then
      KEPT=$((KEPT + 1))
    elif remove_node "$_id" "$_role"; then
      log "removed $_role $_host ($_id): $_why"
      REMOVED=${REMOVED:+$REMOVED,}$_host/$_id
      GONE=$((GONE + 1))
    else
      log "could not remove $_role $_host ($_id), which is stale: $_why"
      FAILED=$((FAILED + 1))
    fi
  done 3<"$TMP/nodes"

  while read -r _id _host _nst _rest <&3; do
    [ "$_nst" = ready ] || continue
    apply_labels "$_id" "$_host" || { log "could not set labels on $_host ($_id)"; FAILED=$((FAILED + 1)); }
  done 3<"$TMP/nodes"

  _rotated=''
  for _r in worker manager; do
    case $rotate in "$_r" | both) ;; *) continue ;; esac
    # stdout is the new token: not for the journal.
    if $DOCKER swarm join-token --rotate -q "$_r" >/dev/null; then
      _rotated=${_rotated:+$_rotated,}$_r
      log "rotated the $_r join token"
    else
      log "could not rotate the $_r join token"
      FAILED=$((FAILED + 1))
    fi
  done
  WTOK=$($DOCKER swarm join-token -q worker 2>/dev/null) || WTOK=''
  MTOK=$($DOCKER swarm join-token -q manager 2>/dev/null) || MTOK=''
  if [ -z "$WTOK" ] || [ -z "$MTOK" ]; then
    log "cannot read the join tokens"
    FAILED=$((FAILED + 1))
  elif [ -n "$_rotated" ]; then
    report_tokens rotated "rotated=$_rotated" || FAILED=$((FAILED + 1))
  elif [ "$(printf '%s\n%s' "$WTOK" "$MTOK" | sha256sum | cut -d ' ' -f 1)" != "$want_sum" ]; then
    # The server's tokens are not the swarm's: rotated by hand, or the
    # server lost its state and is about to elect a second first manager.
    report_tokens tokens || FAILED=$((FAILED + 1))
  fi

  _mgrs=$(awk '$3 == "ready" && $4 == "manager" && $6 == "reachable" { printf "%s%s", s, $7; s = "," } END { print "" }' "$TMP/nodes")
  _n=$(($(awk 'END { print NR }' "$TMP/nodes") - GONE))
  report reconcile 10 "node_id=$SELF" "managers=$_mgrs" "nodes=$_n" "labeled=$LABELED" "removed=$REMOVED" "kept_down=$KEPT" "failed=$FAILED" || true
  if [ "$LABELED" -gt 0 ] || [ "$GONE" -gt 0 ] || [ "$FAILED" -gt 0 ]; then
    log "reconciled: $_n node(s), labels set on $LABELED, removed $GONE, kept $KEPT down node(s), $FAILED failure(s)"
  fi
  [ "$FAILED" -eq 0 ] || exit 3
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
  reconcile) do_reconcile ;;
  *) die 2 "usage: swarm.sh join|leave|reconcile" ;;
esac
