#!/usr/bin/env python3
"""PyTorch baselines for `zo-run bench`: the same architecture, batch and prompt lengths, run the
way the reference implementations run them.

Methods (one JSON object per method, keys shared with `zo-run bench --json` where they mean the
same thing):

  mezo       MeZO's trainer: torch.manual_seed(seed), then per parameter
             p.data = p.data + s*eps*torch.normal(...), for s = +1, -2, +1 around two forwards,
             g = (L+ - L-)/(2 eps), then the update with the same z regenerated from the seed.
  lozo       LoZO's trainer: as mezo, but every parameter with ndim >= 2 is perturbed by
             U V^T (U: out x r drawn every call, V: in x r redrawn every nu steps and kept), the
             others by a full z. r = 2, nu = 50.
  mezo-lora  PEFT LoRA (r 8, alpha 16, q_proj and v_proj), MeZO on the LoRA parameters only.
  forward    one forward of the 2B sequences (+ and - in one batch), logits only at the scored
             rows: the floor of a runtime that perturbs for free.

Batches are right-padded to the longest prompt of the step (as a padding collator does); the
model is the HF one built from a config dict (random init, nothing from the hub), in its default
attention implementation. The loss is MeZO's classification loss: cross-entropy over the two
label words' log-probabilities at the last prompt row, from the logits the model's forward
returns. Timings use torch.cuda.synchronize() around each phase (a no-op on the CPU).

Examples:
  tools/torch_baseline.py --arch opt-125m --method all --steps 2 --seq-len 16 --device cpu --dtype f32
  tools/torch_baseline.py --arch opt-13b --method lozo --lengths-file lengths.json
"""

import argparse
import json
import math
import resource
import statistics
import sys
import time

import torch

SCHEMA = "zo-torch-baseline/1"
RUN_STEPS = 20_000


def _opt(hidden, ffn, layers, heads, proj, pre=True):
    return dict(model_type="opt", hidden_size=hidden, ffn_dim=ffn, num_hidden_layers=layers,
                num_attention_heads=heads, word_embed_proj_dim=proj, do_layer_norm_before=pre,
                vocab_size=50272, max_position_embeddings=2048, activation_function="relu",
                enable_bias=True, _remove_final_layer_norm=False, tie_word_embeddings=True,
                bos_token_id=2, eos_token_id=2, pad_token_id=1)


def _llama(hidden, inter, layers, heads, kv, vocab, max_pos, theta, tie, **kw):
    d = dict(model_type="llama", hidden_size=hidden, intermediate_size=inter,
             num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
             vocab_size=vocab, max_position_embeddings=max_pos, rms_norm_eps=1e-5,
             rope_theta=theta, tie_word_embeddings=tie, hidden_act="silu")
    d.update(kw)
    return d


def _qwen(hidden, inter, layers, heads, kv, vocab, max_pos, tie):
    return dict(model_type="qwen2", hidden_size=hidden, intermediate_size=inter,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                vocab_size=vocab, max_position_embeddings=max_pos, rms_norm_eps=1e-6,
                rope_theta=1e6, use_sliding_window=False, tie_word_embeddings=tie,
                hidden_act="silu")


