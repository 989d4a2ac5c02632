#!/usr/bin/env bash
# Integration test of the kvx CLI against kvx_sink (client/kvx_sink.c):
#  - send (tiny model, 4 requests sharing a prefix) exits 0 and its JSON
#    reports exact dedupe: blocks on the wire == distinct blocks;
#  - layer-wise send, status (text and JSON);
#  - rdma (this host's devices, no peer): exit 0, the no-devices line on a
#    host without RDMA, valid JSON;
#  - a sink that corrupts a byte before verification: send exits 1 and
#    reports the checksum failure;
#  - bad input exits 2, failures exit 1 (peers/pool without a kvxd too).
# Every sink started is killed by PID on exit (trap).
# usage: test_kvx_cli.sh KVX KVX_SINK
set -uo pipefail
KVX=$1
SINK=$2
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
. "$(dirname "$0")/test_lib.sh"

# start_sink NAME [ARGS]: sets ADDR
start_sink() {
  local name=$1; shift
  "$SINK" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=($!)
  for _ in $(seq 1 200); do
    ADDR=$(sed -n 's/^kvx_sink: listening on //p' "$tmp/$name.out")
    [ -n "$ADDR" ] && return 0
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      wait "${pids[-1]}"; rc=$?
      [ $rc -eq 77 ] && { echo "UCX cannot start: skipping"; exit 77; }
      cat "$tmp/$name.err"; echo "kvx_sink exited ($rc)"; exit 1
    fi
    sleep 0.05
  done
  echo "kvx_sink did not start"; exit 1
}



start_sink sink --model tiny --blocks 512
SINK_ADDR=$ADDR

# 4 requests x 16 blocks, 8 shared: 8 + 4 * 8 = 40 distinct blocks.
expect 0 "send tiny x4 with shared prefix" -- \
  "$KVX" --json send "$SINK_ADDR" --model tiny --requests 4 --prompt 256 \
  --shared-prefix 128
cp "$tmp/out" "$tmp/send.json"
if python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/send.json" 2>/dev/null; then
  ok "send --json prints one JSON object"
  [ "$(json "$tmp/send.json" 'j["totals"]["unique_blocks"]')" = 40 ] &&
    ok "40 distinct blocks" || bad "distinct blocks: $(json "$tmp/send.json" 'j["totals"]["unique_blocks"]')"
  [ "$(json "$tmp/send.json" 'j["totals"]["wire_blocks"] == j["totals"]["unique_blocks"]')" = True ] &&
    ok "wire blocks == distinct blocks (exact dedupe)" || bad "wire blocks $(json "$tmp/send.json" 'j["totals"]["wire_blocks"]') != 40"
  [ "$(json "$tmp/send.json" 'j["totals"]["hit_blocks"]')" = 24 ] &&
    ok "24 hit blocks" || bad "hit blocks"
  [ "$(json "$tmp/send.json" 'j["totals"]["wire_bytes"] == 40 * j["block_bytes"]')" = True ] &&
    ok "wire bytes == 40 blocks" || bad "wire bytes"
  [ "$(json "$tmp/send.json" 'all(r["checksum"] == "ok" for r in j["requests"]) and j["ok"]')" = True ] &&
    ok "every checksum ok" || bad "checksums"
else
  bad "send --json output is not JSON"; cat "$tmp/send.json"
fi

expect 0 "send layer-wise, text output" -- \
  "$KVX" send "$SINK_ADDR" --model tiny --requests 2 --prompt 64 \
  --shared-prefix 0 --layerwise --seed 7
grep -q "dedupe saved" "$tmp/out" && ok "text output has totals" || bad "text totals"

expect 0 "status --json" -- "$KVX" --json status "$SINK_ADDR" --model tiny
cp "$tmp/out" "$tmp/status.json"
[ "$(json "$tmp/status.json" 'j["stats"]["transfers_ok"] >= 6 and j["stats"]["dedupe_hit_blocks"] == 24 and j["peer_name"] == "kvx-sink"')" = True ] &&
  ok "status reports the sink's transfers and dedupe" || { bad "status JSON"; cat "$tmp/status.json"; }
[ "$(json "$tmp/status.json" 'isinstance(j["rdma"], list) and len(j["rdma"]) <= j["rdma_devices_total"]')" = True ] &&
  ok "status JSON has the rdma array" || { bad "status JSON rdma"; cat "$tmp/status.json"; }
expect 0 "status text" -- "$KVX" status "$SINK_ADDR" --model tiny
grep -q "peers.connected" "$tmp/out" && ok "status text lists counters" || bad "status text"
grep -q "^rdma: " "$tmp/out" && ok "status text has the rdma section" || bad "status text rdma"

