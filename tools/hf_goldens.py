#!/usr/bin/env python3
"""HF-transformers parity goldens for tests/hf_parity.rs.

Usage (from the repository root, with a Python that has torch, transformers, safetensors,
gguf and numpy, plus accelerate for --smollm2, which transformers needs to read a GGUF; CPU
only, deterministic: a rerun rewrites identical files):

    python tools/hf_goldens.py                      # tiny random models -> tests/fixtures/hf/
    python tools/hf_goldens.py --smollm2 assets/SmolLM2-135M-Instruct.Q4_1.gguf
                                                    # also tests/fixtures/hf/smollm2-135m.json
    python tools/hf_goldens.py --only llama-tiny    # regenerate one tiny model
    python tools/hf_goldens.py --skip-tiny --smollm2 PATH.gguf

Tiny models: each is built from a config with fixed torch seeds, its weights replaced by
seeded random values that make every tensor matter (norm gains away from 1, non-zero biases,
logits with a spread of a few nats), rounded to the storage dtype, saved with save_pretrained
into tests/fixtures/hf/<name>/ and reloaded from there in float32 with eager attention to
compute golden.json. Goldens therefore come from exactly the bytes a loader reads. A
sensitivity check then asserts that features a port could silently drop (llama3 RoPE
scaling, Qwen2 q/k/v biases, OPT's position offset of 2) move the goldens by far more than
the tests' tolerance.

config.json is written in the layout most published checkpoints use (rope_theta,
rope_scaling, torch_dtype) rather than the newer rope_parameters/dtype keys, and the reload
checks that transformers reads it back as intended.

golden.json (one per tiny model):
    prompts[i].ids                  token ids, all < vocab_size
    prompts[i].last_logits          f32 logits at the last position, vocab ids 0..n_logits
    prompts[i].candidates           2-3 token ids
    prompts[i].candidate_logprobs   full-vocab log-softmax of those ids at the last position
    prompts[i].next_token_logprobs  log p(ids[j+1] | ids[..=j]) for j in 0..len-1

smollm2-135m.json: SmolLM2-135M-Instruct loaded from the GGUF by transformers' own GGUF
reader/dequantizer (independent of zo's importer), prompts in MeZO's SST-2 format
"<review> It was" tokenized by transformers' GGUF tokenizer with its default special-token
handling, and the candidates " terrible" / " great". Goldens are given for the weights as
dequantized ("float32") and for those weights rounded once, round-to-nearest-even, to each
storage dtype an importer may write ("float16", "bfloat16"). The 1-D tensors (norm gains) are
checked to be exact in both, so it does not matter whether an importer keeps them in f32. The
test picks the set matching the dtype of the imported matrices: the comparison is always same
weights, f32 math.
"""

import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "hf")
N_LOGITS = 32
SEED = 20240607

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def f32(x):
    """A float32 value as the shortest decimal that reads back to the same float32."""
    v = float(np.float32(x))
    for digits in range(6, 10):
        s = float(f"{v:.{digits}g}")
        if np.float32(s) == np.float32(v):
            return s
    return v


def tiny_specs():
    """name -> (config class, config kwargs, storage dtype, prompt lengths, shards)."""
    llama = dict(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    llama3 = dict(
        llama,
        tie_word_embeddings=True,
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32,
        },
    )
    # A vocabulary that is not a multiple of 8 catches tiling assumptions.
    qwen2 = dict(llama, vocab_size=515, rope_theta=1000000.0, rms_norm_eps=1e-6,
                 use_sliding_window=False)
    opt = dict(
        vocab_size=512,
        hidden_size=64,
        ffn_dim=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
        do_layer_norm_before=True,
        word_embed_proj_dim=64,
        activation_function="relu",
        enable_bias=True,
        layer_norm_elementwise_affine=True,
        tie_word_embeddings=True,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2,
    )
    opt_post = dict(opt, vocab_size=508, do_layer_norm_before=False, word_embed_proj_dim=32)
    return {
        "llama-tiny": (transformers.LlamaConfig, llama, "float32", [1, 6, 23, 57], 1),
        # Prompts past original_max_position_embeddings (32) under llama3 scaling.
        "llama-tiny-llama3rope": (transformers.LlamaConfig, llama3, "bfloat16", [2, 9, 33, 70], 1),
        "qwen2-tiny": (transformers.Qwen2Config, qwen2, "float16", [1, 5, 17, 40], 2),
        # 128 tokens reaches the last learned position row (127 + offset 2).
        "opt-tiny": (transformers.OPTConfig, opt, "float32", [1, 8, 31, 128], 1),
        "opt-tiny-postln": (transformers.OPTConfig, opt_post, "float32", [3, 12, 50], 1),
    }