# The same names and values as zo's built-in architectures (src/model/arch_presets.rs).
ARCHS = {
    "opt-125m": _opt(768, 3072, 12, 12, 768),
    "opt-350m": _opt(1024, 4096, 24, 16, 512, pre=False),
    "opt-1.3b": _opt(2048, 8192, 24, 32, 2048),
    "opt-2.7b": _opt(2560, 10240, 32, 32, 2560),
    "opt-6.7b": _opt(4096, 16384, 32, 32, 4096),
    "opt-13b": _opt(5120, 20480, 40, 40, 5120),
    "opt-30b": _opt(7168, 28672, 48, 56, 7168),
    "opt-66b": _opt(9216, 36864, 64, 72, 9216),
    "llama2-7b": _llama(4096, 11008, 32, 32, 32, 32000, 4096, 1e4, False),
    "llama2-13b": _llama(5120, 13824, 40, 40, 40, 32000, 4096, 1e4, False),
    "llama3-8b": _llama(4096, 14336, 32, 32, 8, 128256, 8192, 5e5, False),
    "llama-3.2-1b": _llama(2048, 8192, 16, 32, 8, 128256, 131072, 5e5, True, head_dim=64,
                           rope_scaling=dict(rope_type="llama3", factor=32.0,
                                             low_freq_factor=1.0, high_freq_factor=4.0,
                                             original_max_position_embeddings=8192)),
    "smollm2-135m": _llama(576, 1536, 30, 9, 3, 49152, 8192, 1e5, True),
    "smollm2-360m": _llama(960, 2560, 32, 15, 5, 49152, 8192, 1e5, True),
    "smollm2-1.7b": _llama(2048, 8192, 24, 32, 32, 49152, 8192, 1.3e5, True),
    "mistral-7b": dict(_llama(4096, 14336, 32, 32, 8, 32000, 32768, 1e4, False),
                       model_type="mistral", sliding_window=4096),
    "qwen2.5-0.5b": _qwen(896, 4864, 24, 14, 2, 151936, 32768, True),
    "qwen2.5-1.5b": _qwen(1536, 8960, 28, 12, 2, 151936, 131072, True),
    "qwen2.5-3b": _qwen(2048, 11008, 36, 16, 2, 151936, 32768, True),
    "qwen2.5-7b": _qwen(3584, 18944, 28, 28, 4, 152064, 131072, False),
}

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
METHODS = ["mezo", "lozo", "mezo-lora", "forward"]

# The presets' settings (MeZO, LoZO and MeZO-LoRA papers).
EPS = {"mezo": 1e-3, "lozo": 1e-3, "mezo-lora": 1e-2}
LR = {"mezo": 1e-6, "lozo": 1e-6, "mezo-lora": 1e-4}
LOZO_RANK, LOZO_NU = 2, 50


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def spread(seconds):
    ms = sorted(s * 1e3 for s in seconds)
    if not ms:
        return None

    def q(p):
        x = p * (len(ms) - 1)
        lo, hi = math.floor(x), math.ceil(x)
        return ms[lo] + (ms[hi] - ms[lo]) * (x - lo)

    return dict(median=q(0.5), min=ms[0], max=ms[-1], p10=q(0.1), p90=q(0.9),
                mean=statistics.fmean(ms))


def build_model(arch, dtype, device):
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    kw = dict(ARCHS[arch])
    model_type = kw.pop("model_type")
    config = AutoConfig.for_model(model_type, **kw)
    # Parameters are created (and randomly initialised) directly on the device.
    with torch.device(device):
        try:
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        except TypeError:
            model = AutoModelForCausalLM.from_config(config, torch_dtype=dtype)
    model.to(device=device, dtype=dtype)
    model.eval()
    return model, config, transformers.__version__


def step_lengths(args):
    """Prompt lengths of every step, `batch` per step (cycled when the list is shorter)."""
    total = args.warmup + args.steps
    if args.seq_len:
        return [[args.seq_len] * args.batch for _ in range(total)]
    with open(args.lengths_file) as f:
        data = json.load(f)
    if data and isinstance(data[0], list):
        chunks = data
    else:
        chunks = [data[i:i + args.batch] for i in range(0, len(data), args.batch)]
        chunks = [c for c in chunks if len(c) == args.batch]
    if not chunks:
        sys.exit(f"{args.lengths_file}: fewer than {args.batch} lengths")
    return [chunks[i % len(chunks)] for i in range(total)]


class Batch:
    """A right-padded batch of synthetic prompts with two single-token label words each."""

    def __init__(self, lengths, vocab, device, gen, copies=1):
        lengths = list(lengths) * copies
        n, longest = len(lengths), max(lengths)
        ids = torch.randint(3, vocab, (n, longest), generator=gen)
        mask = torch.zeros(n, longest, dtype=torch.long)
        for i, l in enumerate(lengths):
            mask[i, :l] = 1
        ids = ids * mask + (1 - mask)  # pad id 1 (OPT's)
        self.input_ids = ids.to(device)
        self.attention_mask = mask.to(device)
        self.last = torch.tensor([l - 1 for l in lengths], device=device)
        self.options = torch.randint(3, vocab, (n, 2), generator=gen).to(device)
        self.gold = torch.tensor([i % 2 for i in range(n)], device=device)
        self.tokens = sum(lengths)
        self.padded_tokens = n * longest


def classification_loss(logits_at_last, batch):
    lp = torch.log_softmax(logits_at_last.float(), dim=-1)
    opt = lp.gather(1, batch.options)
    return torch.nn.functional.cross_entropy(opt, batch.gold)