# This host's RDMA devices: no peer needed.
expect 0 "rdma" -- "$KVX" rdma
if [ -z "$(ls -A /sys/class/infiniband 2>/dev/null)" ]; then
  grep -qx "rdma: no RDMA devices (transfers use TCP and shared memory)" "$tmp/out" &&
    ok "rdma: no devices on this host" || { bad "rdma no-devices line"; cat "$tmp/out"; }
else
  grep -q "^rdma: [0-9]* devices* on this host" "$tmp/out" &&
    ok "rdma lists this host's devices" || { bad "rdma device list"; cat "$tmp/out"; }
fi
expect 0 "rdma --json" -- "$KVX" --json rdma
if python3 -c 'import json,sys; json.load(sys.stdin)' <"$tmp/out" 2>/dev/null; then
  ok "rdma --json prints one JSON object"
  [ "$(json "$tmp/out" 'j["command"] == "rdma" and j["ok"] and isinstance(j["rdma"], list)')" = True ] &&
    ok "rdma JSON has the rdma array" || { bad "rdma JSON"; cat "$tmp/out"; }
else
  bad "rdma --json output is not JSON"; cat "$tmp/out"
fi

# A layout the sink does not serve: the handshake's named error.
expect 1 "send with another model" -- "$KVX" send "$SINK_ADDR" --model llama-8b \
  --requests 1 --prompt 16 --shared-prefix 0
grep -q "incompatible KV layouts" "$tmp/err" && ok "layout mismatch named" || { bad "layout mismatch message"; cat "$tmp/err"; }
expect 1 "send --json with another model" -- "$KVX" --json send "$SINK_ADDR" \
  --model deepseek-v3 --requests 1 --prompt 16 --shared-prefix 0
[ "$(json "$tmp/out" 'j["ok"] is False and "layout" in j["error"] and "!=" in j["detail"]')" = True ] &&
  ok "JSON error object names the layout" || { bad "JSON error"; cat "$tmp/out"; }

# Corruption on the receiver: the checksum catches it, exit 1.
start_sink corrupt --model tiny --blocks 64 --corrupt
expect 1 "send to a corrupting sink" -- "$KVX" --json send "$ADDR" --model tiny \
  --requests 1 --prompt 64 --shared-prefix 0
[ "$(json "$tmp/out" 'j["requests"][0]["checksum"] == "mismatch" and j["requests"][0]["checksum_mismatches"] == 1 and not j["ok"]')" = True ] &&
  ok "checksum mismatch reported" || { bad "mismatch JSON"; cat "$tmp/out"; }

# Bad input and unsupported commands.
expect 2 "no command" -- "$KVX"
expect 2 "unknown command" -- "$KVX" frobnicate
expect 2 "unknown global flag" -- "$KVX" --frob status "$SINK_ADDR"
expect 2 "unknown send flag" -- "$KVX" send "$SINK_ADDR" --frob 1
expect 2 "unknown model" -- "$KVX" send "$SINK_ADDR" --model gpt-9
expect 2 "prompt 0" -- "$KVX" send "$SINK_ADDR" --model tiny --prompt 0
expect 2 "requests 0" -- "$KVX" send "$SINK_ADDR" --model tiny --requests 0
expect 2 "shared prefix > prompt" -- "$KVX" send "$SINK_ADDR" --model tiny \
  --prompt 64 --shared-prefix 65
expect 2 "prompt below one block" -- "$KVX" send "$SINK_ADDR" --model tiny \
  --prompt 8 --shared-prefix 0
expect 2 "negative number" -- "$KVX" send "$SINK_ADDR" --requests -1
expect 2 "missing value" -- "$KVX" send "$SINK_ADDR" --prompt
expect 2 "missing peer" -- "$KVX" send --model tiny
expect 2 "bad address" -- "$KVX" status "not an address"
expect 2 "rdma with an argument" -- "$KVX" rdma extra
expect 1 "unreachable peer" -- "$KVX" status 127.0.0.1:1 --model tiny
grep -q "cannot connect" "$tmp/err" && ok "unreachable named" || bad "unreachable message"
expect 1 "peers without a kvxd" -- "$KVX" peers --socket "$tmp/none.sock"
grep -q "cannot attach" "$tmp/err" && ok "peers says why" || bad "peers message"
expect 1 "pool without a kvxd" -- "$KVX" pool --socket "$tmp/none.sock"
expect 2 "pool unknown option" -- "$KVX" pool --frob
expect 1 "send --via without a kvxd" -- "$KVX" send "$SINK_ADDR" \
  --via "$tmp/none.sock"
expect 0 "--help" -- "$KVX" --help
expect 0 "--version" -- "$KVX" --version
grep -q "^kvx [0-9]" "$tmp/out" && ok "version printed" || bad "version"

# The sinks stop cleanly on SIGTERM (exit 0, no sanitizer report).
stop_all sink

echo "kvx_cli: $fails failure(s)"
[ $fails -eq 0 ]
