#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ one after the other, each for SECONDS (default 60).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      targets: roster when control (default: all)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Works on the stable toolchain: cargo-fuzz
# passes nightly-only flags (-Zsanitizer, -Cpasses=sancov), which RUSTC_BOOTSTRAP=1 allows.
#
# Environment:
#   FUZZ_SANITIZER    address (default) or none (no AddressSanitizer; faster, finds panics only)
#   FUZZ_WORK         corpus, artifacts and logs (default /var/tmp/autoprov-fuzz)
#   CARGO_TARGET_DIR  build output (default /var/tmp/autoprov-fuzz-target)
#   FUZZ_ARGS         extra libFuzzer flags, e.g. "-max_len=8192"
#
# Each target runs in one process on one core (-jobs=1 -workers=1), with -timeout=5 (an input
# running longer is a hang) and -rss_limit_mb=2048. The seeds in fuzz/seeds/TARGET are read,
# never written; inputs found are added to FUZZ_WORK/corpus/TARGET, kept between runs.
# A crash, hang or OOM is saved in FUZZ_WORK/artifacts/TARGET/ and makes the script exit 1
# (after the other targets have run); see fuzz/README.md for what to do with it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(roster when control)
case $seconds in '' | *[!0-9]*) echo "SECONDS must be a number, got '$seconds'" >&2; exit 2 ;; esac

sanitizer=${FUZZ_SANITIZER:-address}
work=${FUZZ_WORK:-/var/tmp/autoprov-fuzz}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/autoprov-fuzz-target}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version > /dev/null 2>&1; then
  echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
  exit 2
fi

fuzz=(cargo fuzz)
# Pin the stable toolchain when rustup is there (a nightly may be installed by hand, or not).
if command -v rustup > /dev/null 2>&1; then fuzz=(cargo +stable fuzz); fi
common=(--fuzz-dir "$root/fuzz" --sanitizer "$sanitizer" --target-dir "$CARGO_TARGET_DIR")

echo "== building ${targets[*]} (sanitizer $sanitizer) into $CARGO_TARGET_DIR"
for t in "${targets[@]}"; do
  "${fuzz[@]}" build "${common[@]}" "$t"
done

bin=$CARGO_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release
failed=()
summary=()
for t in "${targets[@]}"; do
  corpus=$work/corpus/$t
  artifacts=$work/artifacts/$t
  logs=$work/logs
  mkdir -p "$corpus" "$artifacts" "$logs"
  before=$(find "$artifacts" -type f | sort)
  echo "== $t: ${seconds}s, corpus $corpus + seeds fuzz/seeds/$t"
  # The binary built above runs directly, so a source change meanwhile does not rebuild it.
  # libFuzzer's -jobs mode writes the worker's output to ./fuzz-0.log (so run from $logs)
  # and prints it when the worker ends: the whole output goes to $log.
  log=$logs/$t-$(date -u +%Y%m%dT%H%M%SZ).log
  status=0
  (
    cd "$logs"
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    "$bin/$t" "$corpus" "$root/fuzz/seeds/$t" \
      -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -jobs=1 -workers=1 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 ${FUZZ_ARGS:-}
  ) > "$log" 2>&1 || status=$?
  rm -f "$logs/fuzz-0.log"
  new=$(comm -13 <(echo "$before") <(find "$artifacts" -type f | sort) | sed '/^$/d')
  found=$(grep -c . <<< "$new" || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" 2> /dev/null | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" 2> /dev/null | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" 2> /dev/null | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/cov \1, ft \2, corpus \3/p' <<< "$last")
  line="$t: ${seconds}s, ${execs:-?} execs (${speed:-?}/s), ${cov:-no coverage line}, $found new artifacts, exit $status"
  echo "$line"
  echo "   log: $log"
  summary+=("$line")
  if [ "$status" -ne 0 ] || [ "$found" -gt 0 ]; then
    failed+=("$t")
    grep -E '^(==[0-9]+==|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$log" 2> /dev/null | head -20 || true
    sed 's/^/   artifact: /' <<< "$new"
  fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "findings in: ${failed[*]} (artifacts under $work/artifacts/)" >&2
  exit 1
fi
