#!/usr/bin/env python3
"""Generate the small GGUF fixtures under tests/fixtures/gguf/ with the `gguf` Python package.

Usage: make_gguf_fixtures.py [OUT_DIR]   (default: tests/fixtures/gguf next to this script's repo)

Needs only `gguf` and `numpy`. Output is deterministic (fixed seeds), so re-running it reproduces
the committed files. Files:

  dequant.gguf       for each supported ggml type a tensor NAME (2 x 512 values in that type) and
                     NAME.expected (F32): gguf-py's own dequantization of it. The legacy 32-blocks
                     are quantized from random data with gguf.quants; the K-quants are random raw
                     blocks with sane f16 scales. Also one metadata key of every value type.
  tiny_llama.gguf    a 2-layer llama (hidden 32, 4 heads, 2 kv heads, ffn 256, tied embeddings)
                     using several tensor types, with a tiny byte-level BPE tokenizer (pre
                     "smollm", add_bos_token true).
  tiny_llama_expected.gguf
                     F32 tensors under HF names: the q_proj/k_proj weights in HF row order, i.e.
                     the dequantized GGUF tensors with llama.cpp's head permutation undone here in
                     numpy (by inverting the forward permutation the converter applies).
  tiny_qwen2.gguf    a 1-layer qwen2 with q/k/v biases and an untied output.weight (no permutation).
"""

import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import TokenType

QK_K = 256


def dequant_fixture(path: str) -> None:
    rng = np.random.default_rng(1234)
    w = gguf.GGUFWriter(path, arch="test")
    rows, cols = 2, 512

    # Float types and the legacy 32-element blocks: quantize real-valued data.
    for qtype in [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]:
        data = rng.normal(0.0, 1.0, size=(rows, cols)).astype(np.float32)
        data[0, :32] = 0.0  # an all-zero block (scale 0)
        q = gguf.quants.quantize(data, qtype)
        add_typed(w, qtype, q, (rows, cols))
        w.add_tensor(qtype.name.lower() + ".expected", gguf.quants.dequantize(q, qtype).astype(np.float32))

    # K-quants (gguf-py cannot quantize to them): random raw blocks with sane scales.
    for qtype in K_SCALE_FIELDS:
        q = random_k_blocks(rng, qtype, rows, cols)
        add_typed(w, qtype, q, (rows, cols))
        w.add_tensor(qtype.name.lower() + ".expected", gguf.quants.dequantize(q, qtype).astype(np.float32))

    # One key of every metadata value type.
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float32("test.f32", 0.25)
    w.add_float64("test.f64", -1.5e300)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo")
    w.add_array("test.ints", [1, 2, 3])
    w.add_array("test.nested", [["a", "b"], ["c"]])
    finish(w)


# Byte offset of each f16 super-block scale and the range it is drawn from: small finite
# values keep the expected floats finite while every quant bit field stays random.
K_SCALE_FIELDS = {
    T.Q2_K: [(80, 0.01, 0.05), (82, 0.0, 0.02)],
    T.Q3_K: [(108, -0.05, 0.05)],
    T.Q4_K: [(0, 0.001, 0.02), (2, 0.0, 0.01)],
    T.Q5_K: [(0, 0.001, 0.02), (2, 0.0, 0.01)],
    T.Q6_K: [(208, -0.05, 0.05)],
}


