#!/usr/bin/env bash
# The GPU checks of a change, in one run on the GPU machine: every test binary with
# ZO_REQUIRE_GPU=1 (the family cases and the backend's training step, now on the GPU as well
# as on the emulated device), then zo-run bench before and after the change, interleaved on
# the same warm device so the step times compare.
#
#   tools/gpu-check.sh TESTS_DIR BEFORE_ZO_RUN AFTER_ZO_RUN OUT_DIR
#
# TESTS_DIR   test binaries built here (cargo test --release --features cuda --no-run, then
#             copy target/release/deps/<test>-<hash> without the .d files, and libzo.so:
#             the C ABI's tests build their C clients against the libzo.so beside them)
# BEFORE_ZO_RUN / AFTER_ZO_RUN   zo-run built from the commit before and after the change
# ARCHS       archs to bench (default: smollm2-135m opt-1.3b); STEPS / WARMUP default 10 / 4
# GEN_ASSETS  an assets/ directory (model + squad task): also time batched greedy decoding of
#             SQuAD dev prompts with AFTER_ZO_RUN generate, on the GPU and on the CPU, into
#             OUT_DIR/generate-{cuda,cpu}-b<batch>.jsonl (the last line is the summary)
# KERNEL_BENCH  the gpu_kernels bench binary (cargo bench --features cuda --bench gpu_kernels
#             --no-run): run it into OUT_DIR/kernels.log and copy its summary lines (shrink and
#             pack against the GEMM, the shrink tiling) into summary.txt (about 1.5 minutes)
# RESULTS_DIR  also run tools/bench-gpu.sh with AFTER_ZO_RUN into RESULTS_DIR (the raw JSON
#             of every arch and method, to commit under benches/results/<date>-<device>/)
#
# Writes OUT_DIR/tests.log, OUT_DIR/<arch>-{before,after}.json and OUT_DIR/summary.txt; exits
# non-zero if a test binary fails.
set -uo pipefail
[[ $# -eq 4 ]] || { sed -n '2,22p' "$0" >&2; exit 2; }
tests=$1 before=$2 after=$3 out=$4
mkdir -p "$out"
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/targets/x86_64-linux/lib
export ZO_REQUIRE_GPU=1
ARCHS=${ARCHS:-"smollm2-135m opt-1.3b"}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-4}

failed=0
for t in "$tests"/*; do
    [[ -x "$t" && ! -d "$t" && $t != *.so ]] || continue
    echo "== $(basename "$t")" >>"$out/tests.log"
    if ! "$t" --test-threads 1 >>"$out/tests.log" 2>&1; then
        echo "FAILED: $(basename "$t")" | tee -a "$out/summary.txt"
        failed=1
    fi
done
grep -h "^test result" "$out/tests.log" | sort | uniq -c >>"$out/summary.txt"

for arch in $ARCHS; do
    for which in before after before after; do
        bin=$before
        [[ $which == after ]] && bin=$after
        "$bin" bench --arch "$arch" --family lozo --device cuda --steps "$STEPS" \
            --warmup "$WARMUP" --json >"$out/$arch-$which.json" 2>>"$out/bench.log" \
            || echo "bench failed: $arch $which" | tee -a "$out/summary.txt"
    done
    for which in before after; do
        printf '%s %s: ' "$arch" "$which" >>"$out/summary.txt"
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r.get("step_ms", r))' \
            "$out/$arch-$which.json" >>"$out/summary.txt" 2>&1
    done
done
if [[ -n ${GEN_ASSETS:-} ]]; then
    for dev in cuda cpu; do
        for b in 1 32; do
            f="$out/generate-$dev-b$b.jsonl"
            "$after" generate --device "$dev" --model "$GEN_ASSETS/smollm2-135m" \
                --task "$GEN_ASSETS/data/squad/task.json" --data "$GEN_ASSETS/data/squad" \
                --split dev --limit 64 --batch "$b" >"$f" 2>>"$out/bench.log" \
                || echo "generate failed: $dev b$b" | tee -a "$out/summary.txt"
            printf 'generate %s batch %s: ' "$dev" "$b" >>"$out/summary.txt"
            tail -1 "$f" >>"$out/summary.txt"
        done
    done
fi
if [[ -n ${KERNEL_BENCH:-} ]]; then
    "$KERNEL_BENCH" --bench >"$out/kernels.log" 2>&1 \
        || echo "kernel bench failed" | tee -a "$out/summary.txt"
    grep -E "summary|rows per block|skipping" "$out/kernels.log" >>"$out/summary.txt"
fi
if [[ -n ${RESULTS_DIR:-} ]]; then
    ZO_RUN=$after "$(dirname "$0")/bench-gpu.sh" "$RESULTS_DIR" >>"$out/summary.txt" 2>&1 \
        || echo "bench-gpu.sh failed" | tee -a "$out/summary.txt"
fi
cat "$out/summary.txt"
exit $failed
