#!/usr/bin/env bash
# One command on the GPU machine: zo-run bench and the PyTorch baselines on the same
# architectures, batch and prompt lengths, then one markdown table.
#
#   ZO_RUN=path/to/zo-run PYTHON=python3 tools/bench-gpu.sh [RESULTS_DIR]
#
# ZO_RUN   the zo-run binary (default: .gpu/zo-run, else target/release/zo-run)
# PYTHON   python with torch, transformers and peft (default: python3)
# ARCHS    space-separated archs (default: smollm2-135m opt-125m opt-350m opt-1.3b opt-13b)
# STEPS / WARMUP   measured and warm-up steps per run (default 10 / 3; the whole script stays
#          well under 10 minutes on an H100)
# SEQ_LEN  fixed prompt length instead of the default task's (needed without assets/)
#
# Every JSON goes to RESULTS_DIR (default runs/bench-gpu-<date>); a failing run stops the script
# with the command that failed.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
ZO_RUN=${ZO_RUN:-}
if [[ -z "$ZO_RUN" ]]; then
    for c in .gpu/zo-run target/release/zo-run; do
        [[ -x "$c" ]] && ZO_RUN=$c && break
    done
fi
[[ -n "$ZO_RUN" && -x "$ZO_RUN" ]] || { echo "bench-gpu: no zo-run binary (set ZO_RUN)" >&2; exit 1; }
PYTHON=${PYTHON:-python3}
ARCHS=${ARCHS:-"smollm2-135m opt-125m opt-350m opt-1.3b opt-13b"}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
out=${1:-runs/bench-gpu-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/targets/x86_64-linux/lib

run() {
    # run LOG CMD...: stdout to LOG, stderr to the terminal; stop on failure.
    local log=$1
    shift
    echo "+ $*" >&2
    if ! "$@" >"$log"; then
        echo "bench-gpu: FAILED: $*" >&2
        exit 1
    fi
}

len_args=()
[[ -n "${SEQ_LEN:-}" ]] && len_args=(--seq-len "$SEQ_LEN")

for arch in $ARCHS; do
    lengths="$out/$arch.lengths.json"
    for fam in lozo mezo mezo-lora; do
        # MeZO runs in place on the GPU (+eps, -2eps, +eps), as its reference trainer does.
        extra=()
        [[ $fam == mezo ]] && extra=(--in-place)
        run "$out/$arch.zo.$fam.json" "$ZO_RUN" bench --arch "$arch" --family "$fam" "${extra[@]}" \
            --device cuda --batch 16 --steps "$STEPS" --warmup "$WARMUP" --json \
            --dump-lengths "$lengths" "${len_args[@]}"
    done
    torch_len=(--lengths-file "$lengths")
    [[ -n "${SEQ_LEN:-}" ]] && torch_len=(--seq-len "$SEQ_LEN")
    run "$out/$arch.torch.json" "$PYTHON" tools/torch_baseline.py --arch "$arch" \
        --method all --device cuda --dtype bf16 --batch 16 --steps "$STEPS" \
        --warmup "$WARMUP" "${torch_len[@]}"
done

"$PYTHON" - "$out" $ARCHS <<'PY'
import json, sys
out, archs = sys.argv[1], sys.argv[2:]
def load(p):
    with open(p) as f:
        return json.load(f)
rows = ["| arch | ours lozo ms | ours mezo ms | ours mezo-lora ms | torch mezo ms | torch lozo ms "
        "| torch mezo-lora ms | torch forward ms | torch lozo / ours lozo | torch mezo / ours mezo "
        "| torch mezo-lora / ours mezo-lora | ours lozo / compute floor | lozo 20k steps h |",
        "|" + "---|" * 13]
for a in archs:
    zo = {f: load(f"{out}/{a}.zo.{f}.json") for f in ("lozo", "mezo", "mezo-lora")}
    t = {r["method"]: r for r in load(f"{out}/{a}.torch.json")["results"]}
    m = lambda r: r["step_ms"]["median"]
    rows.append("| " + " | ".join([
        a, f"{m(zo['lozo']):.2f}", f"{m(zo['mezo']):.2f}", f"{m(zo['mezo-lora']):.2f}",
        f"{m(t['mezo']):.2f}", f"{m(t['lozo']):.2f}", f"{m(t['mezo-lora']):.2f}",
        f"{m(t['forward']):.2f}",
        f"{m(t['lozo']) / m(zo['lozo']):.2f}x", f"{m(t['mezo']) / m(zo['mezo']):.2f}x",
        f"{m(t['mezo-lora']) / m(zo['mezo-lora']):.2f}x",
        f"{zo['lozo']['ratio_to_compute_floor']:.2f}x", f"{zo['lozo']['est_hours_run']:.3f}",
    ]) + " |")
dev = load(f"{out}/{archs[0]}.zo.lozo.json")["device_name"]
table = f"device: {dev}\n\n" + "\n".join(rows)
print(table)
with open(f"{out}/table.md", "w") as f:
    f.write(table + "\n")
PY
echo "results in $out" >&2
