"""A thin Python client of libzo's C ABI (csrc/include/zo.h), over ctypes.

    lib = zo.Library("target/release/libzo.so")
    s = zo.Session(lib, "assets/smollm2-135m", preset="mezo-lora", device="cpu")
    s.load_task("assets/data/sentiment")
    s.evaluate("dev"); s.step(); s.save("ck.json")

The session level is `Session.step`; the scheduler level is `Session.begin` (the step's
variants and packed plan), the caller's forward, then `Session.end` with its scores; LoRA
and low-rank factors of a variant come from `Session.lora_factors` / `lowrank_factors`.
Every failed call raises `ZoError` with the status name and zo's message.
"""

import ctypes as C
import json

ABI_VERSION = 1

DEVICES = {"auto": 0, "cpu": 1, "cuda": 2, "emu": 3}
DTYPES = {"f32": 0, "bf16": 1, "f16": 2}
SPLITS = {"train": 0, "dev": 1, "test": 2}
EXPORT_STATES = {"best": 0, "last": 1}


class ZoError(RuntimeError):
    def __init__(self, status, name, message):
        super().__init__(f"{name}: {message}")
        self.status = status
        self.name = name
        self.message = message


class SessionParams(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("model_path", C.c_char_p),
        ("config_json", C.c_char_p),
        ("preset", C.c_char_p),
        ("device", C.c_int32),
        ("dtype", C.c_int32),
    ]


class StepResult(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("capacity", C.c_size_t),
        ("loss_plus", C.POINTER(C.c_double)),
        ("loss_minus", C.POINTER(C.c_double)),
        ("g", C.POINTER(C.c_float)),
        ("coefs", C.POINTER(C.c_float)),
        ("seeds", C.POINTER(C.c_uint64)),
        ("step", C.c_uint64),
        ("n_directions", C.c_size_t),
        ("lr", C.c_float),
        ("loss0", C.c_double),
        ("loss", C.c_double),
        ("skipped", C.c_int32),
        ("period_seed", C.c_uint64),
        ("has_period_seed", C.c_int32),
        ("tokens", C.c_size_t),
    ]


class EvalResult(C.Structure):
    _fields_ = [
        ("accuracy", C.c_double),
        ("mean_loss", C.c_double),
        ("n_examples", C.c_size_t),
    ]


class Variant(C.Structure):
    _fields_ = [("seed", C.c_uint64), ("sign", C.c_int32), ("eps", C.c_float)]


class Query(C.Structure):
    _fields_ = [("row", C.c_uint32), ("token", C.c_uint32)]


class Group(C.Structure):
    _fields_ = [
        ("variant", C.c_uint32),
        ("gold", C.c_uint32),
        ("first_candidate", C.c_uint32),
        ("n_candidates", C.c_uint32),
    ]


class Candidate(C.Structure):
    _fields_ = [("query_start", C.c_uint32), ("query_end", C.c_uint32)]


class PlanView(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("step", C.c_uint64),
        ("lr", C.c_float),
        ("batch", C.c_size_t),
        ("n_tokens", C.c_size_t),
        ("tokens", C.POINTER(C.c_uint32)),
        ("positions", C.POINTER(C.c_uint32)),
        ("n_seqs", C.c_size_t),
        ("cu_seqlens", C.POINTER(C.c_uint32)),
        ("seq_variant", C.POINTER(C.c_uint32)),
        ("n_variants", C.c_size_t),
        ("variants", C.POINTER(Variant)),
        ("n_queries", C.c_size_t),
        ("queries", C.POINTER(Query)),
        ("n_groups", C.c_size_t),
        ("groups", C.POINTER(Group)),
        ("n_candidates", C.c_size_t),
        ("candidates", C.POINTER(Candidate)),
    ]


class StepScores(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("query_logprobs", C.POINTER(C.c_float)),
        ("n_query_logprobs", C.c_size_t),
        ("example_losses", C.POINTER(C.c_float)),
        ("n_example_losses", C.c_size_t),
    ]


class AdapterSite(C.Structure):
    _fields_ = [
        ("layer", C.c_int32),
        ("hf_module", C.c_char * 128),
        ("out_dim", C.c_size_t),
        ("in_dim", C.c_size_t),
        ("rank", C.c_size_t),
        ("scale", C.c_float),
        ("tensor_id", C.c_uint32),
    ]


