#!/usr/bin/env python3
"""Checks a `zo-run export` folder with HF transformers (and PEFT for a lora export).

Usage: python tools/check_export.py EXPORT_DIR BASE_MODEL_DIR [--data assets/data/sentiment] [--n 64]

1. Loads the merged weights in EXPORT_DIR with transformers and scores the first N test
   examples of the sentiment task (MeZO's template, candidates " terrible" / " great"); the
   printed accuracy and mean loss should equal `zo-run eval --model EXPORT_DIR --limit N`.
2. If EXPORT_DIR/adapter holds a PEFT adapter, applies it to BASE_MODEL_DIR with PEFT and
   reports the largest logit difference against the merged weights (f32 rounding only).

Needs torch, transformers (and peft for step 2). Not run in CI.
"""
import argparse
import json
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def load(path):
    return AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager"
    ).eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("export_dir")
    ap.add_argument("base_dir")
    ap.add_argument("--data", default="assets/data/sentiment")
    ap.add_argument("--n", type=int, default=64)
    a = ap.parse_args()

    tok = AutoTokenizer.from_pretrained(a.export_dir)
    merged = load(a.export_dir)
    with open(os.path.join(a.data, "test.jsonl")) as f:
        examples = [json.loads(line) for line in f][: a.n]
    cands = [tok(w, add_special_tokens=False).input_ids[0] for w in (" terrible", " great")]
    correct, loss = 0, 0.0
    with torch.no_grad():
        for e in examples:
            ids = tok(e["text"] + " It was", return_tensors="pt").input_ids
            lp = torch.log_softmax(merged(ids).logits[0, -1].double(), -1)[cands]
            correct += int(lp.argmax().item() == e["label"])
            loss += (torch.logsumexp(lp, 0) - lp[e["label"]]).item()
    n = len(examples)
    print(json.dumps({"merged": {"n": n, "accuracy": correct / n, "mean_loss": loss / n}}))

    adapter = os.path.join(a.export_dir, "adapter")
    if os.path.exists(os.path.join(adapter, "adapter_config.json")):
        from peft import PeftModel

        ids = tok(examples[0]["text"] + " It was", return_tensors="pt").input_ids
        base = load(a.base_dir)
        with torch.no_grad():
            l_base = base(ids).logits[0, -1]
            peft = PeftModel.from_pretrained(base, adapter).eval()
            l_peft = peft(ids).logits[0, -1]
            l_merged = merged(ids).logits[0, -1]
        print(json.dumps({"peft": {
            "adapter_moves_logits_by": (l_peft - l_base).abs().max().item(),
            "peft_vs_merged_max_abs_diff": (l_peft - l_merged).abs().max().item(),
        }}))


if __name__ == "__main__":
    main()
