#!/usr/bin/env bash
# Integration test across two "hosts": network namespaces A and B joined by
# a veth pair, each with one address of a private /24 (nothing is added to
# any other namespace; lo is up in both). kvxd runs in B on its veth
# address; `kvx send` runs in A, over UCX TCP on the veth only:
#  - 4 tiny requests sharing half their prompt: exit 0, every checksum ok,
#    exact dedupe (40 distinct blocks, 40 on the wire, 24 hits), the bytes
#    crossed the veth;
#  - the same workload (another seed) with A's veth rate-limited by a tbf
#    qdisc still completes with every checksum ok (skipped if tbf is
#    unavailable);
#  - kvxd exits 0 on SIGTERM.
# Exits 77 (skip) when not root, without `ip`, or when namespaces or veth
# cannot be created. A trap always kills kvxd by PID (TERM, then KILL) and
# deletes both namespaces, which removes the veth pair.
# usage: test_netns.sh KVXD KVX
set -uo pipefail
KVXD=$1
KVX=$2

# shellcheck source=tests/integration/netns_lib.sh
. "$(dirname "$0")/netns_lib.sh"
netns_init netns v 213
kvxd_pid=

# stop_kvxd: stops kvxd (netns_lib.sh's stop_pid). Sets kvxd_rc.
stop_kvxd() {
  stop_pid "$kvxd_pid" kvxd
  kvxd_rc=$stop_rc
  kvxd_pid=
}
netns_stop() { stop_kvxd; }

netns_hosts

# --- decode node: kvxd in B, the tiny preset's layout ----------------------
# kvx --model tiny: 4 layers, K+V, 2 kv heads x 64, bf16, 16-token blocks.
start_kvxd "$NSB" "$VB" decode-netns --listen "$IPB:0" \
  --num_layers 4 --kv_parts 2 --kv_heads 2 --head_dim 64 --block_tokens 16 \
  --dtype_size 2 --pool_blocks 256 --log_level warn
rc=$?
kvxd_pid=$started_pid
[ $rc -eq 0 ] || die "$start_err"
case $ADDR in
  "$IPB":*) ok "kvxd (pid $kvxd_pid) listening on $ADDR in $NSB" ;;
  *) die "kvxd listens on $ADDR, not on $IPB" ;;
esac

# send NAME [ARGS]: kvx send from A to kvxd (60 s at most); JSON in NAME.json
send() {
  local name=$1; shift
  timeout -k 5 60 ip netns exec "$NSA" env UCX_TLS=tcp UCX_NET_DEVICES="$VA" \
    "$KVX" --json send "$ADDR" --model tiny --tls tcp --requests 4 \
    --prompt 256 --shared-prefix 128 "$@" \
    >"$tmp/$name.json" 2>"$tmp/$name.err"
}

# check_send NAME RC: exit 0, all checksums ok, exact dedupe
check_send() {
  local name=$1 rc=$2 f=$tmp/$1.json
  if [ "$rc" -eq 0 ]; then ok "$name: kvx send exits 0"; else
    bad "$name: kvx send exit $rc"; sed 's/^/    /' "$f" "$tmp/$name.err"
  fi
  if ! python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$f" 2>/dev/null; then
    bad "$name: output is not JSON"; sed 's/^/    /' "$f"; return
  fi
  [ "$(json "$f" 'j["ok"] and len(j["requests"]) == 4 and all(r["ok"] and r["checksum"] == "ok" and r["checksum_mismatches"] == 0 for r in j["requests"]) and j["totals"]["failed"] == 0 and j["totals"]["checksum_failed"] == 0')" = True ] &&
    ok "$name: every request ok, every checksum ok" || { bad "$name: checksums"; sed 's/^/    /' "$f"; }
  # 4 requests x 16 blocks, 8 shared: 8 + 4 * 8 = 40 distinct, 24 hits.
  [ "$(json "$f" '(j["totals"]["blocks"], j["totals"]["unique_blocks"], j["totals"]["wire_blocks"], j["totals"]["hit_blocks"])')" = "(64, 40, 40, 24)" ] &&
    ok "$name: 64 blocks, 40 distinct, 40 sent, 24 hits (exact dedupe)" ||
    bad "$name: blocks/distinct/sent/hits $(json "$f" '(j["totals"]["blocks"], j["totals"]["unique_blocks"], j["totals"]["wire_blocks"], j["totals"]["hit_blocks"])') != (64, 40, 40, 24)"
  [ "$(json "$f" 'j["totals"]["wire_bytes"] == 40 * j["block_bytes"] and j["totals"]["logical_bytes"] == 64 * j["block_bytes"] and j["block_bytes"] == 32768')" = True ] &&
    ok "$name: wire bytes == 40 blocks of 32 KiB" || bad "$name: bytes $(json "$f" '(j["block_bytes"], j["totals"]["wire_bytes"], j["totals"]["logical_bytes"])')"
  [ "$(json "$f" 'j["transport"] == "am" and j["peer_name"] == "decode-netns"')" = True ] &&
    ok "$name: AM data path to decode-netns" || bad "$name: transport/peer $(json "$f" '(j["transport"], j["peer_name"])')"
}

# rx_bytes: bytes received on B's veth end
rx_bytes() { ip netns exec "$NSB" cat "/sys/class/net/$VB/statistics/rx_bytes"; }

# --- prefill in A -> decode in B over the veth ----------------------------
rx0=$(rx_bytes)
send plain --seed netns; rc=$?
check_send plain $rc
rx1=$(rx_bytes)
wire=$(json "$tmp/plain.json" 'j["totals"]["wire_bytes"]')
[ "$wire" -gt 0 ] 2>/dev/null && [ $((rx1 - rx0)) -ge "$wire" ] &&
  ok "plain: $((rx1 - rx0)) bytes received on $VB >= $wire wire bytes" ||
  bad "plain: $VB received $((rx1 - rx0)) bytes, wire bytes $wire"

# --- the same over a rate-limited link (tbf on A's egress) ----------------
if ip netns exec "$NSA" tc qdisc add dev "$VA" root tbf rate 200mbit \
  burst 64kb latency 50ms 2>"$tmp/err"; then
  send tbf --seed netns-tbf; rc=$?
  check_send tbf $rc
  # 200 Mbit/s is 0.025 GB/s; the 64 KiB bursts allow somewhat more, not 2x.
  [ "$(json "$tmp/tbf.json" '0 < j["totals"]["throughput_gbps"] < 0.05')" = True ] &&
    ok "tbf: $(json "$tmp/tbf.json" 'j["totals"]["throughput_gbps"]') GB/s under a 200 Mbit/s limit" ||
    bad "tbf: throughput $(json "$tmp/tbf.json" 'j["totals"]["throughput_gbps"]') GB/s, not limited to 200 Mbit/s"
else
  echo "skip tbf rate limit: $(cat "$tmp/err")"
fi

# --- kvxd stops cleanly ----------------------------------------------------
stop_kvxd
[ "$kvxd_rc" = 0 ] && ok "kvxd exits 0 on SIGTERM" || bad "kvxd exit $kvxd_rc"
netns_end
