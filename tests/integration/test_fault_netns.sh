#!/usr/bin/env bash
# Faults that need a real link (suite 'fault'): network namespaces A and B
# joined by a veth pair, each with one address of a private /24. The decode
# kvxd runs in B, a prefill kvxd in A; `kvx send` runs in A, either through
# the prefill kvxd (--via its engine socket) or with its own node, over UCX
# TCP on the veth only, and always with --check-at (every block collected
# at the decode kvxd and compared byte for byte). See "Link failures" in
# docs/architecture.md for the policy asserted here.
#  - baseline: exact dedupe, every checksum ok;
#  - link down 5 s (longer than 3 heartbeats) with transfers in flight
#    (A's egress limited by tbf so that they take a while): every transfer
#    either completes with every checksum ok or fails with a named status by
#    its deadline (the direct sender's 2.5 s deadline ends inside the
#    outage: it must end with "deadline passed" within 3.5 s, not when the
#    peer is declared down; the --via sender's 20 s one ends with "peer
#    down"); the decode kvxd declares its peers down; no
#    block leaked on either kvxd (available blocks = free + cached return
#    to the pool's size, no lease active or fenced, no transfer running);
#    new transfers after the link returns succeed with exact dedupe;
#  - link down 1 s (shorter than 3 heartbeats): the same rules;
#  - 1% and 5% packet loss in A (nftables `numgen random` drop rules on A's
#    veth, input and output; netem is absent in this kernel): every
#    transfer completes, every checksum ok, exact dedupe, packets were
#    dropped, nothing leaked (skipped with a message without `nft`);
#  - both kvxd exit 0 on SIGTERM.
# Exits 77 (skip) when not root, without `ip`/python3, or when namespaces
# or veth cannot be created. A trap stops every process it started by PID
# (TERM, then KILL) and deletes both namespaces (and with them the veth
# pair and the nftables table).
# usage: test_fault_netns.sh KVXD KVX
# shellcheck disable=SC2015 # "A && ok ... || bad ...": ok and echo succeed
set -uo pipefail
KVXD=$1
KVX=$2
export UCX_MEM_MALLOC_HOOKS=no UCX_MEM_MMAP_HOOK_MODE=none

# shellcheck source=tests/integration/netns_lib.sh
. "$(dirname "$0")/netns_lib.sh"
netns_init fault_netns f 214
DSOCK=$tmp/decode.sock
PSOCK=$tmp/prefill.sock
decode_pid=
prefill_pid=
senders=() # background kvx send (their timeout wrappers)

netns_stop() {
  for p in "${senders[@]}"; do stop_pid "$p" "kvx send"; done
  stop_pid "$prefill_pid" "prefill kvxd"
  stop_pid "$decode_pid" "decode kvxd"
}

netns_hosts

# --- decode kvxd in B, prefill kvxd in A (the tiny preset's layout) --------
# kvx --model tiny: 4 layers, K+V, 2 kv heads x 64, bf16, 16-token blocks.
# hold_ms 5000: blocks of a request whose CommitAck the outage swallowed
# (committed there, failed here, never collected) are released after 5 s.
LAYOUT=(--num_layers 4 --kv_parts 2 --kv_heads 2 --head_dim 64
  --block_tokens 16 --dtype_size 2 --pool_blocks 2048)

# start_fault_kvxd NS DEV NAME LISTEN SOCKET [ARGS]: netns_lib.sh's
# start_kvxd with the layout, LISTEN and the engine socket SOCKET
start_fault_kvxd() {
  start_kvxd "$1" "$2" "$3" --listen "$4" --socket "$5" "${LAYOUT[@]}" \
    --log_level info "${@:6}"
}
start_fault_kvxd "$NSB" "$VB" decode-fault "$IPB:0" "$DSOCK" --hold_ms 5000 ||
  { decode_pid=$started_pid; die "decode kvxd did not start: $start_err"; }
decode_pid=$started_pid
DADDR=$ADDR
case $DADDR in
  "$IPB":*) ok "decode kvxd (pid $decode_pid) listening on $DADDR in $NSB" ;;
  *) die "decode kvxd listens on '$DADDR', not on $IPB" ;;
esac
start_fault_kvxd "$NSA" "$VA" prefill-fault "" "$PSOCK" ||
  { prefill_pid=$started_pid; die "prefill kvxd did not start: $start_err"; }
prefill_pid=$started_pid
ok "prefill kvxd (pid $prefill_pid) in $NSA, engines at $PSOCK"

