#!/usr/bin/env bash
# Fuzz the socket-free request path: every target under fuzz/fuzz_targets/, one after the other,
# for FUZZ_SECONDS each (default 1800: half an hour). What is fuzzed and asserted: docs/FUZZING.md.
#
#   scripts/fuzz.sh                       every target, 30 minutes each
#   FUZZ_SECONDS=60 scripts/fuzz.sh       a one-minute smoke run
#   FUZZ_TARGETS=request_path scripts/fuzz.sh
#
# Needs: rustup (the nightly toolchain and cargo-fuzz are installed if missing) and a C++
# compiler (libFuzzer is C++). Runs one fuzzing process, on one core.
#
# The committed seeds in fuzz/corpus/<target>/ are only read; what a run discovers goes to
# fuzz/work/corpus/<target>/ (ignored by git), so the next run starts where this one stopped.
# A crash stops the script: the input is in fuzz/artifacts/<target>/, and the command to replay
# it is printed. CARGO_TARGET_DIR is respected when set.
set -euo pipefail

cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-1800}
# Longest input tried: the targets ignore request streams over 4 KiB anyway.
max_len=${FUZZ_MAX_LEN:-4200}

if ! command -v rustup >/dev/null; then
    echo "fuzz: rustup is needed to install the nightly toolchain (https://rustup.rs)" >&2
    exit 1
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: installing the nightly toolchain (cargo-fuzz needs its sanitizer flags)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi
if ! command -v c++ >/dev/null && ! command -v clang++ >/dev/null && ! command -v g++ >/dev/null; then
    echo "fuzz: libFuzzer needs a C++ compiler: apt-get install -y clang (or g++)" >&2
    exit 1
fi

targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
summary=()
for target in $targets; do
    work=fuzz/work/corpus/$target
    log=fuzz/work/$target.log
    mkdir -p "$work"
    echo "fuzz: $target for ${seconds}s (log: $log)"
    start=$SECONDS
    # -timeout: one input taking 10 s is a hang, reported like a crash.
    if ! cargo +nightly fuzz run "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -print_final_stats=1 \
        2>&1 | tee "$log"; then
        echo "fuzz: $target FAILED; the input is in fuzz/artifacts/$target/" >&2
        echo "fuzz: replay with: cargo +nightly fuzz run $target fuzz/artifacts/$target/<file>" >&2
        echo "fuzz: minimise with: cargo +nightly fuzz tmin $target fuzz/artifacts/$target/<file>" >&2
        exit 1
    fi
    elapsed=$((SECONDS - start))
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    summary+=("$target: ${runs:-?} executions in ${elapsed}s (${rate:-?}/s); corpus $(find "$work" -type f | wc -l) inputs")
    summary+=("  ${done_line:-no DONE line: see $log}")
done

echo
echo "fuzz: summary (cov = code edges reached, ft = features, corp = inputs/size in the corpus)"
printf '%s\n' "${summary[@]}"