def zo_forward(model, batch):
    """MeZO's zo_forward: eval mode, inference mode, the model's own forward (full logits)."""
    with torch.inference_mode():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        rows = torch.arange(logits.shape[0], device=logits.device)
        return classification_loss(logits[rows, batch.last], batch).detach()


def serve_forward(model, batch):
    """One forward with the head applied only at the scored rows."""
    with torch.inference_mode():
        base = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
        hidden = base(input_ids=batch.input_ids,
                      attention_mask=batch.attention_mask).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        h = hidden[rows, batch.last]
        if getattr(model, "model", None) is not None and hasattr(model.model, "decoder") \
                and getattr(model.model.decoder, "project_out", None) is not None:
            h = model.model.decoder.project_out(h)
        return classification_loss(model.lm_head(h), batch).detach()


def no_decay(name):
    return "bias" in name or "layer_norm" in name or "layernorm" in name


class MeZO:
    """MeZO's trainer (zo_perturb_parameters / zo_step / zo_update)."""

    def __init__(self, model, eps, lr, weight_decay=0.0):
        self.model, self.eps, self.lr, self.wd = model, eps, lr, weight_decay
        self.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def z(self, name, p):
        return torch.normal(mean=0, std=1, size=p.data.size(), device=p.data.device,
                            dtype=p.data.dtype)

    def perturb(self, seed, scale):
        torch.manual_seed(seed)
        for name, p in self.params:
            p.data = p.data + scale * self.z(name, p) * self.eps

    def update(self, seed, g):
        torch.manual_seed(seed)
        for name, p in self.params:
            z = self.z(name, p)
            if no_decay(name):
                p.data = p.data - self.lr * (g * z)
            else:
                p.data = p.data - self.lr * (g * z + self.wd * p.data)


class LoZO(MeZO):
    """LoZO's trainer: U V^T for parameters with ndim >= 2, V kept for nu steps."""

    def __init__(self, model, eps, lr, rank=LOZO_RANK, nu=LOZO_NU):
        super().__init__(model, eps, lr)
        self.rank, self.nu, self.v, self.step = rank, nu, {}, 0

    def z(self, name, p):
        if p.data.ndim < 2:
            return super().z(name, p)
        if self.step % self.nu == 0 or name not in self.v:
            self.v[name] = torch.randn(p.data.size(1), self.rank, device=p.data.device,
                                       dtype=p.data.dtype)
        v = self.v[name]
        u = torch.randn(p.data.size(0), self.rank, device=p.data.device, dtype=p.data.dtype)
        return u @ v.t()

    def update(self, seed, g):
        # The update reuses V (no refresh between the perturbations and the update).
        torch.manual_seed(seed)
        for name, p in self.params:
            if p.data.ndim >= 2:
                u = torch.randn(p.data.size(0), self.rank, device=p.data.device,
                                dtype=p.data.dtype)
                z = u @ self.v[name].t()
            else:
                z = torch.normal(mean=0, std=1, size=p.data.size(), device=p.data.device,
                                 dtype=p.data.dtype)
            if no_decay(name):
                p.data = p.data - self.lr * (g * z)
            else:
                p.data = p.data - self.lr * (g * z + self.wd * p.data)
        self.step += 1


def add_lora(model):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                     bias="none")
    return get_peft_model(model, cfg)


