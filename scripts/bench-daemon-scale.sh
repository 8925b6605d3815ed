#!/usr/bin/env bash
# First imports through the daemon: seconds from a roster's rename into inbox/ until its
# report.json appears, for the bench's rosters and 60 rules (BENCHMARKS.md, session 38:
# "The 10k figure through the daemon"). Needs `cargo bench --bench whole -- prepare` first
# (it writes BENCH_DIR/profile and the rosters).
#
# Usage: scripts/bench-daemon-scale.sh BIN ROWS [RUNS]     e.g. BIN=target/release/autoprov ROWS=10000
set -euo pipefail
BIN=$(realpath "$1"); ROWS=$2; RUNS=${3:-5}
BENCH_DIR=${BENCH_DIR:-/var/tmp/autoprov-bench}
PROFILE=$BENCH_DIR/profile
ROSTER=$BENCH_DIR/roster-$ROWS.csv
WORK=$(mktemp -d /var/tmp/autoprov-dscale.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
[ -f "$ROSTER" ] && [ -d "$PROFILE/data/store" ] || { echo "run cargo bench --bench whole -- prepare first" >&2; exit 2; }
sed "s|^data_dir.*|data_dir = \"$WORK/data\"\n[source]\nmode = \"watch\"\nwatch_dir = \"$WORK/watch\"|; s|^socket = .*|socket = \"$WORK/ap.sock\"|" \
  "$PROFILE/autoprov.toml" > "$WORK/autoprov.toml"
for _ in $(seq "$RUNS"); do
  rm -rf "$WORK/data"; cp -a "$PROFILE/data" "$WORK/data"; mkdir -p "$WORK/watch"
  "$BIN" --config "$WORK/autoprov.toml" run > "$WORK/daemon.log" 2>&1 &
  pid=$!
  until "$BIN" --config "$WORK/autoprov.toml" status > /dev/null 2>&1; do sleep 0.1; done
  sleep 1
  cp "$ROSTER" "$WORK/data/drop/inbox/.r.csv.part"; sync
  python3 - "$WORK/data/drop" <<'PY'
import glob, os, sys, time
d = sys.argv[1]
t = time.monotonic()
os.rename(d + "/inbox/.r.csv.part", d + "/inbox/r.csv")
while not any(glob.glob(f"{d}/{f}/*_r.csv.report.json") for f in ("processed", "rejected", "held")):
    time.sleep(0.001)
print(f"{time.monotonic() - t:.4f} s")
PY
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
