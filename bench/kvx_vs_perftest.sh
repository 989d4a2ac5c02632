#!/usr/bin/env bash
# One 512 MiB request (Llama-3.1-8B shape: 256 blocks of 2 MiB) pushed
# between two kvxd on this host, next to raw ucx_perftest moving the same
# bytes in 2 MiB messages over the same UCX transport, in the same run.
# Prints each figure and the ratio; the machine is shared, so only the
# ratio of figures taken together means anything.
#
#   bench/kvx_vs_perftest.sh [BUILD_DIR]      (default: build)
#
# For each transport: tcp (kvx: active messages; perftest: ucp_am_bw with
# 256 messages of 2 MiB, its best case here) and shared memory
# (posix,sysv,cma,self; kvx: RMA put; perftest: ucp_put_bw with 512 MiB
# messages — with 2 MiB ones perftest rewrites one cache-resident buffer and
# reports cache bandwidth, several times what moving 512 MiB of distinct
# memory can reach).
# kvx is measured with and without per-block checksums (XXH3 on both
# sides); its figure is wire bytes over the transfer's own elapsed time
# (allocate round trip, data, commit), as kvx send reports it.
set -euo pipefail
build=${1:-build}
kvx=$build/client/kvx
kvxd=$build/daemon/kvxd
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
command -v ucx_perftest >/dev/null || { echo "ucx_perftest not found"; exit 77; }
work=$(mktemp -d /tmp/kvx-vs-perftest.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

start_kvxd() { # NAME TLS: sets ADDR
  "$kvxd" --node_id "$1" --listen 127.0.0.1:0 --socket "$work/$1.sock" \
    --pool_blocks 300 --ucx_tls "$2" --hold_ms 0 --log_level warn \
    >"$work/$1.out" 2>"$work/$1.err" &
  pids+=($!)
  for _ in $(seq 300); do
    ADDR=$(sed -n 's/^kvxd: listening on //p' "$work/$1.out")
    [ -n "$ADDR" ] && [ -S "$work/$1.sock" ] && return 0
    sleep 0.1
  done
  echo "kvxd $1 did not start"; cat "$work/$1.err"; exit 1
}

# kvx_gbs TLS SEED [--no-checksum]: decimal GB/s of one 512 MiB push
kvx_gbs() {
  local tls=$1 seed=$2; shift 2
  "$kvx" --json send "$DECODE" --via "$work/prefill-$tls.sock" \
    --check-at "$work/decode.sock" --requests 1 --prompt 4096 \
    --shared-prefix 0 --seed "$seed" "$@" >"$work/send.json"
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1]));
t=j["totals"]; assert j["ok"] and t["wire_bytes"]==512<<20 and t["check_bad_blocks"]==0, j
print("%.3f" % t["throughput_gbps"])' "$work/send.json"
}

# perftest_gbs TLS TEST SIZE ITERS WARMUP: decimal GB/s
perftest_gbs() {
  local port=$((20000 + RANDOM % 20000))
  UCX_TLS=$1 ucx_perftest -p "$port" >"$work/pt-server.out" 2>&1 &
  local srv=$!
  sleep 1
  UCX_TLS=$1 ucx_perftest 127.0.0.1 -p "$port" -t "$2" -s "$3" -n "$4" \
    -w "$5" >"$work/pt.out" 2>&1
  wait "$srv" || true
  # "Final: iters p50 avg overall bw_avg bw_overall ..." in MiB/s
  awk '/^Final:/ {printf "%.3f\n", $7 * 1048576 / 1e9}' "$work/pt.out"
}

start_kvxd decode "tcp,posix,sysv,cma,self"
DECODE=$ADDR
start_kvxd prefill-tcp tcp
start_kvxd prefill-shm "posix,sysv,cma,self"

printf "%-28s %10s %14s %14s %8s %8s\n" "512 MiB, 2 MiB blocks" "kvx" \
  "kvx-nosum" "perftest" "ratio" "nosum"
for tls in tcp shm; do
  if [ $tls = tcp ]; then ucx=tcp; test=ucp_am_bw; pt="2097152 256 16"
  else ucx="posix,sysv,cma,self"; test=ucp_put_bw; pt="536870912 4 1"; fi
  k=$(kvx_gbs $tls "$tls-1")
  kn=$(kvx_gbs $tls "$tls-2" --no-checksum)
  p=$(perftest_gbs "$ucx" $test $pt)
  printf "%-28s %8s GB/s %8s GB/s %8s GB/s %8.2f %8.2f\n" \
    "$tls ($test)" "$k" "$kn" "$p" \
    "$(python3 -c "print($k/$p)")" "$(python3 -c "print($kn/$p)")"
done
