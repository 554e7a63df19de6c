#!/usr/bin/env python3
"""Check `zo-run import-gguf` against transformers' own GGUF loader (not run in CI).

Usage: check_gguf_import.py MODEL.gguf IMPORTED_DIR

IMPORTED_DIR is the output of `zo-run import-gguf MODEL.gguf IMPORTED_DIR` (default dtype f32).
Needs torch, transformers, accelerate, gguf and safetensors. Checks:
  1. every tensor of IMPORTED_DIR/model.safetensors equals the state_dict transformers builds
     from the GGUF (same names, shapes, values; max abs difference printed per group);
  2. IMPORTED_DIR/tokenizer.json encodes sample sentences to the same ids as transformers'
     GGUF tokenizer (and decodes them back);
  3. config.json agrees with the config transformers derives from the GGUF.
Exits non-zero on any mismatch.
"""

import json
import os
import sys

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

SENTENCES = [
    "Hello, world!",
    "The movie was surprisingly good; I'd watch it again.",
    "  leading spaces and\ttabs\nand newlines  ",
    "Ünïcödé — naïve café, 日本語のテキスト, emoji 🙂.",
    "<|im_start|>user\nIs this review positive?<|im_end|>\n<|im_start|>assistant\n",
    "don't can't we'll they're I've",
]
# Multi-digit numbers: the GGUF names the pre-tokenizer "smollm" (digits split one by one, as
# in the original SmolLM2 tokenizer.json and in llama.cpp); transformers does not know that
# name and falls back to plain GPT-2 splitting, so these may legitimately differ.
DIGIT_SENTENCES = ["It costs $1234.56 in 2024, or 7 items."]


def main() -> int:
    gguf_path, out_dir = sys.argv[1], sys.argv[2]
    gdir, gname = os.path.split(os.path.abspath(gguf_path))
    failures = 0

    ours = load_file(os.path.join(out_dir, "model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32)
    ref = {k: v for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        ref.pop("lm_head.weight", None)
    missing = sorted(set(ref) - set(ours))
    extra = sorted(set(ours) - set(ref))
    if missing or extra:
        print(f"FAIL names: missing {missing[:5]} extra {extra[:5]}")
        failures += 1
    worst = {}
    for name in sorted(set(ref) & set(ours)):
        a, b = ours[name].float(), ref[name].float()
        if a.shape != b.shape:
            print(f"FAIL shape {name}: ours {tuple(a.shape)} transformers {tuple(b.shape)}")
            failures += 1
            continue
        diff = (a - b).abs().max().item()
        group = name.split(".")[-2] if name.startswith("model.layers.") else name
        worst[group] = max(worst.get(group, 0.0), diff)
    for group, diff in sorted(worst.items()):
        print(f"  max |ours - transformers| {group:32s} {diff:.3g}")
        if diff != 0.0:
            failures += 1
    print(f"weights: {len(ours)} tensors compared")

    tok = Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))
    hf_tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    for text in SENTENCES + DIGIT_SENTENCES:
        mine = tok.encode(text).ids
        theirs = hf_tok(text)["input_ids"]
        same = mine == theirs
        roundtrip = tok.decode(mine, skip_special_tokens=False) == text
        tag = "ok  " if same else ("diff" if text in DIGIT_SENTENCES else "FAIL")
        print(f"  {tag} {text!r}: {len(mine)} ids, decode round-trip {roundtrip}")
        if not same:
            print(f"       ours         {mine}")
            print(f"       transformers {theirs}")
            if text not in DIGIT_SENTENCES:
                failures += 1
        if not roundtrip:
            failures += 1

    with open(os.path.join(out_dir, "config.json")) as f:
        cfg = json.load(f)
    hf_cfg = AutoConfig.from_pretrained(gdir, gguf_file=gname)
    for key in ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                "rms_norm_eps", "tie_word_embeddings", "bos_token_id", "eos_token_id"]:
        theirs = getattr(hf_cfg, key, None)
        if isinstance(theirs, float):
            # GGUF stores f32; we write the shortest decimal of that f32, transformers its f64.
            ok = torch.tensor(cfg.get(key)).float().item() == torch.tensor(theirs).float().item()
        else:
            ok = cfg.get(key) == theirs
        print(f"  {'ok  ' if ok else 'FAIL'} config {key}: ours {cfg.get(key)} transformers {theirs}")
        failures += not ok
    rope = (getattr(hf_cfg, "rope_parameters", None) or {}).get("rope_theta",
                                                                getattr(hf_cfg, "rope_theta", None))
    ok = rope is not None and float(cfg["rope_theta"]) == float(rope)
    print(f"  {'ok  ' if ok else 'FAIL'} config rope_theta: ours {cfg['rope_theta']} transformers {rope}")
    failures += not ok

    print("PASS" if failures == 0 else f"{failures} FAILURES")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
