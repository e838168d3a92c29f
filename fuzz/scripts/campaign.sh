#!/usr/bin/env bash
# Runs every fuzz target in turn (how fuzz/README.md's numbers were produced).
#
#   fuzz/scripts/campaign.sh [LOG_DIR]
#
# Stable toolchain: cargo-fuzz needs `-Z` flags, which RUSTC_BOOTSTRAP=1 allows. Each target
# starts from the committed corpus (fuzz/corpus/<target>) plus its working corpus
# (fuzz/corpus-work/<target>, not committed), and stops at the first crash, leaving the input in
# fuzz/artifacts/<target>/. Budgets below; override with DISPATCH_SECS, FOLLOWER_SECS,
# DECODE_RUNS. Leak detection is off: LeakSanitizer takes a `BytesMut` whose pointer has advanced
# to the end of its allocation for a leak (seen on the first runs); memory growth is still
# caught by -rss_limit_mb.
set -euo pipefail
cd "$(dirname "$0")/.."
logs="${1:-/tmp/rave-fuzz-logs}"
mkdir -p "$logs"
export RUSTC_BOOTSTRAP=1
# No leak check at exit either: the harness lives in a static that is never dropped.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
targets=(dispatch follower frame_client server_message)
for t in "${targets[@]}"; do
  mkdir -p "corpus-work/$t" "corpus/$t"
done
cargo fuzz build -O >"$logs/build.log" 2>&1

run() {
  local target=$1
  shift
  echo "== $target $*"
  nice -n 10 cargo fuzz run -O "$target" "corpus-work/$target" "corpus/$target" -- \
    -print_final_stats=1 -timeout=30 -rss_limit_mb=2048 -detect_leaks=0 "$@" >"$logs/$target.log" 2>&1 ||
    echo "!! $target stopped: see $logs/$target.log and artifacts/$target/"
  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|Done )' "$logs/$target.log" || true
}

run dispatch -max_total_time="${DISPATCH_SECS:-2400}"
run follower -max_total_time="${FOLLOWER_SECS:-900}"
run frame_client -runs="${DECODE_RUNS:-5000000}"
run server_message -runs="${DECODE_RUNS:-5000000}"
