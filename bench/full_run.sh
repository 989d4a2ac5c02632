#!/usr/bin/env bash
# The full kvx-bench run behind docs/performance.md: baselines, sweeps (push
# and pull, tcp and shared memory, with plots), model presets plain and
# layer-wise, the scale run and the tuning comparisons. Every command's
# output goes to OUT_DIR/NAME.txt (and NAME.json / NAME.svg where it writes
# one). Takes about 15 minutes on a 2-CPU machine; run it on a quiet one:
# only ratios taken within one command mean anything.
#
#   bench/full_run.sh [BUILD_DIR] [OUT_DIR]   (defaults: build, /tmp/kvx-full-run)
set -euo pipefail
build=${1:-build}
out=${2:-/tmp/kvx-full-run}
kb=$build/bench/kvx-bench
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
[ -x "$kb" ] || { echo "no $kb: build first (meson setup $build && ninja -C $build)"; exit 2; }
mkdir -p "$out"

run() {
  local name=$1
  shift
  echo "== kvx-bench $*" | tee "$out/$name.txt"
  "$kb" "$@" 2>&1 | tee -a "$out/$name.txt"
}

chunks=4K,16K,64K,256K,1M,4M
run baseline-tcp baseline --sizes $chunks --json "$out/baseline-tcp.json"
run baseline-shm baseline --transport shm --sizes $chunks --json "$out/baseline-shm.json"
for tr in tcp shm; do
  run sweep-$tr sweep --transport $tr --dir both --chunks $chunks \
    --batches 1,16,256 --iters 20 --json "$out/sweep-$tr.json" \
    --plot "$out/sweep-$tr.png"
done
for tr in tcp shm; do
  run model-$tr model --transport $tr --prompt 4096 --requests 8 \
    --concurrency 2 --shared-prefix 0.5 --json "$out/model-$tr.json"
  run model-$tr-check model --transport $tr --prompt 4096 --requests 8 \
    --concurrency 2 --shared-prefix 0.5 --check --json "$out/model-$tr-check.json"
  run model-$tr-layerwise model --transport $tr --prompt 4096 --requests 8 \
    --concurrency 2 --shared-prefix 0.5 --layerwise --layer-compute-us 6000 \
    --json "$out/model-$tr-layerwise.json"
done
for preset in llama-3.1-70b qwen3-235b-a22b deepseek-v3; do
  run model-$preset model --preset $preset --prompt 4096 --requests 4 \
    --concurrency 2 --shared-prefix 0.5 --layerwise --layer-compute-us 6000 \
    --json "$out/model-$preset.json"
done
for tr in tcp shm; do
  run scale-$tr scale --transport $tr --check --json "$out/scale-$tr.json"
done
run scale-shm-am scale --transport shm --path am --check --json "$out/scale-shm-am.json"
# raw UCX active messages shaped like kvx's over kvx's footprint, next to
# ucx_perftest's one cache-resident buffer: what the tcp goal's gap is made of
for fp in 1M 512M; do
  run rawam-$fp rawam --msg 1M --footprint $fp --iters 2048
done
# tuning: one knob at a time, everything else at its default
for p in 0 100 1000; do
  run tune-poll-$p sweep --chunks 4K,1M --batches 1,16 --pattern contig \
    --iters 100 --no-baseline --poll-us $p
done
for c in 256K 1M 4M 16M; do
  run tune-am-chunk-$c sweep --chunks 1M,4M --batches 64 --pattern contig \
    --iters 10 --no-baseline --am-chunk $c
done
for p in rma am; do
  run tune-path-shm-$p sweep --transport shm --chunks 64K,1M,4M --batches 64 \
    --pattern contig --iters 10 --no-baseline --path $p
done
for b in 1 16 256 1024; do
  run tune-batch-$b sweep --chunks 4K,64K --batches $b --iters 20 --no-baseline
done
echo "outputs in $out"
