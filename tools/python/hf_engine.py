"""HF transformers (PyTorch) as the engine of zo's scheduler level: zo plans each step and
keeps the LoRA state; PyTorch runs every forward, with the LoRA factors of each variant that
zo materializes from the seeds; zo turns the scores into the update.

    python3 tools/python/hf_engine.py LIBZO MODEL DATA OUT_JSON [--steps N] [--lr LR] ...

Before training, PyTorch's log-probs under a perturbed variant are checked against zo's own
forward of the same plan. Prints, and writes to OUT_JSON, the dev loss (zo's evaluation of
the state PyTorch's scores trained) before and after, and the mean training loss of the
first and last steps.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zo  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lib")
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--eps", type=float, default=None)
    ap.add_argument("--dev-limit", type=int, default=100)
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lib = zo.Library(args.lib)

    # The mezo-lora preset sized to the model, with this run's overrides.
    with zo.Session(lib, args.model, preset="mezo-lora", device="cpu") as probe:
        cfg = probe.config()
    cfg.update(steps=args.steps, batch=args.batch, seed=args.seed, eval_every=0,
               dev_limit=args.dev_limit, train_limit=args.train_limit)
    if args.lr is not None:
        cfg["lr"] = args.lr
    if args.eps is not None:
        cfg["eps"] = args.eps
    s = zo.Session(lib, args.model, config=cfg, device="cpu")
    s.load_task(args.data)
    sites = s.adapter_sites()

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.to(device).eval()
    factors = {}

    def hook_for(i):
        def hook(module, inputs, output):
            a, b, scale = factors[i]
            return output + scale * ((inputs[0] @ a.T) @ b.T)
        return hook

    for i, site in enumerate(sites):
        model.get_submodule(site["hf_module"]).register_forward_hook(hook_for(i))

    def set_variant(variant):
        for i, site in enumerate(sites):
            a, b = s.lora_factors(variant, i, site)
            r = site["rank"]
            a = torch.frombuffer(a, dtype=torch.float32).view(r, site["in_dim"])
            b = torch.frombuffer(b, dtype=torch.float32).view(site["out_dim"], r)
            factors[i] = (a.to(device), b.to(device), site["scale"])

    def score(plan):
        """Per-query log-probs of the plan, every variant run by PyTorch."""
        seq_of_row = {}
        for sidx in range(len(plan.seq_variant)):
            for row in range(plan.cu_seqlens[sidx], plan.cu_seqlens[sidx + 1]):
                seq_of_row[row] = sidx
        lp = [0.0] * len(plan.queries)
        for vi, variant in enumerate(plan.variants):
            set_variant(variant)
            seqs = [i for i, v in enumerate(plan.seq_variant) if v == vi]
            width = max(plan.cu_seqlens[i + 1] - plan.cu_seqlens[i] for i in seqs)
            ids = torch.zeros(len(seqs), width, dtype=torch.long)
            mask = torch.zeros(len(seqs), width, dtype=torch.long)
            for j, sidx in enumerate(seqs):
                a, b = plan.cu_seqlens[sidx], plan.cu_seqlens[sidx + 1]
                ids[j, : b - a] = torch.tensor(plan.tokens[a:b])
                mask[j, : b - a] = 1
            with torch.no_grad():
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                logp = torch.log_softmax(logits.float(), dim=-1).cpu()
            where = {sidx: j for j, sidx in enumerate(seqs)}
            for qi, (row, token) in enumerate(plan.queries):
                sidx = seq_of_row[row]
                if sidx in where:
                    lp[qi] = float(logp[where[sidx], row - plan.cu_seqlens[sidx], token])
        return lp

    report = {"device": device, "config": {k: cfg[k] for k in ("lr", "eps", "batch", "steps", "q")}}
    report["dev_before"] = s.evaluate("dev")
    t0 = time.time()
    losses = []
    for step in range(args.steps):
        plan = s.begin()
        lp = score(plan)
        if step == 0:
            # The engine and zo agree on a perturbed plan (fp32 forwards in other orders).
            ours = s.score(plan)
            report["max_abs_logprob_diff_vs_zo"] = max(abs(x - y) for x, y in zip(lp, ours))
        r = s.end(query_logprobs=lp)
        losses.append(r["loss"])
    report["seconds"] = time.time() - t0
    report["dev_after"] = s.evaluate("dev")
    k = max(1, args.steps // 4)
    report["train_loss_first"] = sum(losses[:k]) / k
    report["train_loss_last"] = sum(losses[-k:]) / k
    s.close()
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
