"""A run through the Python client's session level: the `session` and `scheduler` modes of
tests/c/session.c, in Python (tests/ffi_python.rs compares it with `zo-run train`).

    python3 tools/python/session_client.py LIBZO MODE MODEL DATA CONFIG OUT
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zo  # noqa: E402


def main(lib_path, mode, model, data, config, out):
    lib = zo.Library(lib_path)
    with open(config) as f:
        cfg = f.read()
    with zo.Session(lib, model, config=cfg, device="cpu") as s:
        s.load_task(data)
        before = s.evaluate("dev")
        steps = s.config()["steps"]
        with open(os.path.join(out, "g.txt"), "w") as g:
            for _ in range(steps):
                if mode == "scheduler":
                    plan = s.begin()
                    lp = s.score(plan)
                    # Per-example losses formed here from zo's log-probs: the path an
                    # engine that computes its own loss takes.
                    r = s.end(example_losses=zo.classification_loss(plan, lp))
                else:
                    r = s.step()
                for x in r["g"]:
                    g.write(float(x).hex() + "\n")
        after = s.evaluate("dev")
        s.save(os.path.join(out, "checkpoint.json"))
        s.export(os.path.join(out, "export"), state="last")
    print(f"dev loss {before['loss']:.4f} -> {after['loss']:.4f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
