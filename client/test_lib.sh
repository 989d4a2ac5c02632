# Shared by the CLI test scripts (sourced, not run): a private $tmp folder,
# background processes in pids[] stopped by PID on exit, ok/bad counting,
# expect (exit code + no sanitizer report) and json (a python expression
# over a JSON file).
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }

# expect RC DESC -- CMD...: runs CMD, checks its exit code
expect() {
  local want=$1 desc=$2; shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ $rc -eq "$want" ]; then ok "$desc (exit $rc)"; else
    bad "$desc: exit $rc, want $want"; sed 's/^/    /' "$tmp/out" "$tmp/err"
  fi
  if grep -qE 'Sanitizer|runtime error:' "$tmp/err"; then
    bad "$desc: sanitizer report"; cat "$tmp/err"
  fi
}

# json FILE EXPR: evaluates a python expression over the parsed object j
json() {
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# stop_all WHAT: SIGTERM every process in pids[]; each must exit 0 and no
# stderr file in $tmp may hold a sanitizer report.
stop_all() {
  for i in "${!pids[@]}"; do
    kill "${pids[$i]}"; wait "${pids[$i]}"; local rc=$?
    [ $rc -eq 0 ] && ok "$1 $i exits 0 on SIGTERM" || bad "$1 $i exit $rc"
    unset "pids[$i]"
  done
  if cat "$tmp"/*.err | grep -qE 'Sanitizer|runtime error:'; then
    bad "sanitizer report from a $1"; cat "$tmp"/*.err
  fi
}