def random_k_blocks(rng, qtype, rows: int, cols: int) -> np.ndarray:
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = rows * cols // QK_K
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for offset, lo, hi in K_SCALE_FIELDS[qtype]:
        scale = rng.uniform(lo, hi, size=n_blocks).astype(np.float16)
        raw[:, offset:offset + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(rows, -1)


def add_typed(w, qtype, q, shape):
    if qtype in (T.F32, T.F16):
        w.add_tensor(qtype.name.lower(), q)
    else:
        w.add_tensor(qtype.name.lower(), q, raw_shape=q.shape, raw_dtype=qtype)


def finish(w) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def byte_chars() -> list[str]:
    """GPT-2's byte -> printable character table."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars, n = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return [chars[b] for b in range(256)]


def tiny_tokenizer(w, pre: str, add_bos: bool) -> None:
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "4 2", "c a", "ca t", "Ġ cat"]
    tokens = specials + byte_chars()
    for m in merges:
        tokens.append(m.replace(" ", ""))
    tokens.append("<think>")
    types = [TokenType.CONTROL] * 3 + [TokenType.NORMAL] * (len(tokens) - 4) + [TokenType.USER_DEFINED]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(0)
    w.add_add_bos_token(add_bos)
    return len(tokens)


def permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's converter order: rotary halves of each head interleaved row by row."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def model_fixture(path: str, expected_path: str | None, arch: str, n_layers: int, tied: bool,
                  bias: bool) -> None:
    rng = np.random.default_rng(99 if arch == "llama" else 7)
    hidden, heads, kv_heads, head_dim, ffn = 32, 4, 2, 8, 256
    w = gguf.GGUFWriter(path, arch=arch)
    w.add_context_length(128)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_block_count(n_layers)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    vocab = tiny_tokenizer(w, "smollm" if arch == "llama" else "qwen2", add_bos=arch == "llama")

    expected = gguf.GGUFWriter(expected_path, arch=arch) if expected_path else None

    def rand(*shape, scale=0.1):
        return (rng.normal(0.0, scale, size=shape)).astype(np.float32)

    def add(name, data, qtype):
        if qtype in (T.F32, T.F16):
            w.add_tensor(name, data.astype(np.float32 if qtype == T.F32 else np.float16))
        elif qtype in K_SCALE_FIELDS:
            q = random_k_blocks(rng, qtype, *data.shape)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
        else:
            q = gguf.quants.quantize(data, qtype)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)

    add("token_embd.weight", rand(vocab, hidden), T.Q8_0)
    add("output_norm.weight", 1.0 + rand(hidden), T.F32)
    if not tied:
        add("output.weight", rand(vocab, hidden), T.Q8_0)
    for n in range(n_layers):
        p = f"blk.{n}"
        add(f"{p}.attn_norm.weight", 1.0 + rand(hidden), T.F32)
        add(f"{p}.ffn_norm.weight", 1.0 + rand(hidden), T.F32)
        q_hf, k_hf = rand(heads * head_dim, hidden), rand(kv_heads * head_dim, hidden)
        permuted = arch == "llama"
        q_file = permute(q_hf, heads) if permuted else q_hf
        k_file = permute(k_hf, kv_heads) if permuted else k_hf
        qt, kt = (T.Q4_0, T.Q4_1) if n % 2 == 0 else (T.Q5_1, T.Q8_0)
        add(f"{p}.attn_q.weight", q_file, qt)
        add(f"{p}.attn_k.weight", k_file, kt)
        add(f"{p}.attn_v.weight", rand(kv_heads * head_dim, hidden), T.Q8_0)
        add(f"{p}.attn_output.weight", rand(hidden, heads * head_dim), T.F16)
        add(f"{p}.ffn_gate.weight", rand(ffn, hidden), T.Q5_0)
        add(f"{p}.ffn_up.weight", rand(ffn, hidden), T.BF16)
        add(f"{p}.ffn_down.weight", rand(hidden, ffn), T.Q4_K if n % 2 == 0 else T.Q6_K)
        if bias:
            add(f"{p}.attn_q.bias", rand(heads * head_dim), T.F32)
            add(f"{p}.attn_k.bias", rand(kv_heads * head_dim), T.F32)
            add(f"{p}.attn_v.bias", rand(kv_heads * head_dim), T.F32)
        if expected is not None:
            for hf, data, nh, qtype in [("q_proj", q_file, heads, qt), ("k_proj", k_file, kv_heads, kt)]:
                # Dequantize what the file stores, then put rows back in HF order by inverting
                # the forward permutation (applied to row indices).
                stored = gguf.quants.dequantize(gguf.quants.quantize(data, qtype), qtype)
                order = permute(np.arange(data.shape[0]), nh)  # file row r holds HF row order[r]
                hf_rows = np.empty_like(stored)
                hf_rows[order] = stored
                expected.add_tensor(f"model.layers.{n}.self_attn.{hf}.weight", hf_rows.astype(np.float32))
    finish(w)
    if expected is not None:
        finish(expected)


def main() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "fixtures", "gguf")
    os.makedirs(out, exist_ok=True)
    dequant_fixture(os.path.join(out, "dequant.gguf"))
    model_fixture(os.path.join(out, "tiny_llama.gguf"), os.path.join(out, "tiny_llama_expected.gguf"),
                  "llama", n_layers=2, tied=True, bias=False)
    model_fixture(os.path.join(out, "tiny_qwen2.gguf"), None, "qwen2", n_layers=1, tied=False, bias=True)
    for name in sorted(os.listdir(out)):
        print(f"{name}: {os.path.getsize(os.path.join(out, name))} bytes")


if __name__ == "__main__":
    main()