MODEL_CLASSES = {
    "LlamaConfig": transformers.LlamaForCausalLM,
    "Qwen2Config": transformers.Qwen2ForCausalLM,
    "OPTConfig": transformers.OPTForCausalLM,
}


@torch.no_grad()
def randomize(model, gen):
    """Seeded weights with O(1) activations: every parameter influences the logits."""
    for name, p in model.named_parameters():
        if p.dim() == 2:
            if "embed" in name:
                std = 0.3
            else:
                std = 1.0 / math.sqrt(p.shape[1])
            p.copy_(torch.randn(p.shape, generator=gen) * std)
        elif name.endswith(".weight"):  # norm gains
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
        else:  # biases
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def legacy_config(path):
    """Rewrites config.json in the layout of published checkpoints."""
    with open(path) as f:
        cfg = json.load(f)
    rope = cfg.pop("rope_parameters", None)
    if rope is not None:
        cfg["rope_theta"] = rope["rope_theta"]
        if rope.get("rope_type", "default") != "default":
            cfg["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
        else:
            cfg["rope_scaling"] = None
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    for k in ("transformers_version", "_name_or_path", "output_attentions"):
        cfg.pop(k, None)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    return cfg


def check_reload(model, cfg_kwargs):
    """The legacy config must mean what the kwargs meant."""
    c = model.config
    rp = getattr(c, "rope_parameters", None)
    if "rope_theta" in cfg_kwargs and rp is not None:
        assert rp["rope_theta"] == cfg_kwargs["rope_theta"], rp
        want = (cfg_kwargs.get("rope_scaling") or {}).get("rope_type", "default")
        assert rp.get("rope_type", "default") == want, rp
        if want == "llama3":
            for k, v in cfg_kwargs["rope_scaling"].items():
                assert rp[k] == v, (k, rp)
    for k in ("vocab_size", "hidden_size", "num_hidden_layers", "tie_word_embeddings"):
        assert getattr(c, k) == cfg_kwargs[k], k


@torch.no_grad()
def forward_logits(model, ids):
    out = model(input_ids=torch.tensor([ids], dtype=torch.long))
    return out.logits[0].to(torch.float32)


def prompt_golden(logits, ids, vocab):
    """Golden entries for one prompt from its [len][vocab] f32 logits."""
    lsm = torch.log_softmax(logits.to(torch.float64), dim=-1)
    last = logits[-1]
    cands = []
    for c in (int(torch.argmax(last)), 300, vocab - 1):
        if c not in cands:
            cands.append(c)
    return {
        "ids": ids,
        "last_logits": [f32(x) for x in last[:N_LOGITS].tolist()],
        "candidates": cands,
        "candidate_logprobs": [f32(lsm[-1, c]) for c in cands],
        "next_token_logprobs": [f32(lsm[j, ids[j + 1]]) for j in range(len(ids) - 1)],
    }


def golden_values(model, prompts):
    vals = []
    for p in prompts:
        logits = forward_logits(model, p["ids"])
        lsm = torch.log_softmax(logits.to(torch.float64), dim=-1)
        vals += logits[-1, :N_LOGITS].tolist()
        vals += [float(lsm[-1, c]) for c in p["candidates"]]
        vals += [float(lsm[j, p["ids"][j + 1]]) for j in range(len(p["ids"]) - 1)]
    return torch.tensor(vals, dtype=torch.float64)


# The parity tests use 1e-3; a feature a loader or forward could silently drop must move the
# goldens by well over that, or the fixture could not catch its loss.
MIN_EFFECT = 1e-2


@torch.no_grad()
def check_sensitivity(name, out, cfg_cls, kwargs, prompts):
    mutations = []
    if kwargs.get("rope_scaling"):
        mutations.append(("rope_scaling ignored", dict(kwargs, rope_scaling=None), None))
    if cfg_cls is transformers.Qwen2Config:
        def zero_qkv_bias(m):
            for n, p in m.named_parameters():
                if n.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")):
                    p.zero_()
        mutations.append(("q/k/v bias dropped", kwargs, zero_qkv_bias))
    if cfg_cls is transformers.OPTConfig:
        def forget_offset(m):
            w = m.model.decoder.embed_positions.weight
            w[2:] = w[:-2].clone()  # row p + 2 now holds what row p held
        mutations.append(("position offset 2 forgotten", kwargs, forget_offset))
    if not mutations:
        return
    cls = MODEL_CLASSES[cfg_cls.__name__]
    ref = cls.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    want = golden_values(ref, prompts)
    for what, kw, edit in mutations:
        cfg = cfg_cls(**kw)
        cfg._attn_implementation = "eager"
        m = cls(cfg).eval()
        m.load_state_dict(ref.state_dict())
        if edit:
            edit(m)
        effect = (golden_values(m, prompts) - want).abs().max().item()
        assert effect > MIN_EFFECT, (name, what, effect)
        print(f"{name}: {what} moves the goldens by up to {effect:.3f}")


def dir_size(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


def build_tiny(name, spec, index):
    cfg_cls, kwargs, dtype, lengths, shards = spec
    torch.manual_seed(SEED + index)
    gen = torch.Generator().manual_seed(SEED + index)
    config = cfg_cls(**kwargs)
    model = MODEL_CLASSES[cfg_cls.__name__](config).eval()
    randomize(model, gen)
    model = model.to(DTYPES[dtype])

    out = os.path.join(OUT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    save_kw = {}
    if shards > 1:
        total = sum(p.numel() * p.element_size() for p in model.state_dict().values())
        save_kw["max_shard_size"] = int(total * 0.6)
    model.save_pretrained(out, **save_kw)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(out, extra)):
            os.remove(os.path.join(out, extra))
    written = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
    if shards > 1:
        assert len(written) == shards, written
        assert os.path.exists(os.path.join(out, "model.safetensors.index.json"))
    else:
        assert written == ["model.safetensors"], written
    legacy_config(os.path.join(out, "config.json"))

    # Goldens from the saved bytes, in float32.
    ref = MODEL_CLASSES[cfg_cls.__name__].from_pretrained(
        out, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    check_reload(ref, kwargs)
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert n1 == n2 and torch.equal(p1.to(torch.float32), p2), n1

    vocab = kwargs["vocab_size"]
    pgen = torch.Generator().manual_seed(SEED + 1000 + index)
    prompts = []
    for n in lengths:
        ids = torch.randint(0, vocab, (n,), generator=pgen).tolist()
        prompts.append(prompt_golden(forward_logits(ref, ids), ids, vocab))
    golden = {
        "model": name,
        "architecture": MODEL_CLASSES[cfg_cls.__name__].__name__,
        "storage_dtype": dtype,
        "vocab_size": vocab,
        "n_logits": N_LOGITS,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "prompts": prompts,
    }
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    check_sensitivity(name, out, cfg_cls, kwargs, prompts)
    size = dir_size(out)
    assert size < 2 * 1024 * 1024, (name, size)
    print(f"{name}: {len(written)} shard(s), {dtype}, {size / 1024:.0f} KiB, "
          f"prompt lengths {lengths}")


# Original short reviews, mixed sentiment and lengths; some punctuation, digits and a
# non-ASCII letter to exercise byte-level BPE.
REVIEWS = [
    "A warm, funny and beautifully acted film.",
    "The plot makes no sense and the jokes fall flat.",
    "I laughed, I cried, and I'd gladly watch it again tomorrow.",
    "Two hours of my life I will never get back; 2 stars at most.",
    "The café scenes sparkle with wit, and the lead gives the performance of her career.",
    "Dull, slow and painfully predictable from the first minute to the last.",
    "An ambitious mess: gorgeous to look at, but it never finds a heartbeat.",
    "Simply great.",
]


def round_state(state, dtype):
    """Every tensor rounded once, round-to-nearest-even, to `dtype` and widened back."""
    out = {}
    for k, v in state.items():
        r = v.to(dtype).to(torch.float32)
        # 1-D tensors (norm gains) must be exact in every storage dtype, so that an importer
        # keeping them in f32 next to f16/bf16 matrices still matches the golden.
        if v.dim() == 1:
            assert torch.equal(r, v), f"{k} is not exact in {dtype}"
        out[k] = r
    return out


@torch.no_grad()
def build_smollm2(gguf_path):
    d, name = os.path.split(os.path.abspath(gguf_path))
    tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        d, gguf_file=name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    vocab = model.config.vocab_size

    texts = [f"{r.strip()} It was" for r in REVIEWS]
    # transformers' default special-token handling, as a user calling tok(text) gets.
    ids = [tok(t)["input_ids"] for t in texts]
    words = [" terrible", " great"]
    cand = []
    for w in words:
        t = tok(w, add_special_tokens=False)["input_ids"]
        assert len(t) == 1, (w, t)
        cand.append(t[0])

    base = {k: v.clone() for k, v in model.state_dict().items()}
    goldens = {}
    for vname, dtype in DTYPES.items():
        state = base if dtype == torch.float32 else round_state(base, dtype)
        model.load_state_dict(state)
        rows = []
        for p in ids:
            logits = forward_logits(model, p)
            lsm = torch.log_softmax(logits[-1].to(torch.float64), dim=-1)
            rows.append({
                "candidate_logprobs": [f32(lsm[c]) for c in cand],
                "last_logits": [f32(x) for x in logits[-1, :N_LOGITS].tolist()],
            })
        goldens[vname] = rows
        print(f"smollm2 {vname}: " + ", ".join(
            f"{r['candidate_logprobs'][0]:.4f}/{r['candidate_logprobs'][1]:.4f}" for r in rows))
    golden = {
        "model": "SmolLM2-135M-Instruct",
        "source": os.path.basename(gguf_path),
        "vocab_size": vocab,
        "n_logits": N_LOGITS,
        "add_special_tokens": True,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "candidate_words": words,
        "candidate_ids": cand,
        "prompts": [{"text": t, "ids": i} for t, i in zip(texts, ids)],
        "goldens": goldens,
    }
    path = os.path.join(OUT, "smollm2-135m.json")
    with open(path, "w") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smollm2", metavar="PATH.gguf", help="SmolLM2-135M-Instruct GGUF file")
    ap.add_argument("--only", action="append", help="tiny model name(s) to regenerate")
    ap.add_argument("--skip-tiny", action="store_true")
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # one reduction order, run to run
    os.makedirs(OUT, exist_ok=True)
    if not args.skip_tiny:
        specs = tiny_specs()
        for i, (name, spec) in enumerate(specs.items()):
            if args.only and name not in args.only:
                continue
            build_tiny(name, spec, i)
    if args.smollm2:
        build_smollm2(args.smollm2)


if __name__ == "__main__":
    sys.exit(main())