# pool NAME SOCKET: kvx pool --json of that kvxd into $tmp/pool-NAME.json
pool() {
  timeout -k 5 20 "$KVX" --json pool --socket "$2" --timeout-ms 5000 \
    >"$tmp/pool-$1.json" 2>"$tmp/pool-$1.err"
}
# No block leaked: nothing reserved, pinned or fenced, no transfer running.
SETTLED='j["ok"] and j["stats"]["leases_active"] == 0 and j["stats"]["leases_fenced"] == 0 and j["stats"]["blocks_free"] + j["stats"]["blocks_cached"] == j["stats"]["blocks_total"] == 2048 and j["stats"]["counters"]["xfers.sending"] == 0 and j["stats"]["counters"]["xfers.receiving"] == 0'
POOLSUM='(j["stats"]["blocks_total"], j["stats"]["blocks_free"], j["stats"]["blocks_cached"], j["stats"]["leases_active"], j["stats"]["leases_fenced"], j["stats"]["counters"]["xfers.sending"], j["stats"]["counters"]["xfers.receiving"])'

# settled WHAT: both pools back to their start within 20 s (hold_ms is 5 s)
settled() {
  local name sock t
  for name in decode prefill; do
    sock=$DSOCK
    [ $name = prefill ] && sock=$PSOCK
    for t in $(seq 40); do
      pool "$name" "$sock" && [ "$(json "$tmp/pool-$name.json" "$SETTLED")" = True ] && break
      sleep 0.5
    done
    if [ "$(json "$tmp/pool-$name.json" "$SETTLED")" = True ]; then
      ok "$1: $name kvxd: no block leaked (2048 available, no lease, no transfer) after $(((t - 1) * 5 / 10)) s"
    else
      bad "$1: $name kvxd: (total, free, cached, leases, fenced, sending, receiving) = $(json "$tmp/pool-$name.json" "$POOLSUM")"
      sed 's/^/    /' "$tmp/pool-$name.err"
    fi
  done
}

# send_start NAME DIRECT|VIA SECONDS [ARGS]: kvx send from A to the decode
# kvxd in the background (its timeout wrapper's pid in started_pid),
# checked at the decode kvxd; JSON in NAME.json.
send_start() {
  local name=$1 how=$2 limit=$3 via=()
  shift 3
  [ "$how" = VIA ] && via=(--via "$PSOCK")
  timeout -k 5 "$limit" ip netns exec "$NSA" env UCX_TLS=tcp \
    UCX_NET_DEVICES="$VA" "$KVX" --json send "$DADDR" --model tiny --tls tcp \
    --check-at "$DSOCK" "${via[@]}" "$@" \
    >"$tmp/$name.json" 2>"$tmp/$name.err" &
  started_pid=$!
}
# send_wait NAME PID: its exit status into NAME.rc
send_wait() {
  wait "$2"
  echo $? >"$tmp/$1.rc"
}
# send NAME DIRECT|VIA SECONDS [ARGS]: send_start, then send_wait
send() {
  send_start "$@"
  senders=("$started_pid")
  send_wait "$1" "$started_pid"
  senders=()
}

# check_exact NAME REQUESTS PROMPT SHARED: exit 0, every request ok, every
# checksum ok, every block identical at the decode kvxd, exact dedupe
check_exact() {
  local name=$1 r=$2 nb=$(($3 / 16)) sb=$(($4 / 16)) f=$tmp/$1.json rc
  local uniq want
  rc=$(cat "$tmp/$name.rc")
  uniq=$((sb + r * (nb - sb)))
  want="($((r * nb)), $uniq, $uniq, $(((r - 1) * sb)))"
  if [ "$rc" -eq 0 ]; then ok "$name: kvx send exits 0"; else
    bad "$name: kvx send exit $rc"; sed 's/^/    /' "$f" "$tmp/$name.err"
  fi
  [ "$(json "$f" "j['ok'] and len(j['requests']) == $r and all(q['ok'] and q['checksum'] == 'ok' and q['check_bad_blocks'] == 0 for q in j['requests']) and j['totals']['checked_blocks'] == $((r * nb)) and j['totals']['check_bad_blocks'] == 0")" = True ] &&
    ok "$name: every request ok, every checksum ok, $((r * nb)) blocks identical at the decode kvxd" ||
    { bad "$name: checksums"; sed 's/^/    /' "$f"; }
  [ "$(json "$f" '(j["totals"]["blocks"], j["totals"]["unique_blocks"], j["totals"]["wire_blocks"], j["totals"]["hit_blocks"])')" = "$want" ] &&
    ok "$name: (blocks, distinct, sent, hits) = $want (exact dedupe)" ||
    bad "$name: (blocks, distinct, sent, hits) $(json "$f" '(j["totals"]["blocks"], j["totals"]["unique_blocks"], j["totals"]["wire_blocks"], j["totals"]["hit_blocks"])') != $want"
}