def run_method(method, model, config, args, device, lengths):
    vocab = config.vocab_size
    gen = torch.Generator().manual_seed(args.seed)
    opt = None
    if method == "mezo":
        opt = MeZO(model, EPS[method], LR[method])
    elif method == "lozo":
        opt = LoZO(model, EPS[method], LR[method])
    elif method == "mezo-lora":
        opt = MeZO(model, EPS[method], LR[method])
    seed_rng = torch.Generator().manual_seed(args.seed + 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rec = {"step": [], "forward": [], "perturb": [], "update": []}
    toks = padded = 0
    losses = []
    for i, lens in enumerate(lengths):
        if method == "forward":
            batch = Batch(lens, vocab, device, gen, copies=2)
        else:
            batch = Batch(lens, vocab, device, gen)
        seed = int(torch.randint(0, 10**9, (1,), generator=seed_rng))
        sync(device)
        t0 = time.perf_counter()
        fwd = pert = upd = 0.0
        if method == "forward":
            loss = serve_forward(model, batch)
            float(loss)
            sync(device)
            fwd = time.perf_counter() - t0
            tokens, ptokens = batch.tokens, batch.padded_tokens
        else:
            t = time.perf_counter()
            opt.perturb(seed, 1)
            sync(device)
            pert += time.perf_counter() - t
            t = time.perf_counter()
            loss1 = zo_forward(model, batch)
            sync(device)
            fwd += time.perf_counter() - t
            t = time.perf_counter()
            opt.perturb(seed, -2)
            sync(device)
            pert += time.perf_counter() - t
            t = time.perf_counter()
            loss2 = zo_forward(model, batch)
            sync(device)
            fwd += time.perf_counter() - t
            t = time.perf_counter()
            g = ((loss1 - loss2) / (2 * opt.eps)).item()
            opt.perturb(seed, 1)
            sync(device)
            pert += time.perf_counter() - t
            t = time.perf_counter()
            opt.update(seed, g)
            sync(device)
            upd = time.perf_counter() - t
            loss = (loss1 + loss2) / 2
            tokens, ptokens = 2 * batch.tokens, 2 * batch.padded_tokens
        total = time.perf_counter() - t0
        if i < args.warmup:
            continue
        rec["step"].append(total)
        rec["forward"].append(fwd)
        rec["perturb"].append(pert)
        rec["update"].append(upd)
        toks += tokens
        padded += ptokens
        losses.append(float(loss))
    n = len(rec["step"])
    step_ms = spread(rec["step"])
    median_s = step_ms["median"] / 1e3
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        device_name = torch.cuda.get_device_name(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        device_name = f"CPU, {torch.get_num_threads()} threads"
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if method == "forward":
        trainable = 0
    return {
        "schema": SCHEMA,
        "method": method,
        "arch": args.arch,
        "params": sum(p.numel() for p in model.parameters()) - (
            sum(p.numel() for n_, p in model.named_parameters() if "lora_" in n_)),
        "trainable_params": trainable,
        "device": device.type,
        "device_name": device_name,
        "dtype": args.dtype,
        "batch": args.batch,
        "steps": n,
        "warmup": args.warmup,
        "seed": args.seed,
        "prompt_len_mean": statistics.fmean(l for ls in lengths[args.warmup:] for l in ls),
        "sequences_per_step": 2 * args.batch,
        "tokens_per_step": toks / n,
        "padded_tokens_per_step": padded / n,
        "forwards_per_step": 1 if method == "forward" else 2,
        "step_ms": step_ms,
        "forward_ms": spread(rec["forward"]),
        "perturb_ms": spread(rec["perturb"]),
        "update_ms": spread(rec["update"]),
        "tokens_per_s": toks / n / median_s,
        "peak_memory_bytes": int(peak),
        "run_steps": RUN_STEPS,
        "est_hours_run": median_s * RUN_STEPS / 3600,
        "last_loss": losses[-1],
        "torch": torch.__version__,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", required=True, choices=sorted(ARCHS))
    ap.add_argument("--method", default="all", choices=METHODS + ["all"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--seq-len", type=int, help="every prompt this many tokens")
    src.add_argument("--lengths-file",
                     help="JSON list of prompt lengths (zo-run bench --dump-lengths)")
    ap.add_argument("--dtype", default=None, choices=sorted(DTYPES),
                    help="default: bf16 on cuda, f32 on cpu")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    if args.steps < 1 or args.batch < 1 or args.warmup < 0:
        ap.error("--steps and --batch must be at least 1, --warmup at least 0")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    args.dtype = args.dtype or ("bf16" if device.type == "cuda" else "f32")
    torch.manual_seed(args.seed)
    lengths = step_lengths(args)
    model, config, tf_version = build_model(args.arch, DTYPES[args.dtype], device)
    methods = METHODS if args.method == "all" else [args.method]
    results = []
    for m in methods:
        print(f"torch_baseline: {args.arch} {m} on {device}", file=sys.stderr)
        if m == "mezo-lora":
            model = add_lora(model)
        r = run_method(m, model, config, args, device, lengths)
        r["transformers"] = tf_version
        results.append(r)
        if m == "mezo-lora":
            model = model.unload()
    out = results[0] if len(results) == 1 else {"schema": SCHEMA, "results": results}
    text = json.dumps(out)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
