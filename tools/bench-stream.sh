#!/usr/bin/env bash
# Layer streaming on the GPU machine, in one command: zo-run bench of one architecture with the
# whole model resident and under --gpu-memory-budget, on the same warm device, then one line
# each: step time, PCIe floor (streamed bytes / measured host-to-device bandwidth) and the
# ratios to the floor and to the resident step.
#
#   ZO_RUN=path/to/zo-run tools/bench-stream.sh [RESULTS_DIR]
#
# ARCH    architecture (default opt-13b)      BUDGET  the budget (default 8GiB)
# STEPS / WARMUP   measured and warm-up steps (default 6 / 2)
# SEQ_LEN fixed prompt length instead of the default task's (needed without assets/)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
ZO_RUN=${ZO_RUN:-.gpu/zo-run}
[[ -x "$ZO_RUN" ]] || { echo "bench-stream: no zo-run binary (set ZO_RUN)" >&2; exit 1; }
ARCH=${ARCH:-opt-13b}
BUDGET=${BUDGET:-8GiB}
STEPS=${STEPS:-6}
WARMUP=${WARMUP:-2}
out=${1:-runs/bench-stream-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/targets/x86_64-linux/lib
len=()
[[ -n "${SEQ_LEN:-}" ]] && len=(--seq-len "$SEQ_LEN")
common=(bench --arch "$ARCH" --family lozo --device cuda --batch 16 --steps "$STEPS"
    --warmup "$WARMUP" --json "${len[@]}")
"$ZO_RUN" "${common[@]}" >"$out/$ARCH.zo.lozo.resident.json"
"$ZO_RUN" "${common[@]}" --gpu-memory-budget "$BUDGET" >"$out/$ARCH.zo.lozo.budget-$BUDGET.json"
python3 - "$out/$ARCH.zo.lozo.resident.json" "$out/$ARCH.zo.lozo.budget-$BUDGET.json" <<'PY'
import json, sys
res, st = (json.load(open(p)) for p in sys.argv[1:])
s = st["streaming"]
print(f"{res['arch']} lozo: resident {res['step_ms']['median']:.1f} ms; under "
      f"{st['gpu_memory_budget'] / 2**30:.1f} GiB: {s['resident_layers']} resident + "
      f"{s['streamed_layers']} streamed layers, step {st['step_ms']['median']:.1f} ms, PCIe floor "
      f"{s['pcie_floor_ms']:.1f} ms at {s['h2d_bandwidth_gbs']:.1f} GB/s: "
      f"{s['ratio_to_pcie_floor']:.2f}x the floor, "
      f"{st['step_ms']['median'] / res['step_ms']['median']:.1f}x the resident step")
PY