# check_outage NAME DEADLINE_MS: the sender ended (no hang), and every
# request either succeeded with every checksum ok and every block identical
# at the decode kvxd, or failed with a named status by its deadline (1 s
# margin for a busy machine). Prints what happened.
ALLOWED='("deadline passed", "peer down", "peer unreachable")'
check_outage() {
  local name=$1 dl=$2 f=$tmp/$1.json rc
  rc=$(cat "$tmp/$name.rc")
  case $rc in
    0 | 1) ok "$name: kvx send ended (exit $rc)" ;;
    *) bad "$name: kvx send exit $rc (124/137: it hung)"; sed 's/^/    /' "$f" "$tmp/$name.err"; return ;;
  esac
  [ "$(json "$f" "all((q['ok'] and q['checksum'] in ('ok', 'none-sent') and q['check_bad_blocks'] == 0) or (not q['ok'] and q['status'] in $ALLOWED and q['time_ms'] <= $dl + 1000) for q in j['requests'])")" = True ] &&
    ok "$name: each request completed with every checksum ok or failed by its $dl ms deadline" ||
    { bad "$name: a request failed otherwise or late"; sed 's/^/    /' "$f" "$tmp/$name.err"; }
  echo "     $name: $(json "$f" "', '.join('%s %.0f ms' % (q['status'], q['time_ms']) for q in j['requests'])")"
}

# has NAME EXPR: python condition over NAME.json's requests list (q)
has() { [ "$(json "$tmp/$1.json" "any($2 for q in j['requests'])")" = True ]; }

# --- baseline --------------------------------------------------------------
pool decode "$DSOCK" && [ "$(json "$tmp/pool-decode.json" '(j["stats"]["blocks_total"], j["stats"]["blocks_free"])')" = "(2048, 2048)" ] &&
  ok "decode kvxd: 2048 blocks, all free at the start" ||
  bad "decode kvxd at the start: $(json "$tmp/pool-decode.json" "$POOLSUM")"
send base VIA 60 --requests 4 --prompt 256 --shared-prefix 128 --seed fault-base
check_exact base 4 256 128

# --- link down -------------------------------------------------------------
# tbf on A's egress: a request of 8 MiB takes about a second, so transfers
# are in flight when the link goes.
TBF=0
if ip netns exec "$NSA" tc qdisc add dev "$VA" root tbf rate 100mbit \
  burst 64kb latency 50ms 2>"$tmp/err"; then
  TBF=1
else
  echo "skip: no tbf rate limit ($(cat "$tmp/err")): transfers may be over before the link goes down"
fi

# outage NAME SECONDS DIRECT_DEADLINE_MS VIA_DEADLINE_MS: a direct and a
# --via sender running while A's end of the veth is down for SECONDS.
outage() {
  local name=$1 secs=$2 ddl=$3 vdl=$4 rx0 t
  senders=()
  pool decode "$DSOCK"
  rx0=$(json "$tmp/pool-decode.json" 'j["stats"]["bytes_received"]')
  send_start "$name-direct" DIRECT 90 --requests 6 --prompt 4096 \
    --shared-prefix 1024 --deadline-ms "$ddl" --seed "$name-direct"
  senders+=("$started_pid")
  send_start "$name-via" VIA 90 --requests 6 --prompt 4096 \
    --shared-prefix 1024 --deadline-ms "$vdl" --seed "$name-via"
  senders+=("$started_pid")
  # down once data flows (at most 5 s), plus a moment
  for t in $(seq 50); do
    pool decode "$DSOCK"
    [ "$(json "$tmp/pool-decode.json" 'j["stats"]["bytes_received"]')" -gt "$rx0" ] 2>/dev/null && break
    sleep 0.1
  done
  sleep 0.5
  echo "     $name: $VA down at $(elapsed) s for $secs s"
  ip -n "$NSA" link set "$VA" down || bad "$name: cannot set $VA down"
  sleep "$secs"
  link_up && echo "     $name: link up again at $(elapsed) s" ||
    bad "$name: the veth pair is not up again after 10 s"
  send_wait "$name-direct" "${senders[0]}"
  send_wait "$name-via" "${senders[1]}"
  senders=()
  echo "     $name: senders done at $(elapsed) s"
  check_outage "$name-direct" "$ddl"
  check_outage "$name-via" "$vdl"
}

outage down5 5 2500 20000
if [ $TBF -eq 1 ]; then
  # The direct sender's transfer in flight outlives its 2.5 s deadline
  # inside the outage: it ends with "deadline passed" by its deadline.
  has down5-direct "q['status'] == 'deadline passed' and q['time_ms'] <= 3500" &&
    ok "down5-direct: a transfer in flight ended with 'deadline passed' by its deadline" ||
    bad "down5-direct: no transfer ended with 'deadline passed' within 3.5 s"
  # The --via one has 20 s: its peer is declared down first.
  has down5-via "q['status'] == 'peer down' and q['time_ms'] <= 21000" &&
    ok "down5-via: a transfer in flight ended with 'peer down' (heartbeats)" ||
    bad "down5-via: no transfer ended with 'peer down'"