class Library:
    """libzo, loaded from `path`, with the prototypes of the calls this client makes."""

    def __init__(self, path):
        self.dll = C.CDLL(str(path))
        d = self.dll
        d.zo_abi_version.restype = C.c_uint32
        if d.zo_abi_version() != ABI_VERSION:
            raise ZoError(-1, "ZO_ABI", f"{path} implements ABI {d.zo_abi_version()}, "
                          f"this client speaks {ABI_VERSION}")
        d.zo_last_error.restype = C.c_char_p
        d.zo_status_name.restype = C.c_char_p
        d.zo_status_name.argtypes = [C.c_int32]
        d.zo_session_default_params.restype = SessionParams
        d.zo_step_result_default.restype = StepResult
        d.zo_plan_default.restype = PlanView
        d.zo_step_scores_default.restype = StepScores
        vp = C.c_void_p
        for name, args in {
            "zo_session_open": [C.POINTER(SessionParams), C.POINTER(vp)],
            "zo_session_load_task": [vp, C.c_char_p],
            "zo_session_add_text_example": [vp, C.c_int32, C.c_char_p,
                                            C.POINTER(C.c_char_p), C.c_size_t, C.c_size_t],
            "zo_session_n_examples": [vp, C.c_int32, C.POINTER(C.c_size_t)],
            "zo_session_steps_done": [vp, C.POINTER(C.c_uint64)],
            "zo_session_config_json": [vp, C.c_char_p, C.c_size_t, C.POINTER(C.c_size_t)],
            "zo_session_step": [vp, C.POINTER(StepResult)],
            "zo_session_evaluate": [vp, C.c_int32, C.POINTER(EvalResult)],
            "zo_session_save": [vp, C.c_char_p],
            "zo_session_resume": [vp, C.c_char_p],
            "zo_session_export": [vp, C.c_char_p, C.c_int32, C.c_int32],
            "zo_step_begin": [vp, C.POINTER(PlanView)],
            "zo_session_score": [vp, C.POINTER(C.c_float), C.c_size_t],
            "zo_step_end": [vp, C.POINTER(StepScores), C.POINTER(StepResult)],
            "zo_step_skip": [vp, C.c_char_p],
            "zo_session_adapter_sites": [vp, C.POINTER(AdapterSite), C.c_size_t,
                                         C.POINTER(C.c_size_t)],
            "zo_session_lora_factors": [vp, C.POINTER(Variant), C.c_size_t,
                                        C.POINTER(C.c_float), C.c_size_t,
                                        C.POINTER(C.c_float), C.c_size_t],
            "zo_session_lowrank_factors": [vp, C.POINTER(Variant), C.c_size_t,
                                           C.POINTER(C.c_float), C.c_size_t,
                                           C.POINTER(C.c_float), C.c_size_t],
        }.items():
            f = getattr(d, name)
            f.argtypes = args
            f.restype = C.c_int32
        d.zo_session_free.argtypes = [vp]
        d.zo_session_free.restype = None

    def check(self, status):
        if status != 0:
            name = self.dll.zo_status_name(status).decode()
            raise ZoError(status, name, self.dll.zo_last_error().decode())


class Plan:
    """A begun step's plan, copied out of the session into Python lists."""

    def __init__(self, v):
        n = v.n_tokens
        self.step = v.step
        self.batch = v.batch
        self.tokens = v.tokens[:n]
        self.positions = v.positions[:n]
        self.cu_seqlens = v.cu_seqlens[: v.n_seqs + 1]
        self.seq_variant = v.seq_variant[: v.n_seqs]
        self.variants = [(x.seed, x.sign, x.eps) for x in v.variants[: v.n_variants]]
        self.queries = [(q.row, q.token) for q in v.queries[: v.n_queries]]
        self.groups = [(g.variant, g.gold, g.first_candidate, g.n_candidates)
                       for g in v.groups[: v.n_groups]]
        self.candidates = [(c.query_start, c.query_end) for c in v.candidates[: v.n_candidates]]

    def sequences(self, variant):
        """(start row, token ids) of every sequence the variant runs."""
        out = []
        for s, var in enumerate(self.seq_variant):
            if var == variant:
                a, b = self.cu_seqlens[s], self.cu_seqlens[s + 1]
                out.append((a, self.tokens[a:b]))
        return out


def _floats(n):
    return (C.c_float * n)()


