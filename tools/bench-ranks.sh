#!/usr/bin/env bash
# Steps per second of one LoZO run on 1, 2 and 3 MPI ranks at the same global batch, beside a
# single rank on one thread at two batch sizes (which give the per-pair cost and the fixed
# per-step cost of the scaling model in BENCHMARKS.md), and a check that every run at the
# full batch wrote the same checkpoint. Needs zo-run built with --features mpi and assets/
# (tools/fetch-assets).
#
#   tools/bench-ranks.sh [OUT.json]      env: STEPS (20), BATCH (16), ZO_RUN
set -euo pipefail
cd "$(dirname "$0")/.."
zo_run="${ZO_RUN:-target/release/zo-run}"
steps="${STEPS:-20}"
batch="${BATCH:-16}"
out_json="${1:-/dev/stdout}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

args=(train --device cpu --preset lozo --steps "$steps" --eval-every 0 --dev-limit 8
      --test-limit 8 --train-limit 200)

# name, batch, ranks (0: no MPI), threads per rank (empty: zo-run's default)
run() {
    local name="$1" b="$2" n="$3" threads="$4"
    local cmd=("$zo_run" "${args[@]}" --batch "$b" --out "$work/$name")
    if [ "$n" -gt 0 ]; then
        cmd=(mpirun --oversubscribe -np "$n" "${cmd[@]}" --distributed mpi)
    fi
    if [ -n "$threads" ]; then
        cmd=(env RAYON_NUM_THREADS="$threads" "${cmd[@]}")
    fi
    "${cmd[@]}" > "$work/$name.log" 2>&1 || { cat "$work/$name.log" >&2; exit 1; }
}

run one_thread_full "$batch" 0 1
run one_thread_half "$((batch / 2))" 0 1
run ranks1 "$batch" 0 ""
run ranks2 "$batch" 2 ""
run ranks3 "$batch" 3 ""
for n in 2 3; do
    cmp -s "$work/ranks1/checkpoint.json" "$work/ranks$n/checkpoint.json" \
        || { echo "the $n-rank checkpoint differs from the one-rank one" >&2; exit 1; }
done

python3 - "$work" "$steps" "$batch" "$(nproc)" > "$out_json" <<'PY'
import json, sys
work, steps, batch, cores = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def rate(name):
    lines = [json.loads(l) for l in open(f"{work}/{name}/metrics.jsonl")]
    # The rate after the last step: training steps only (the dev evaluation before the
    # first step is not timed).
    return [l for l in lines if l["type"] == "step"][-1]["steps_per_s"]
runs = {n: rate(n) for n in ["one_thread_full", "one_thread_half", "ranks1", "ranks2", "ranks3"]}
print(json.dumps({
    "bench": "ranks", "preset": "lozo", "model": "smollm2-135m", "steps": steps,
    "global_batch": batch, "pairs_per_step": 2 * batch, "cores": cores,
    "steps_per_s": runs,
    "same_checkpoint_on_1_2_3_ranks": True,
}, indent=1))
PY
