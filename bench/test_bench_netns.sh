#!/usr/bin/env bash
# kvx-bench on two "hosts": network namespaces A and B joined by a veth
# pair (tests/integration/netns_lib.sh). `kvx-bench target` serves in B on
# its veth address; from A, over UCX TCP on A's veth only:
#  - sweep --target: a row per combination, checksums verified by the
#    target, no baseline (ucx_perftest cannot run across the hosts here);
#  - model --target: exact dedupe, the baseline absent with its reason;
#  - the bytes crossed the veth (its counters grew by at least the pushes);
#  - pulls and shm with --target are refused (exit 2), an agent nobody
#    listens for is exit 1.
# Correctness only: no timing is asserted. Exits 77 (skip) when not root,
# without ip, or when namespaces or veth cannot be created. The trap stops
# the agent by PID and deletes both namespaces.
# usage: test_bench_netns.sh KVX_BENCH
set -uo pipefail
BENCH=$1

# shellcheck source=tests/integration/netns_lib.sh
. "$(dirname "$0")/../tests/integration/netns_lib.sh"
netns_init bench_netns b 214
agent_pid=
netns_stop() { stop_pid "$agent_pid" kvx-bench-target; agent_pid=; }

netns_hosts

port=$((20000 + RANDOM % 20000))
ip netns exec "$NSB" env UCX_TLS=tcp UCX_NET_DEVICES="$VB" \
  "$BENCH" target --listen "$IPB:$port" >"$tmp/agent.out" 2>"$tmp/agent.err" &
agent_pid=$!
for _ in $(seq 100); do
  grep -q '^kvx-bench target: serving' "$tmp/agent.out" && break
  alive "$agent_pid" || break
  sleep 0.1
done
grep -q '^kvx-bench target: serving' "$tmp/agent.out" ||
  die "the agent did not start: $(cat "$tmp/agent.err")"
ok "agent (pid $agent_pid) on $IPB:$port in $NSB"

# inA ARGS: kvx-bench in A over A's veth (120 s at most)
inA() {
  timeout -k 5 120 ip netns exec "$NSA" env UCX_TLS=tcp UCX_NET_DEVICES="$VA" \
    "$BENCH" "$@"
}
# pyj FILE EXPR: a python expression over the JSON file FILE (j)
pyj() {
  python3 -c '
import json, sys
try:
    j = json.load(open(sys.argv[1]))
    print(eval(sys.argv[2]))
except Exception as e:
    print("<%s: %s>" % (type(e).__name__, e))' "$1" "$2"
}
tx_bytes() { ip -n "$NSA" -s -j link show dev "$VA" | python3 -c \
  'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["bytes"])'; }

# run_ok NAME ARGS: kvx-bench ARGS in A, --json $tmp/NAME.json; exit 0
run_ok() {
  local name=$1 rc
  shift
  inA "$@" --json "$tmp/$name.json" >"$tmp/$name.out" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    ok "$name --target: exit 0"
  else
    bad "$name --target: exit $rc"
    sed 's/^/    /' "$tmp/$name.out"
  fi
}

before=$(tx_bytes)
run_ok sweep sweep --target "$IPB:$port" --chunks 4K,64K --batches 1,8 \
  --iters 3 --check
rows=$(pyj "$tmp/sweep.json" 'sorted((r["chunk"], r["batch"], r["pattern"]) for r in j["results"]) == sorted((c, b, p) for c in (4096, 65536) for b in (1, 8) for p in ("contig", "scatter")) and all(r["bytes_per_s"] > 0 and r["ratio"] is None for r in j["results"]) and j["check"] is True and j["baseline_test"] is None')
[ "$rows" = True ] && ok "sweep --target: a row per combination, checksums on, no baseline" ||
  bad "sweep --target rows: $rows"
after=$(tx_bytes)
sent=$(( (4096 + 65536) * (1 + 8) * 2 * 4 )) # per pattern: warm-up + 3
[ $((after - before)) -ge $sent ] && ok "the veth carried $((after - before)) bytes (>= $sent pushed)" ||
  bad "the veth carried $((after - before)) bytes, fewer than the $sent pushed"

run_ok model model --target "$IPB:$port" --prompt 64 --requests 4 \
  --concurrency 2 --layers 4 --check --layerwise --layer-compute-us 100
res=$(pyj "$tmp/model.json" 'j["results"]["dedupe_exact"] and j["results"]["failed"] == 0 and j["results"]["baseline"]["bytes_per_s"] is None and "two hosts" in j["results"]["baseline"]["absent"]')
[ "$res" = True ] && ok "model --target: exact dedupe, baseline absent (two hosts)" ||
  bad "model --target: $res"

for args in "sweep --dir pull" "sweep --transport shm" "model --transport shm"; do
  # shellcheck disable=SC2086 # ARGS split on purpose
  inA $args --target "$IPB:$port" >"$tmp/refused.out" 2>&1
  rc=$?
  [ $rc -eq 2 ] && ok "$args --target: refused (exit 2)" ||
    bad "$args --target: exit $rc, not 2"
done
inA sweep --target "$IPB:$((port + 1))" --chunks 4K --batches 1 --iters 1 \
  >"$tmp/unreach.out" 2>&1
rc=$?
grep -q 'cannot reach the target agent' "$tmp/unreach.out" && [ $rc -eq 1 ] &&
  ok "an agent nobody listens for: exit 1 with a message" ||
  bad "unreachable agent: exit $rc: $(head -2 "$tmp/unreach.out")"
alive "$agent_pid" && ok "the agent still serves" || bad "the agent died"

netns_end