class Session:
    def __init__(self, lib, model, config=None, preset=None, device="cpu", dtype="bf16"):
        self.lib = lib
        p = lib.dll.zo_session_default_params()
        p.model_path = str(model).encode()
        if config is not None:
            p.config_json = (config if isinstance(config, str) else json.dumps(config)).encode()
        if preset is not None:
            p.preset = preset.encode()
        p.device = DEVICES[device]
        p.dtype = DTYPES[dtype]
        h = C.c_void_p()
        lib.check(lib.dll.zo_session_open(C.byref(p), C.byref(h)))
        self.h = h

    def close(self):
        if self.h:
            self.lib.dll.zo_session_free(self.h)
            self.h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def _call(self, name, *args):
        self.lib.check(getattr(self.lib.dll, name)(self.h, *args))

    def config(self):
        need = C.c_size_t()
        status = self.lib.dll.zo_session_config_json(self.h, None, 0, C.byref(need))
        if status not in (0, 4):  # ZO_ERR_BUFFER_TOO_SMALL only says how much is needed
            self.lib.check(status)
        buf = C.create_string_buffer(need.value)
        self._call("zo_session_config_json", buf, need.value, None)
        return json.loads(buf.value.decode())

    def load_task(self, data_dir):
        self._call("zo_session_load_task", str(data_dir).encode())

    def add_text_example(self, split, prompt, candidates, gold):
        arr = (C.c_char_p * len(candidates))(*[c.encode() for c in candidates])
        self._call("zo_session_add_text_example", SPLITS[split], prompt.encode(), arr,
                   len(candidates), gold)

    def n_examples(self, split):
        n = C.c_size_t()
        self._call("zo_session_n_examples", SPLITS[split], C.byref(n))
        return n.value

    def steps_done(self):
        n = C.c_uint64()
        self._call("zo_session_steps_done", C.byref(n))
        return n.value

    def _result(self):
        q = self.config()["q"]
        r = self.lib.dll.zo_step_result_default()
        arrays = {
            "loss_plus": (C.c_double * q)(), "loss_minus": (C.c_double * q)(),
            "g": _floats(q), "coefs": _floats(q), "seeds": (C.c_uint64 * q)(),
        }
        r.capacity = q
        for k, a in arrays.items():
            setattr(r, k, C.cast(a, type(getattr(r, k))))
        return r, arrays

    @staticmethod
    def _as_dict(r, arrays):
        q = r.n_directions
        out = {k: list(a)[:q] for k, a in arrays.items()}
        out.update(step=r.step, lr=r.lr, loss=r.loss, skipped=bool(r.skipped),
                   tokens=r.tokens)
        return out

    def step(self):
        """One whole ZO step (session level)."""
        r, arrays = self._result()
        self._call("zo_session_step", C.byref(r))
        return self._as_dict(r, arrays)

    def evaluate(self, split):
        e = EvalResult()
        self._call("zo_session_evaluate", SPLITS[split], C.byref(e))
        return {"accuracy": e.accuracy, "loss": e.mean_loss, "n": e.n_examples}

    def save(self, path):
        self._call("zo_session_save", str(path).encode())

    def resume(self, path):
        self._call("zo_session_resume", str(path).encode())

    def export(self, out_dir, state="best", dtype="f32"):
        self._call("zo_session_export", str(out_dir).encode(), EXPORT_STATES[state],
                   DTYPES[dtype])

    def begin(self):
        """Begins the next step (scheduler level): its variants and packed plan."""
        v = self.lib.dll.zo_plan_default()
        self._call("zo_step_begin", C.byref(v))
        return Plan(v)

    def score(self, plan):
        """zo's own forward over the begun step: per-query log-probs."""
        out = _floats(len(plan.queries))
        self._call("zo_session_score", out, len(plan.queries))
        return list(out)

    def end(self, query_logprobs=None, example_losses=None):
        """Ends the begun step with the caller's scores; returns the step's result."""
        sc = self.lib.dll.zo_step_scores_default()
        if query_logprobs is not None:
            buf = (C.c_float * len(query_logprobs))(*query_logprobs)
            sc.query_logprobs = C.cast(buf, C.POINTER(C.c_float))
            sc.n_query_logprobs = len(query_logprobs)
        if example_losses is not None:
            buf2 = (C.c_float * len(example_losses))(*example_losses)
            sc.example_losses = C.cast(buf2, C.POINTER(C.c_float))
            sc.n_example_losses = len(example_losses)
        r, arrays = self._result()
        self._call("zo_step_end", C.byref(sc), C.byref(r))
        return self._as_dict(r, arrays)

    def skip(self, reason=None):
        self._call("zo_step_skip", reason.encode() if reason else None)

    def adapter_sites(self):
        n = C.c_size_t()
        self._call("zo_session_adapter_sites", None, 0, C.byref(n))
        arr = (AdapterSite * n.value)()
        self._call("zo_session_adapter_sites", arr, n.value, C.byref(n))
        return [{"layer": s.layer, "hf_module": s.hf_module.decode(), "out_dim": s.out_dim,
                 "in_dim": s.in_dim, "rank": s.rank, "scale": s.scale,
                 "tensor_id": s.tensor_id} for s in arr]

    def _factors(self, name, variant, site, na, nb):
        a, b = _floats(na), _floats(nb)
        var = None if variant is None else C.byref(Variant(*variant))
        self._call(name, var, site, a, na, b, nb)
        return a, b

    def lora_factors(self, variant, site, info):
        """(A', B') of `variant` ((seed, sign, eps), or None for the current factors) at
        adapter site `site`, as flat ctypes float arrays: A' is rank×in, B' out×rank."""
        r = info["rank"]
        return self._factors("zo_session_lora_factors", variant, site,
                             r * info["in_dim"], info["out_dim"] * r)

    def lowrank_factors(self, variant, site, info):
        """(sign·ε·s·U out×rank, V in×rank) of `variant` at adapter site `site`."""
        r = info["rank"]
        return self._factors("zo_session_lowrank_factors", variant, site,
                             info["out_dim"] * r, info["in_dim"] * r)


def classification_loss(plan, query_logprobs):
    """MeZO's loss of each group: cross-entropy over its candidates' mean log-probs."""
    import math
    out = []
    for (_, gold, first, n) in plan.groups:
        scores = []
        for c in range(first, first + n):
            a, b = plan.candidates[c]
            scores.append(sum(query_logprobs[a:b]) / (b - a))
        m = max(scores)
        lse = m + math.log(sum(math.exp(s - m) for s in scores))
        out.append(lse - scores[gold])
    return out
