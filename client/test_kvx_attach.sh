#!/usr/bin/env bash
# Integration test of the kvx CLI against two real kvxd, as the demo runs
# them (tiny model): kvx send --via the prefill daemon's engine socket with
# --check-at the decode daemon's socket (exact dedupe and byte-for-byte
# checks in the JSON), kvx peers and kvx pool in text and JSON, and a
# second send over TCP. Every daemon is stopped by PID (trap).
# Also runs client/example_attach (the docs/api.md program) against them.
# usage: test_kvx_attach.sh KVX KVXD EXAMPLE_ATTACH
set -uo pipefail
KVX=$1
KVXD=$2
EXAMPLE=$3
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
. "$(dirname "$0")/test_lib.sh"

# start_kvxd NAME [ARGS]: sets ADDR; engine socket $tmp/NAME.sock
start_kvxd() {
  local name=$1; shift
  "$KVXD" --node_id "$name" --listen 127.0.0.1:0 --socket "$tmp/$name.sock" \
    --num_layers 4 --kv_heads 2 --head_dim 64 --pool_blocks 256 \
    --log_level warn "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=($!)
  for _ in $(seq 1 300); do
    ADDR=$(sed -n 's/^kvxd: listening on //p' "$tmp/$name.out")
    [ -n "$ADDR" ] && [ -S "$tmp/$name.sock" ] && return 0
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      wait "${pids[-1]}"; rc=$?
      if grep -q "UCX" "$tmp/$name.err" && [ $rc -eq 1 ]; then
        echo "UCX cannot start: skipping"; exit 77
      fi
      cat "$tmp/$name.err"; echo "kvxd $name exited ($rc)"; exit 1
    fi
    sleep 0.05
  done
  echo "kvxd $name did not start"; cat "$tmp/$name.err"; exit 1
}



start_kvxd decode-0
DECODE=$ADDR
start_kvxd prefill-0
PREFILL=$ADDR
start_kvxd prefill-tcp --ucx_tls tcp

# 4 requests x 8 blocks (128 tokens of 16), 64 shared tokens: 4 shared
# blocks + 4 x 4 own = 20 distinct blocks, 12 hits.
expect 0 "send --via --check-at" -- "$KVX" --json send "$DECODE" \
  --via "$tmp/prefill-0.sock" --check-at "$tmp/decode-0.sock" \
  --requests 4 --prompt 128 --shared-prefix 64
cp "$tmp/out" "$tmp/send.json"
[ "$(json "$tmp/send.json" 'j["totals"]["wire_blocks"]')" = 20 ] &&
  ok "only distinct blocks crossed" || bad "wire blocks: $(cat "$tmp/send.json")"
[ "$(json "$tmp/send.json" 'j["totals"]["hit_blocks"]')" = 12 ] &&
  ok "shared blocks were hits" || bad "hit blocks"
[ "$(json "$tmp/send.json" 'j["totals"]["checked_blocks"]')" = 32 ] &&
  ok "every block collected at decode" || bad "checked blocks"
[ "$(json "$tmp/send.json" 'j["totals"]["check_bad_blocks"]')" = 0 ] &&
  ok "decode bytes identical" || bad "check_bad_blocks"
[ "$(json "$tmp/send.json" 'j["peer_name"]')" = decode-0 ] &&
  ok "peer named by the prefill daemon" || bad "peer_name"
[ "$(json "$tmp/send.json" 'j["model"]')" = tiny ] &&
  ok "the daemon's layout is the tiny preset" || bad "model"

expect 0 "send --via over TCP, layer-wise" -- "$KVX" --json send "$DECODE" \
  --via "$tmp/prefill-tcp.sock" --check-at "$tmp/decode-0.sock" \
  --requests 2 --prompt 64 --shared-prefix 32 --seed tcp --layerwise
[ "$(json "$tmp/out" 'j["transport"]')" = am ] &&
  ok "TCP carries active messages" || bad "transport $(cat "$tmp/out")"
[ "$(json "$tmp/out" 'j["totals"]["check_bad_blocks"]')" = 0 ] &&
  ok "TCP bytes identical" || bad "TCP check"

expect 0 "example_attach pushes through prefill-0" -- "$EXAMPLE" \
  "$tmp/prefill-0.sock" "$DECODE"
grep -q "success" "$tmp/out" && ok "example reports success" ||
  bad "example output: $(cat "$tmp/out")"

expect 0 "peers (text)" -- "$KVX" peers --socket "$tmp/decode-0.sock"
grep -q "prefill-0" "$tmp/out" && grep -q "prefill-tcp" "$tmp/out" &&
  ok "peers lists both prefill daemons" || bad "peers text"
expect 0 "peers (json)" -- "$KVX" --json peers --socket "$tmp/prefill-0.sock"
[ "$(json "$tmp/out" '[p["node_id"] for p in j["peers"]]')" = "['decode-0']" ] &&
  ok "prefill-0's peer is decode-0" || bad "peers json: $(cat "$tmp/out")"
[ "$(json "$tmp/out" 'j["peers"][0]["direction"]')" = out ] &&
  ok "outgoing peer" || bad "direction"
expect 0 "pool (json)" -- "$KVX" --json pool --socket "$tmp/decode-0.sock"
[ "$(json "$tmp/out" 'j["stats"]["blocks_total"]')" = 256 ] &&
  ok "pool size" || bad "pool json: $(cat "$tmp/out")"
[ "$(json "$tmp/out" 'j["stats"]["leases_active"]')" = 0 ] &&
  ok "no lease left behind" || bad "leases"
expect 0 "pool (text)" -- "$KVX" pool --socket "$tmp/decode-0.sock"
grep -q "pool of 256 blocks" "$tmp/out" && ok "pool text" || bad "pool text"

# The daemons stop cleanly on SIGTERM (exit 0, no sanitizer report).
stop_all kvxd
echo "$fails failure(s)"
[ $fails -eq 0 ]
