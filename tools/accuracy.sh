#!/usr/bin/env bash
# The accuracy table: zero-shot, each ZO family with its recipe, and the first-order references,
# on the default model and task (or --model/--data), one row each:
#   method | test accuracy | steps | forward passes | wall time | device
#
#   tools/accuracy.sh [--device cpu|cuda|auto] [--steps N] [--dev-limit N] [--test-limit N]
#                     [--model DIR] [--data DIR] [--out DIR] [--only NAME[,NAME...]]
#                     [--gguf FILE]
#
# --gguf imports FILE (the default model's Q4_1 GGUF from assets/.cache) into --model first,
# for a machine that was sent the GGUF and the data but not the imported weights. On a GPU:
#   tools/accuracy.sh --device cuda --steps 20000 --dev-limit all --test-limit all
#
# --steps is the step count of the two-sided recipes; FZOO (q = 4 one-sided, five variants per
# step) runs 2/5 of it, so every ZO row scores the same number of forward passes. Each row's
# run goes to OUT/NAME/ (metrics.jsonl, curve.svg, checkpoint.json, summary.json); the table
# goes to stdout and OUT/table.md, the rows to OUT/results.json. Test accuracy is that of the
# best dev state. LoZO's learning rate was chosen on dev; the other rows take their preset's
# size-scaled learning rate (BENCHMARKS.md, "Accuracy", says which were swept).
# The first-order rows run tools/first_order.py and are skipped, saying why, without PyTorch.
# ZO_RUN names the zo-run binary (default: target/release/zo-run, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

device=cpu steps=500 dev_limit=200 test_limit=500 out=runs/accuracy only=""
model=assets/smollm2-135m data=assets/data/sentiment gguf=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --dev-limit) dev_limit="$2"; shift 2 ;;
        --test-limit) test_limit="$2"; shift 2 ;;
        --model) model="$2"; shift 2 ;;
        --data) data="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        --gguf) gguf="$2"; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "accuracy.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
zo_run="${ZO_RUN:-target/release/zo-run}"
if [ ! -x "$zo_run" ]; then
    cargo build --release --features cuda --bin zo-run
fi
mkdir -p "$out"
if [ -n "$gguf" ]; then
    "$zo_run" import-gguf "$gguf" "$model"
fi
limits=()
[ "$dev_limit" != all ] && limits+=(--dev-limit "$dev_limit")
[ "$test_limit" != all ] && limits+=(--test-limit "$test_limit")
fzoo_steps=$(( steps * 2 / 5 ))
eval_every=$(( steps / 5 > 0 ? steps / 5 : 1 ))
fzoo_eval_every=$(( fzoo_steps / 5 > 0 ? fzoo_steps / 5 : 1 ))

# name | zo-run train flags
recipes=(
    "lozo|--preset lozo --lr 2e-5 --steps $steps --eval-every $eval_every"
    "mezo-lora|--preset mezo-lora --steps $steps --eval-every $eval_every"
    "fzoo-lora|--preset mezo-lora --optimizer fzoo --one-sided --q 4 --dist rademacher --steps $fzoo_steps --eval-every $fzoo_eval_every"
    "mezo|--preset mezo --lr 1e-5 --steps $steps --eval-every $eval_every $([ "$device" = cpu ] || echo --in-place)"
)

wanted() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

rows="$out/results.jsonl"
: > "$rows"
for r in "${recipes[@]}"; do
    name="${r%%|*}" flags="${r#*|}"
    wanted "$name" || continue
    echo "== $name: zo-run train $flags" >&2
    mkdir -p "$out/$name"
    # shellcheck disable=SC2086  # flags are word lists
    "$zo_run" train --device "$device" --model "$model" --data "$data" --out "$out/$name" \
        --test-before "${limits[@]}" $flags \
        | tail -n 1 > "$out/$name/summary.json.tmp"
    mv "$out/$name/summary.json.tmp" "$out/$name/summary.json"
    python3 - "$name" "$out/$name" >> "$rows" <<'EOF'
import json, sys
name, d = sys.argv[1], sys.argv[2]
s = json.load(open(f"{d}/summary.json"))
ck = json.load(open(f"{d}/checkpoint.json"))
c = ck["config"]
variants = c["q"] + 1 if c["one_sided"] else 2 * c["q"]
print(json.dumps({"method": name, "test_accuracy": s["test_accuracy"],
                  "test_accuracy_zero_shot": s.get("test_accuracy_before"),
                  "dev_accuracy_before": s["dev_accuracy_before"], "best_dev": s["best"],
                  "steps": s["steps"], "forward_passes": s["steps"] * variants * c["batch"],
                  "wall_s": s["wall_s"], "device": s["device"], "config": c}))
EOF
done

for mode in lora full; do
    wanted "first-order-$mode" || continue
    echo "== first-order $mode" >&2
    fo_limits=()
    [ "$dev_limit" != all ] && fo_limits+=(--dev-limit "$dev_limit")
    [ "$test_limit" != all ] && fo_limits+=(--test-limit "$test_limit")
    if python3 tools/first_order.py --mode "$mode" --steps "$steps" --model "$model" --data "$data" \
        --eval-every "$eval_every" "${fo_limits[@]}" > "$out/first-order-$mode.json"; then
        cat "$out/first-order-$mode.json" >> "$rows"
    else
        echo "first-order $mode: skipped (see the message above)" >&2
    fi
done

python3 - "$rows" "$out" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
zs = next((r["test_accuracy_zero_shot"] for r in rows if r.get("test_accuracy_zero_shot") is not None), None)
lines = ["| method | test accuracy | steps | forward passes | wall time | device |",
         "|---|---|---|---|---|---|"]
if zs is not None:
    lines.append(f"| zero-shot | {zs:.3f} | 0 | 0 | - | - |")
for r in rows:
    acc = r["test_accuracy"]
    lines.append(f"| {r['method']} | {acc:.3f} | {r['steps']} | {r['forward_passes']} | "
                 f"{r['wall_s']:.0f} s | {r['device']} |")
table = "\n".join(lines)
print(table)
open(f"{sys.argv[2]}/table.md", "w").write(table + "\n")
json.dump(rows, open(f"{sys.argv[2]}/results.json", "w"), indent=1)
EOF
