#!/usr/bin/env python3
"""kvx-bench smoke test: usage: test_kvx_bench.py KVX_BENCH.

baseline: checks the JSON's shape and that figures are numbers (never their
size), the exit code 2 of every bad input, and that a missing, failing or
hung ucx_perftest is reported as absent while memcpy still runs (exit 0).
sweep: a tiny push run with --check over tcp and shm (a row per combo,
positive figures, no baseline -> ratio null), its bad inputs (exit 2), a
tiny pull run over tcp, and --plot (an SVG, or the skip message).
scale: a tiny run over tcp with --check (JSON fields, figures numbers, no
failures, every push collected) and its bad inputs (exit 2).
rawam: a tiny raw UCX AM stream over tcp (its line, a positive figure) and
its bad inputs (exit 2). target: the two-host agent's ERR answers and the
address of a good request, its targets ending with their sockets."""
import json
import os
import re
import shutil
import subprocess
import sys
import socket
import tempfile
import time

BENCH = os.path.abspath(sys.argv[1])
KEYS = ["am_bw_bytes_per_s", "put_bw_bytes_per_s", "am_lat_usec"]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(args, env=None, timeout=240):
    p = subprocess.run([BENCH] + args, env=env, capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def load(path):
    with open(path) as f:
        return json.load(f)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


tmp = tempfile.mkdtemp(prefix="kvx-bench-test.")
try:
    # 1. real run (figures are numbers when ucx_perftest is installed)
    out = os.path.join(tmp, "base.json")
    rc, so, se = run(["baseline", "--sizes", "4K,64K", "--iters", "20",
                      "--json", out])
    print(so + se)
    check(rc == 0, "baseline exits 0")
    j = load(out)
    env = j["env"]
    check(env["transport"] == "tcp" and env["ucx_tls"] == "tcp",
          "env: transport tcp")
    check(isinstance(env["ucx_version"], str) and env["ucx_version"],
          "env: ucx_version")
    check(isinstance(env["cpu_count"], int) and env["cpu_count"] > 0,
          "env: cpu_count")
    check([r["size"] for r in j["results"]] == [4096, 65536], "sizes")
    have = shutil.which("ucx_perftest") is not None
    for r in j["results"]:
        check(is_num(r["memcpy_bytes_per_s"]), "memcpy number at %d" %
              r["size"])
        for k in KEYS:
            if have:
                check(is_num(r[k]), "%s number at %d" % (k, r["size"]))
            else:
                check(r[k] is None, "%s null without perftest" % k)

    # 2. bad input: exit 2 with a message, no run
    for args in (["baseline", "--transport", "rdma"],
                 ["baseline", "--sizes", "0"],
                 ["baseline", "--sizes", "4K,abc"],
                 ["baseline", "--sizes", "2G"],
                 ["baseline", "--sizes", "4K,,8K"],
                 ["baseline", "--sizes", "-4K"],
                 ["baseline", "--iters", "0"],
                 ["baseline", "--iters"],
                 ["baseline", "--bogus"],
                 ["sweep", "--batches", "0"],
                 ["sweep", "--batches", "1,x"],
                 ["sweep", "--chunks", "0"],
                 ["sweep", "--chunks", "128M"],
                 ["sweep", "--chunks", "100"],
                 ["sweep", "--pattern", "zigzag"],
                 ["sweep", "--transport", "rdma"],
                 ["sweep", "--iters", "0"],
                 ["sweep", "--json"],
                 ["sweep", "--bogus"],
                 ["model", "--preset", "gpt-5"],
                 ["model", "--block-tokens", "24"],
                 ["model", "--shared-prefix", "1.5"],
                 ["model", "--shared-prefix", "-0.1"],
                 ["model", "--requests", "0"],
                 ["model", "--concurrency", "0"],
                 ["model", "--prompt", "8"],
                 ["model", "--bogus"],
                 ["target"],
                 ["target", "--listen", "no-port"],
                 ["target", "--listen"],
                 ["target", "--bogus"],
                 ["frobnicate"], []):
        rc, so, se = run(args)
        check(rc == 2 and se.strip() != "", "exit 2: %s (%s)" %
              (" ".join(args), se.strip().splitlines()[0] if se else ""))

    # 2a. model: a tiny run per transport, dedupe exact (no timing asserted)
    for tr, extra in (("tcp", []), ("shm", ["--layerwise",
                                            "--layer-compute-us", "100"])):
        out = os.path.join(tmp, "model-%s.json" % tr)
        rc, so, se = run(["model", "--preset", "llama-3.1-8b", "--transport",
                          tr, "--prompt", "64", "--requests", "4",
                          "--concurrency", "2", "--block-tokens", "16",
                          "--shared-prefix", "0.5", "--layers", "4",
                          "--check", "--json", out] + extra, timeout=120)
        print(so + se)
        check(rc == 0, "model %s exits 0" % tr)
        j = load(out)
        r = j["results"]
        check(j["command"] == "model" and j["env"]["transport"] == tr and
              j["check"] is True and j["layers"] == 4, "model %s: header" % tr)
        # 4 blocks per request, 2 shared: 2 + 4 x 2 distinct blocks
        check(r["blocks"] == 16 and r["unique_blocks"] == 10 and
              r["wire_blocks"] == 10 and r["hit_blocks"] == 6 and
              r["dedupe"] == "exact" and r["dedupe_exact"] is True and
              r["wire_bytes"] == 10 * r["block_bytes"],
              "model %s: dedupe exact" % tr)
        check(r["failed"] == 0 and is_num(r["lat_p50_ns"]),
              "model %s: figures" % tr)
        check(is_num(r["exposed_p50_ns"]) if extra else
              r["exposed_p50_ns"] is None, "model %s: exposed" % tr)
        check(is_num(r["link_bytes_per_s"]) and
              is_num(r["request_bytes_per_s"]), "model %s: calibration" % tr)
        check(is_num(r["layered_bytes_per_s"]) and
              is_num(r["layer_sent_ns"]) and
              is_num(r["exposed_ratio_sent"]) if extra else
              r["layer_sent_ns"] is None, "model %s: layered" % tr)
        b = r["baseline"]
        check(b["test"] == ("memcpy" if tr == "shm" else "ucp_am_bw") and
              ((is_num(b["bytes_per_s"]) and b["absent"] is None and
                is_num(r["request_ratio"])) or
               (b["bytes_per_s"] is None and b["absent"] and
                r["request_ratio"] is None)), "model %s: baseline" % tr)

    # 2b. sweep: tiny push runs with checksums, every combo a row
    # (tcp with the node tuning knobs: never poll, 4 KiB AM messages)
    for tr, tune in (("tcp", ["--poll-us", "0", "--am-chunk", "4K",
                              "--path", "am"]),
                     ("shm", [])):
        out = os.path.join(tmp, "sweep-%s.json" % tr)
        rc, so, se = run(["sweep", "--transport", tr, "--chunks", "4K,64K",
                          "--batches", "1,8", "--iters", "3", "--check",
                          "--no-baseline", "--json", out] + tune, timeout=120)
        print(so + se)
        check(rc == 0, "sweep %s exits 0" % tr)
        j = load(out)
        check(j["command"] == "sweep" and j["env"]["transport"] == tr and
              j["check"] is True and j["baseline_test"] is None,
              "sweep %s: header" % tr)
        check((j["env"]["poll_us"], j["env"]["am_chunk"], j["env"]["path"]) ==
              ((0, 4096, "am") if tune else (100, 4 << 20, "auto")),
              "sweep %s: tuning" % tr)
        combos = sorted((r["chunk"], r["batch"], r["pattern"])
                        for r in j["results"])
        check(combos == sorted((c, b, p) for c in (4096, 65536)
                               for b in (1, 8)
                               for p in ("contig", "scatter")),
              "sweep %s: a row per combo" % tr)
        for r in j["results"]:
            what = "sweep %s %d x %d %s" % (tr, r["chunk"], r["batch"],
                                            r["pattern"])
            check(r["bytes"] == r["chunk"] * r["batch"] and
                  is_num(r["bytes_per_s"]) and is_num(r["lat_p50_ns"]) and
                  is_num(r["lat_p99_ns"]), what + ": figures")
            check(all(is_num(r[k + p]) for k in ("alloc", "data", "commit")
                      for p in ("_p50_ns", "_p99_ns")) and
                  all(r[k + "_p99_ns"] >= r[k + "_p50_ns"]
                      for k in ("alloc", "post", "data", "commit")),
                  what + ": phases, p50 and p99")
            check(r["ratio"] is None and r["baseline_bytes_per_s"] is None,
                  what + ": no baseline, ratio null")

    # 2c. sweep --dir pull over tcp: a row per combo, positive figures,
    # pull phases (alloc filled; data, commit 0); no timing asserted
    out = os.path.join(tmp, "sweep-pull.json")
    rc, so, se = run(["sweep", "--dir", "pull", "--chunks", "4K,64K",
                      "--batches", "1,8", "--iters", "3", "--no-baseline",
                      "--json", out], timeout=120)
    print(so + se)
    check(rc == 0, "sweep pull exits 0")
    j = load(out)
    check(j["op"] == "pull" and len(j["results"]) == 8 and
          all(r["dir"] == "pull" for r in j["results"]), "sweep pull: rows")
    for r in j["results"]:
        what = "sweep pull %d x %d %s" % (r["chunk"], r["batch"], r["pattern"])
        check(is_num(r["bytes_per_s"]) and is_num(r["lat_p50_ns"]) and
              is_num(r["lat_p99_ns"]) and is_num(r["alloc_p50_ns"]) and
              r["data_p50_ns"] == 0 and r["commit_p50_ns"] == 0,
              what + ": figures")
    for args in (["sweep", "--dir", "sideways"],
                 ["sweep", "--plot", "x.pdf"],
                 ["sweep", "--poll-us", "1000001"],
                 ["sweep", "--poll-us", "x"],
                 ["sweep", "--am-chunk", "1K"],
                 ["sweep", "--am-chunk"],
                 ["sweep", "--path", "udp"],
                 ["model", "--am-chunk", "2G"],
                 ["model", "--poll-us"]):
        rc, so, se = run(args)
        check(rc == 2 and se.strip() != "", "exit 2: " + " ".join(args))

    # 2d. --plot: an SVG when gnuplot is installed, else the skip message
    svg = os.path.join(tmp, "sweep.svg")
    rc, so, se = run(["sweep", "--dir", "both", "--chunks", "4K,64K",
                      "--batches", "1", "--pattern", "contig", "--iters", "3",
                      "--check", "--no-baseline", "--plot", svg], timeout=120)
    print(so + se)
    check(rc == 0, "sweep --plot exits 0")
    check("compares every pulled byte" in so, "sweep --check: pulls said")
    if shutil.which("gnuplot"):
        check(os.path.exists(svg) and os.path.getsize(svg) > 0 and
              "<svg" in open(svg).read(), "sweep --plot: SVG written")
    else:
        check("plot skipped: gnuplot not found" in so, "plot skipped")

    # 3. ucx_perftest not on PATH: absent, memcpy still runs, exit 0
    out = os.path.join(tmp, "noperf.json")
    empty = os.path.join(tmp, "empty")
    os.mkdir(empty)
    rc, so, se = run(["baseline", "--sizes", "4K", "--iters", "5",
                      "--json", out], env={"PATH": empty})
    print(so + se)
    check(rc == 0, "no perftest: exit 0")
    check("ucx_perftest not found" in so, "no perftest: said so")
    r = load(out)["results"][0]
    check(all(r[k] is None for k in KEYS), "no perftest: figures null")
    check(r["absent"].get("ucp_am_bw") == "ucx_perftest not found",
          "no perftest: reason in JSON")
    check(is_num(r["memcpy_bytes_per_s"]), "no perftest: memcpy runs")
    # ... and sweep and model still run, their baseline absent
    out = os.path.join(tmp, "noperf-sweep.json")
    rc, so, se = run(["sweep", "--chunks", "4K", "--batches", "1", "--iters",
                      "2", "--json", out], env={"PATH": empty})
    j = load(out) if rc == 0 else {"results": [{}], "baseline": [{}]}
    check(rc == 0 and j["results"][0].get("ratio", 0) is None and
          j["baseline"][0].get("absent") == "ucx_perftest not found",
          "no perftest: sweep runs, baseline absent (%d)" % rc)
    out = os.path.join(tmp, "noperf-model.json")
    rc, so, se = run(["model", "--prompt", "64", "--requests", "2",
                      "--layers", "4", "--json", out], env={"PATH": empty})
    b = load(out)["results"]["baseline"] if rc == 0 else {}
    check(rc == 0 and b.get("bytes_per_s", 0) is None and
          b.get("absent") == "ucx_perftest not found",
          "no perftest: model runs, baseline absent (%d)" % rc)

    # 4. a failing, then a hung ucx_perftest: absent, killed, exit 0
    for name, body, want in (("fail", "echo broken >&2; exit 3", "exit 3"),
                             ("hang", "exec sleep 300", "timed out")):
        d = os.path.join(tmp, name)
        os.mkdir(d)
        with open(os.path.join(d, "ucx_perftest"), "w") as f:
            f.write("#!/bin/sh\n" + body + "\n")
        os.chmod(os.path.join(d, "ucx_perftest"), 0o755)
        out = os.path.join(tmp, name + ".json")
        rc, so, se = run(["baseline", "--sizes", "4K", "--iters", "5",
                          "--timeout", "1", "--json", out],
                         env={"PATH": d + ":/usr/bin:/bin"}, timeout=60)
        print(so + se)
        r = load(out)["results"][0]
        check(rc == 0 and all(r[k] is None for k in KEYS),
              "%s perftest: absent, exit 0" % name)
        check(want in r["absent"].get("ucp_put_bw", ""),
              "%s perftest: reason '%s'" % (name, want))
        check(is_num(r["memcpy_bytes_per_s"]), "%s perftest: memcpy" % name)
    # 5. scale: a tiny run over tcp with checksums (2 initiators x 2 in
    # flight against a single stream); figures are numbers, no timing
    # asserted; then its bad inputs (exit 2)
    out = os.path.join(tmp, "scale.json")
    rc, so, se = run(["scale", "--procs", "2", "--per-proc", "2", "--chunk",
                      "64K", "--blocks", "4", "--seconds", "1", "--check",
                      "--json", out], timeout=180)
    print(so + se)
    check(rc == 0, "scale exits 0")
    j = load(out)
    check(j["command"] == "scale" and j["env"]["transport"] == "tcp" and
          j["check"] is True and j["procs"] == 2 and j["per_proc"] == 2 and
          j["chunk"] == 65536 and j["blocks"] == 4 and
          j["push_bytes"] == 4 * 65536, "scale: header")
    for name, procs, fl in (("single", 1, 1), ("scale", 2, 2)):
        p = j[name]
        check(p["procs"] == procs and p["in_flight"] == fl and
              p["data_path"] == "am", "scale %s: shape" % name)
        check(all(is_num(p[k]) for k in ("pushes", "bytes", "seconds",
                                         "bytes_per_s", "lat_p50_ns",
                                         "lat_p99_ns")) and
              p["bytes"] == p["pushes"] * 4 * 65536,
              "scale %s: figures" % name)
        check(p["failures"] == 0 and p["first_failure"] is None,
              "scale %s: no failures" % name)
        check(len(p["initiator_hwm_kib"]) == procs and
              all(is_num(v) for v in p["initiator_hwm_kib"]),
              "scale %s: initiator memory" % name)
    m = j["memory"]
    check(is_num(j["ratio"]) and j["goal"] == 0.8, "scale: ratio")
    check(m["target_pool_bytes"] == 2 * 2 * 2 * 4 * 65536 and
          all(is_num(m[k]) for k in ("target_rss_before_kib",
                                     "target_rss_after_kib",
                                     "target_hwm_kib")) and
          isinstance(m["target_rss_growth_kib"], int), "scale: memory")
    # every push (and each initiator's warm-up) collected by the target
    t = j["target"]
    check(t["collected"] == j["single"]["pushes"] + j["scale"]["pushes"] + 3
          and t["failed"] == 0 and t["never_arrived"] == 0,
          "scale: the target collected every push")
    for args in (["scale", "--transport", "rdma"],
                 ["scale", "--procs", "0"],
                 ["scale", "--procs", "65"],
                 ["scale", "--per-proc", "0"],
                 ["scale", "--per-proc", "1025"],
                 ["scale", "--chunk", "0"],
                 ["scale", "--chunk", "100"],
                 ["scale", "--chunk", "128M"],
                 ["scale", "--blocks", "0"],
                 ["scale", "--seconds", "0"],
                 ["scale", "--seconds", "3601"],
                 ["scale", "--procs", "64", "--per-proc", "1024"],
                 ["scale", "--json"],
                 ["scale", "--bogus"]):
        rc, so, se = run(args)
        check(rc == 2 and se.strip() != "", "exit 2: " + " ".join(args))
    # 6. rawam: a tiny raw UCX AM stream over tcp (its line with a positive
    # figure; no timing asserted), then its bad inputs (exit 2)
    rc, so, se = run(["rawam", "--msg", "64K", "--footprint", "4M",
                      "--iters", "200"], timeout=120)
    print(so + se)
    m = re.search(r"^raw UCX AM: msg 64K over a 4M footprint: "
                  r"([0-9.]+) MiB/s$", so, re.M)
    check(rc == 0 and m is not None and float(m.group(1)) > 0,
          "rawam exits 0 with a positive figure")
    for args in (["rawam", "--msg", "0"],
                 ["rawam", "--msg", "64K", "--footprint", "32K"],
                 ["rawam", "--transport", "rdma"],
                 ["rawam", "--iters", "0"],
                 ["rawam", "--bogus"]):
        rc, so, se = run(args)
        check(rc == 2 and se.strip() != "", "exit 2: " + " ".join(args))

    # 7. the two-host agent's answers on its socket: a malformed request and
    # a refused layout get ERR lines, a good one the target's address; every
    # target it forked ends when its socket closes; the agent goes on
    # serving and is stopped by PID
    s0 = socket.socket()
    s0.bind(("127.0.0.1", 0))
    port = s0.getsockname()[1]
    s0.close()
    agent = subprocess.Popen([BENCH, "target", "--listen",
                              "127.0.0.1:%d" % port],
                             stdout=subprocess.PIPE, text=True)
    try:
        check(agent.stdout.readline().startswith("kvx-bench target: serving"),
              "agent: serving")
        good = "KVXB1 tcp %s 1 2 16 1 64 2 8 100 4194304 0\n" % ("ab" * 16)
        for req, want in (("garbage\n", "ERR malformed request"),
                          ("KVXB1 tcp %s 1 2 16 1 64 2 8 100 4194304 7\n" %
                           ("ab" * 16), "ERR malformed request"),
                          ("KVXB1 tcp %s 1 2 16 1 64 2 999999999 100 4194304 "
                           "0\n" % ("ab" * 16), "ERR layout refused"),
                          (good, "127.0.0.1:")):
            c = socket.create_connection(("127.0.0.1", port), timeout=20)
            c.sendall(req.encode())
            line = c.makefile().readline()
            c.close()
            check(line.startswith(want), "agent answers %r with %r" %
                  (req.split(" ")[0].strip(), line.strip()))
        for _ in range(100):  # targets exit on EOF; the agent reaps them
            kids = subprocess.run(["pgrep", "-P", str(agent.pid)],
                                  capture_output=True, text=True).stdout
            if not kids.split():
                break
            time.sleep(0.1)
        check(not kids.split(), "agent: every target ended and was reaped")
        check(agent.poll() is None, "agent: still serving")
    finally:
        agent.kill()
        agent.wait()
finally:
    shutil.rmtree(tmp)

print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
