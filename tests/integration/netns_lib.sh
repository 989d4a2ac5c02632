# Shared by the network-namespace test scripts (sourced, not run:
# test_netns.sh, test_fault_netns.sh): two "hosts", namespaces A and B
# joined by a veth pair, each with one address of a private /24 (nothing
# is added to any other namespace; lo is up in both); kvxd started in one
# of them over UCX TCP on its veth end; processes stopped by PID (TERM,
# then KILL); a trap that stops them (the script's netns_stop), deletes
# both namespaces (which removes the veth pair) and the private $tmp;
# ok/bad counting with the seconds since the start, and json.
# Call netns_init first, then netns_hosts; end with netns_end.
# shellcheck shell=bash disable=SC2034 # variables set for the sourcing script

# skip WHY: exit 77 with a message.
skip() {
  echo "$NETNS_NAME: skipping: $*"
  exit 77
}

# netns_init NAME TAG OCTET: NAME starts every message; namespaces
# kvx-TAGa-PID and kvx-TAGb-PID, veth ends kvxTAGaPID and kvxTAGbPID
# (interface names: at most 15 characters), addresses 10.OCTET.x.1 (A) and
# .2 (B) of a random x; sets NSA NSB VA VB IPA IPB and $tmp, and the
# traps. Skips when not root or without ip or python3.
netns_init() {
  NETNS_NAME=$1
  [ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces)"
  command -v ip >/dev/null 2>&1 || skip "iproute2's ip is not installed"
  command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
  NSA=kvx-$2a-$$
  NSB=kvx-$2b-$$
  VA=kvx$2a$$
  VB=kvx$2b$$
  local net=10.$3.$((RANDOM % 200 + 20))
  IPA=$net.1
  IPB=$net.2
  T0=${EPOCHREALTIME/./} # microseconds (bash 5)
  tmp=$(mktemp -d "/tmp/kvx-$NETNS_NAME.XXXXXX")
  ns_made=()
  fails=0
  trap netns_cleanup EXIT
  trap 'exit 1' INT TERM HUP
}

# elapsed: seconds since netns_init, one decimal
elapsed() {
  local us=$((${EPOCHREALTIME/./} - T0))
  printf '%d.%d' $((us / 1000000)) $((us / 100000 % 10))
}
ok() { echo "ok   [$(elapsed)] $*"; }
bad() {
  echo "FAIL [$(elapsed)] $*"
  fails=$((fails + 1))
}
die() {
  echo "FAIL [$(elapsed)] $*"
  exit 1
}

# alive PID: the process exists and is not a zombie.
alive() {
  [ -r "/proc/$1/stat" ] || return 1
  [ "$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# stop_pid PID NAME: TERM, up to 10 s, then KILL; reaps it. Sets stop_rc
# (empty when PID is).
stop_pid() {
  stop_rc=
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null
  for _ in $(seq 100); do
    alive "$1" || break
    sleep 0.1
  done
  if alive "$1"; then
    echo "$NETNS_NAME: $2 (pid $1) ignored SIGTERM for 10 s: SIGKILL"
    kill -KILL "$1" 2>/dev/null
  fi
  wait "$1" 2>/dev/null
  stop_rc=$?
}

# The EXIT trap: the script's processes (netns_stop, when it defines one),
# then both namespaces and $tmp.
netns_cleanup() {
  if declare -F netns_stop >/dev/null; then netns_stop; fi
  for ns in "${ns_made[@]}"; do
    ip netns del "$ns" 2>/dev/null ||
      echo "$NETNS_NAME: could not delete namespace $ns"
  done
  rm -rf "$tmp"
}

# json FILE EXPR: a python expression over the first JSON object of FILE
# (j); one line: the value, or the error. (UCX may print warnings on
# stdout after kvx's object, e.g. "object ... was not returned to mpool".)
json() {
  python3 -c '
import json, sys
try:
    line = next(l for l in open(sys.argv[1]) if l.startswith("{"))
    j = json.loads(line)
    print(eval(sys.argv[2]))
except Exception as e:
    print("<%s: %s>" % (type(e).__name__, e))' "$1" "$2"
}

# link_up: brings both veth ends up and waits (10 s) for both carriers;
# UCX ignores a device that is not operationally up.
link_up() {
  ip -n "$NSA" link set "$VA" up || return 1
  ip -n "$NSB" link set "$VB" up || return 1
  for _ in $(seq 100); do
    ip -n "$NSA" -o link show dev "$VA" | grep -q 'state UP' &&
      ip -n "$NSB" -o link show dev "$VB" | grep -q 'state UP' && return 0
    sleep 0.1
  done
  return 1
}

# netns_hosts: both namespaces, the veth pair (created inside A with its
# peer end directly in B: never in this namespace), the addresses, lo and
# the link up. Skips when namespaces or veth cannot be created.
netns_hosts() {
  ip netns add "$NSA" 2>"$tmp/err" || skip "ip netns add failed: $(cat "$tmp/err")"
  ns_made+=("$NSA")
  ip netns add "$NSB" 2>"$tmp/err" || skip "ip netns add failed: $(cat "$tmp/err")"
  ns_made+=("$NSB")
  ip -n "$NSA" link add "$VA" type veth peer name "$VB" netns "$NSB" 2>"$tmp/err" ||
    skip "cannot create a veth pair: $(cat "$tmp/err")"
  ip -n "$NSA" addr add "$IPA/24" dev "$VA" || die "address $IPA on $VA"
  ip -n "$NSB" addr add "$IPB/24" dev "$VB" || die "address $IPB on $VB"
  for ns in "$NSA" "$NSB"; do ip -n "$ns" link set lo up || die "lo up in $ns"; done
  link_up || die "the veth pair is not up after 10 s"
  echo "$NETNS_NAME: $NSA ($VA $IPA) <-> $NSB ($VB $IPB)"
}

# start_kvxd NS DEV NAME [ARGS]: $KVXD --node_id NAME in namespace NS over
# UCX TCP on DEV only, in the background (stdout and stderr in
# $tmp/NAME.out, .err); waits up to 15 s for its first "kvxd: " line. Sets
# started_pid and ADDR (from "kvxd: listening on ADDR"); on failure prints
# its stderr, sets start_err and returns 1.
start_kvxd() {
  local ns=$1 dev=$2 name=$3 line=
  shift 3
  ip netns exec "$ns" env UCX_TLS=tcp UCX_NET_DEVICES="$dev" \
    "$KVXD" --node_id "$name" --ucx_tls tcp "$@" \
    >"$tmp/$name.out" 2>"$tmp/$name.err" &
  started_pid=$!
  for _ in $(seq 150); do # 15 s
    line=$(grep -m1 '^kvxd: ' "$tmp/$name.out")
    [ -n "$line" ] && break
    alive "$started_pid" || break
    sleep 0.1
  done
  ADDR=${line#kvxd: listening on }
  [ -n "$line" ] && return 0
  sed 's/^/    /' "$tmp/$name.err"
  if alive "$started_pid"; then
    start_err="$name did not print its address in 15 s"
  else
    wait "$started_pid"
    start_err="$name exited ($?) before listening"
  fi
  return 1
}

# netns_end: no sanitizer report in any $tmp/*.err, the count of failures;
# returns 0 when there was none.
netns_end() {
  if grep -qE 'Sanitizer|runtime error:' "$tmp"/*.err; then
    bad "sanitizer report"
    grep -hE -A5 'Sanitizer|runtime error:' "$tmp"/*.err
  fi
  echo "$NETNS_NAME: $fails failure(s) in $(elapsed) s"
  [ "$fails" -eq 0 ]
}