fi
grep -q 'closing (peer down): nothing received' "$tmp/decode-fault.err" &&
  ok "down5: the decode kvxd declared its peers down after 3 missed heartbeats" ||
  bad "down5: the decode kvxd did not declare a peer down"
settled down5
# New transfers after the link returned: kvxd reconnects by itself.
send after5 VIA 60 --requests 4 --prompt 256 --shared-prefix 128 --seed fault-after5-via
check_exact after5 4 256 128
send after5d DIRECT 60 --requests 4 --prompt 256 --shared-prefix 128 --seed fault-after5-direct
check_exact after5d 4 256 128
settled after5

outage down1 1 20000 20000
settled down1
send after1 VIA 60 --requests 4 --prompt 256 --shared-prefix 128 --seed fault-after1-via
check_exact after1 4 256 128
[ $TBF -eq 1 ] && ip netns exec "$NSA" tc qdisc del dev "$VA" root

# --- packet loss (nftables in A) -------------------------------------------
# loss PERCENT: drop rules on A's veth, input and output, with counters
loss_on() {
  ip netns exec "$NSA" nft -f - <<EOF
table inet kvxloss {
  chain in {
    type filter hook input priority 0; policy accept;
    iifname "$VA" counter
    iifname "$VA" numgen random mod 100 < $1 counter drop
  }
  chain out {
    type filter hook output priority 0; policy accept;
    oifname "$VA" counter
    oifname "$VA" numgen random mod 100 < $1 counter drop
  }
}
EOF
}
# loss_count: "DROPPED SEEN" packets on A's veth, both directions
loss_count() {
  ip netns exec "$NSA" nft list table inet kvxloss 2>/dev/null |
    awk '/counter packets/ { for (i = 1; i < NF; i++) if ($i == "packets") v = $(i + 1)
                             if (/drop/) d += v; else n += v }
         END { print d + 0, n + 0 }'
}

if ! command -v nft >/dev/null 2>&1; then
  echo "skip: packet loss: nft (package nftables) is not installed"
elif ! loss_on 1 2>"$tmp/err"; then
  echo "skip: packet loss: nftables unavailable: $(cat "$tmp/err")"
else
  ip netns exec "$NSA" nft delete table inet kvxloss
  # One packet per TCP segment: without this the veth carries 64 KiB GSO
  # packets and a few dozen drops make up a whole run.
  ip -n "$NSA" link set "$VA" gso_max_size 1500 2>/dev/null &&
    ip -n "$NSB" link set "$VB" gso_max_size 1500 2>/dev/null ||
    echo "     (gso_max_size cannot be set: the rules drop GSO packets)"
  for pct in 1 5; do
    loss_on "$pct" || { bad "loss $pct%: nft rules"; continue; }
    send "loss$pct-direct" DIRECT 120 --requests 4 --prompt 2048 \
      --shared-prefix 1024 --seed "fault-loss$pct-direct"
    check_exact "loss$pct-direct" 4 2048 1024
    send "loss$pct-via" VIA 120 --requests 4 --prompt 2048 \
      --shared-prefix 1024 --seed "fault-loss$pct-via"
    check_exact "loss$pct-via" 4 2048 1024
    read -r dropped seen < <(loss_count)
    [ "${dropped:-0}" -gt 0 ] 2>/dev/null &&
      ok "loss $pct%: nftables dropped $dropped of $seen packets on $VA ($(python3 -c 'import sys; print("%.1f" % (100 * int(sys.argv[1]) / max(1, int(sys.argv[2]))))' "$dropped" "$seen")%)" ||
      bad "loss $pct%: no packet dropped ($dropped of $seen)"
    for s in direct via; do
      echo "     loss$pct-$s: $(json "$tmp/loss$pct-$s.json" '"%.3f s of transfers (%.3f s wall) for %d wire blocks" % (j["totals"]["transfer_time_s"], j["totals"]["wall_time_s"], j["totals"]["wire_blocks"])')"
    done
    ip netns exec "$NSA" nft delete table inet kvxloss
    settled "loss $pct%"
  done
fi

# --- both kvxd stop cleanly -------------------------------------------------
alive "$decode_pid" && alive "$prefill_pid" && ok "both kvxd survived every fault" ||
  bad "a kvxd died"
stop_pid "$prefill_pid" "prefill kvxd"
prefill_pid=
[ "$stop_rc" = 0 ] && ok "prefill kvxd exits 0 on SIGTERM" || bad "prefill kvxd exit $stop_rc"
stop_pid "$decode_pid" "decode kvxd"
decode_pid=
[ "$stop_rc" = 0 ] && ok "decode kvxd exits 0 on SIGTERM" || bad "decode kvxd exit $stop_rc"
netns_end
