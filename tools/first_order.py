#!/usr/bin/env python3
"""First-order references for the accuracy table: the default model fine-tuned with AdamW and
backpropagation on the same task, template, splits and selection rule as `zo-run train`.

    tools/first_order.py --mode lora|full [--steps 500] [--lr X] [--batch 16]
                         [--model assets/smollm2-135m] [--data assets/data/sentiment]
                         [--dev-limit N] [--test-limit N] [--eval-every 100] [--device auto]

Each example is the task's template rendered with its text; every label word is scored as
the sum of its tokens' log-probabilities after the prompt, and the loss is the cross-entropy
over the label words (for one-token words, MeZO's classification loss, as zo scores it).
Training batches are drawn uniformly with replacement from the train split with a seeded
generator; dev accuracy every --eval-every steps picks the state whose test accuracy is
reported (ties go to the lower dev loss). Modes:

  lora   PEFT LoRA r 8, alpha 16 on q_proj and v_proj, AdamW lr 1e-4 (default)
  full   every parameter, AdamW lr 1e-5 (default)

Prints one JSON object: mode, steps, forward and backward passes, test accuracy (best dev
state), zero-shot test accuracy, dev curve, wall time, device. Needs torch, transformers and
tokenizers (peft for lora); without them it says which is missing and exits with status 2.
"""

import argparse
import copy
import json
import os
import random
import sys
import time


def need(module):
    try:
        return __import__(module)
    except ImportError:
        print(f"first_order.py: the Python package {module!r} is not installed "
              f"(pip install torch transformers tokenizers peft)", file=sys.stderr)
        sys.exit(2)


def read_split(data, split, limit):
    path = os.path.join(data, f"{split}.jsonl")
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows[:limit] if limit else rows


def encode(tok, task, rows):
    """(prompt ids, [word ids per label], gold index) per example."""
    labels = list(task["label_words"].keys())
    words = [tok.encode(task["label_words"][k], add_special_tokens=False).ids for k in labels]
    out = []
    for r in rows:
        prompt = task["template"].replace("{text}", r["text"])
        ids = tok.encode(prompt, add_special_tokens=False).ids
        out.append((ids, words, labels.index(str(r["label"]))))
    return out


def label_scores(torch, model, batch, device):
    """[n, labels] sums of label-word log-probabilities, one right-padded forward per label."""
    n_labels = len(batch[0][1])
    cols = []
    for k in range(n_labels):
        seqs = [p + w[k] for p, w, _ in batch]
        longest = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), longest, dtype=torch.long)
        mask = torch.zeros(len(seqs), longest, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        lp = torch.log_softmax(logits, dim=-1)
        score = []
        for i, (p, w, _) in enumerate(batch):
            pos = torch.arange(len(p) - 1, len(p) - 1 + len(w[k]), device=device)
            tgt = torch.tensor(w[k], device=device)
            score.append(lp[i, pos, tgt].sum())
        cols.append(torch.stack(score))
    return torch.stack(cols, dim=1)


def evaluate(torch, model, examples, device, batch=16):
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(examples), batch):
            b = examples[i:i + batch]
            s = label_scores(torch, model, b, device)
            gold = torch.tensor([g for _, _, g in b], device=device)
            loss += torch.nn.functional.cross_entropy(s, gold, reduction="sum").item()
            correct += (s.argmax(dim=1) == gold).sum().item()
    return correct / len(examples), loss / len(examples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["lora", "full"], required=True)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--model", default="assets/smollm2-135m")
    ap.add_argument("--data", default="assets/data/sentiment")
    ap.add_argument("--train-limit", type=int)
    ap.add_argument("--dev-limit", type=int)
    ap.add_argument("--test-limit", type=int)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()

    torch = need("torch")
    transformers = need("transformers")
    tokenizers = need("tokenizers")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    torch.manual_seed(a.seed)

    with open(os.path.join(a.data, "task.json")) as f:
        task = json.load(f)
    tok = tokenizers.Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
    train = encode(tok, task, read_split(a.data, "train", a.train_limit))
    dev = encode(tok, task, read_split(a.data, "dev", a.dev_limit))
    test = encode(tok, task, read_split(a.data, "test", a.test_limit))

    model = transformers.AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32)
    model.to(device)
    zero_shot, _ = evaluate(torch, model, test, device)
    if a.mode == "lora":
        peft = need("peft")
        cfg = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                              lora_dropout=0.0, bias="none")
        model = peft.get_peft_model(model, cfg)
        lr = a.lr or 1e-4
    else:
        lr = a.lr or 1e-5
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    rng = random.Random(a.seed)

    start = time.time()
    curve, best, best_state = [], None, None

    def dev_point(after):
        nonlocal best, best_state
        acc, loss = evaluate(torch, model, dev, device)
        curve.append({"after": after, "accuracy": acc, "loss": loss})
        if best is None or acc > best["accuracy"] or (acc == best["accuracy"] and loss < best["loss"]):
            best = curve[-1]
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})

    dev_point(0)
    for step in range(a.steps):
        model.train()
        b = [train[rng.randrange(len(train))] for _ in range(a.batch)]
        s = label_scores(torch, model, b, device)
        gold = torch.tensor([g for _, _, g in b], device=device)
        loss = torch.nn.functional.cross_entropy(s, gold)
        opt.zero_grad()
        loss.backward()
        opt.step()
        done = step + 1
        if done % a.eval_every == 0 or done == a.steps:
            dev_point(done)
            print(f"step {done}: train loss {loss.item():.4f}, dev accuracy "
                  f"{curve[-1]['accuracy']:.4f}", file=sys.stderr)
    wall = time.time() - start
    model.load_state_dict(best_state)
    test_acc, _ = evaluate(torch, model, test, device)
    n_labels = len(task["label_words"])
    print(json.dumps({
        "method": f"first-order {a.mode} (AdamW lr {lr:g})",
        "steps": a.steps,
        "forward_passes": a.steps * a.batch * n_labels,
        "backward_passes": a.steps * a.batch * n_labels,
        "test_accuracy": test_acc,
        "test_accuracy_zero_shot": zero_shot,
        "best_dev": best,
        "dev_curve": curve,
        "wall_s": wall,
        "device": device if device == "cpu" else torch.cuda.get_device_name(0),
    }))


if __name__ == "__main__":
    main()
