#!/usr/bin/env python3
"""qfs-genmodel's architectures laid out as the Hub checkpoints are.

For each --arch (llama3, llama3 --tied, qwen3, qwen3moe, mixtral, gemma3, phi3) and a few
--preset runs cut down by later options: tensor names and shapes against the layout rules
written out again here, dtypes, well-formed safetensors (aligned, contiguous, data sorted by
name), config.json keys and value types, the tokenizer (SentencePiece pieces, then the
family's added tokens inside vocab_size, bos/eos ids), norms near 1 (gemma3: offsets near 0),
shards (index.json maps each tensor to the file that holds it; mixtral splits one layer's
experts over two shards), determinism per seed, and the unchanged bytes of the original
llama output.  Exit 0 on success, 1 on a failure, 77 without the generator."""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402

DTYPE = {"f16": "F16", "bf16": "BF16", "f32": "F32"}
ESIZE = {"F16": 2, "BF16": 2, "F32": 4}

# the bytes qfs-genmodel has always written for --hidden 64 --layers 2 (tests rely on them)
LEGACY_SHA256 = {
    "model.safetensors": "a7f8db12832f233f9e934e55701c5c1544c81e9b3fa9d32d10fbeb541c5d9ff5",
    "tokenizer.model": "5060ea7f36d325bf8943be72112bb8b9dce384f23cc3d877f5328da26b2e7167",
}


def gen(out, args):
    r = subprocess.run([q.GENMODEL, "--out", out, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: qfs-genmodel {' '.join(args)}: {r.stderr.strip()}")


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    return n, h


def check_file(tag, path, sorted_data):
    """Header and data area of one safetensors file; returns {name: (dtype, shape, path, off)}."""
    n, h = read_header(path)
    f = f"{tag}/{os.path.basename(path)}"
    meta = h.pop("__metadata__", None)
    q.check(meta == {"format": "pt"}, f"{f}: __metadata__ {meta}")
    q.check(n % 8 == 0, f"{f}: data area 8-byte aligned")
    order = sorted(h, key=lambda k: h[k]["data_offsets"][0])
    if sorted_data:
        q.check(order == sorted(h), f"{f}: data sorted by name")
    pos, ok = 0, True
    for k in order:
        b, e = h[k]["data_offsets"]
        size = ESIZE[h[k]["dtype"]]
        for d in h[k]["shape"]:
            size *= d
        ok &= b == (pos + 7) // 8 * 8 and e - b == size
        pos = e
    q.check(ok, f"{f}: offsets aligned, contiguous, sized by shape")
    q.check(os.path.getsize(path) == 8 + n + pos, f"{f}: file size")
    return {k: (v["dtype"], v["shape"], path, 8 + n + v["data_offsets"][0]) for k, v in h.items()}


def load_tensors(tag, d, sorted_data=True):
    """All tensors of model dir d, checking the index against the shards."""
    idx = os.path.join(d, "model.safetensors.index.json")
    if not os.path.exists(idx):
        return check_file(tag, os.path.join(d, "model.safetensors"), sorted_data), None
    index = json.load(open(idx))
    wm = index["weight_map"]
    out = {}
    for s in sorted(set(wm.values())):
        t = check_file(tag, os.path.join(d, s), sorted_data)
        q.check(all(wm.get(k) == s for k in t), f"{tag}: index maps every tensor of {s} to it")
        out.update(t)
    q.check(set(out) == set(wm), f"{tag}: index.json names exactly the tensors of the shards")
    total = sum(ESIZE[v[0]] * prod(v[1]) for v in out.values())
    q.check(index["metadata"]["total_size"] == total, f"{tag}: index total_size {total}")
    q.check(all(n.startswith("model-") and n.endswith(f"-of-{len(set(wm.values())):05d}.safetensors")
                for n in set(wm.values())), f"{tag}: shard names model-0000i-of-0000N.safetensors")
    return out, wm


def prod(shape):
    p = 1
    for d in shape:
        p *= d
    return p


def values(t, limit=1 << 16):
    """The first (up to) limit elements of tensor t as floats."""
    dtype, shape, path, off = t
    n = min(prod(shape), limit)
    with open(path, "rb") as f:
        f.seek(off)
        raw = f.read(n * ESIZE[dtype])
    if dtype == "F16":
        return struct.unpack(f"<{n}e", raw)
    if dtype == "BF16":  # the upper half of an F32
        f32 = bytearray(2 * len(raw))
        f32[2::4], f32[3::4] = raw[0::2], raw[1::2]
        raw = bytes(f32)
    return struct.unpack(f"<{n}f", raw)


def mean_std(v):
    m = sum(v) / len(v)
    return m, (sum((x - m) ** 2 for x in v) / len(v)) ** 0.5


def expected(arch, p):
    """name -> shape, written out from the Hub checkpoints' layouts."""
    H, hd, nh, kv, ff = p["hidden"], p["head_dim"], p["heads"], p["kv"], p["ff"]
    e = {"model.embed_tokens.weight": [p["vocab"], H], "model.norm.weight": [H]}
    if not p["tied"]:
        e["lm_head.weight"] = [p["vocab"], H]
    for l in range(p["layers"]):
        L = f"model.layers.{l}."
        e[L + "input_layernorm.weight"] = [H]
        e[L + "post_attention_layernorm.weight"] = [H]
        if arch == "phi3":
            e[L + "self_attn.qkv_proj.weight"] = [(nh + 2 * kv) * hd, H]
            e[L + "self_attn.o_proj.weight"] = [H, nh * hd]
            e[L + "mlp.gate_up_proj.weight"] = [2 * ff, H]
            e[L + "mlp.down_proj.weight"] = [H, ff]
            continue
        e[L + "self_attn.q_proj.weight"] = [nh * hd, H]
        e[L + "self_attn.k_proj.weight"] = [kv * hd, H]
        e[L + "self_attn.v_proj.weight"] = [kv * hd, H]
        e[L + "self_attn.o_proj.weight"] = [H, nh * hd]
        if arch in ("qwen3", "qwen3moe", "gemma3"):
            e[L + "self_attn.q_norm.weight"] = [hd]
            e[L + "self_attn.k_norm.weight"] = [hd]
        if arch == "gemma3":
            e[L + "pre_feedforward_layernorm.weight"] = [H]
            e[L + "post_feedforward_layernorm.weight"] = [H]
        if arch == "qwen3moe":
            e[L + "mlp.gate.weight"] = [p["experts"], H]
            for x in range(p["experts"]):
                E = f"{L}mlp.experts.{x}."
                e[E + "gate_proj.weight"] = [p["moe_ff"], H]
                e[E + "up_proj.weight"] = [p["moe_ff"], H]
                e[E + "down_proj.weight"] = [H, p["moe_ff"]]
        elif arch == "mixtral":
            e[L + "block_sparse_moe.gate.weight"] = [p["experts"], H]
            for x in range(p["experts"]):
                E = f"{L}block_sparse_moe.experts.{x}."
                e[E + "w1.weight"] = [ff, H]
                e[E + "w2.weight"] = [H, ff]
                e[E + "w3.weight"] = [ff, H]
        else:
            e[L + "mlp.gate_proj.weight"] = [ff, H]
            e[L + "mlp.up_proj.weight"] = [ff, H]
            e[L + "mlp.down_proj.weight"] = [H, ff]
    return e


def sp_pieces(path):
    """Piece strings of a SentencePiece ModelProto (field 1), and TrainerSpec vocab_size."""
    b = open(path, "rb").read()

    def varint(i):
        v = s = 0
        while True:
            c = b[i]
            v |= (c & 0x7F) << s
            s += 7
            i += 1
            if c < 0x80:
                return v, i

    def fields(lo, hi):
        i = lo
        while i < hi:
            key, i = varint(i)
            wt = key & 7
            if wt == 0:
                v, i = varint(i)
                yield key >> 3, v
            elif wt == 2:
                n, i = varint(i)
                yield key >> 3, (i, i + n)
                i += n
            elif wt == 5:
                yield key >> 3, b[i:i + 4]
                i += 4
            else:
                raise ValueError(f"wire type {wt}")

    pieces, vs = [], None
    for f, v in fields(0, len(b)):
        if f == 1:
            pieces.append(next(b[x:y].decode() for g, (x, y) in
                               ((g, w) for g, w in fields(*v) if g == 1)))
        elif f == 2:
            vs = next((w for g, w in fields(*v) if g == 4), None)
    return pieces, vs


FAMILY = {  # bos, eos contents; tokenizer_class; number of added tokens
    "llama3": ("<|begin_of_text|>", "<|end_of_text|>", "LlamaTokenizer", 256),
    "qwen3": ("<|endoftext|>", "<|im_end|>", "LlamaTokenizer", 26),
    "qwen3moe": ("<|endoftext|>", "<|im_end|>", "LlamaTokenizer", 26),
    "mixtral": ("<s>", "</s>", "LlamaTokenizer", 0),
    "gemma3": ("<s>", "</s>", "GemmaTokenizer", 2),
    "phi3": ("<s>", "<|endoftext|>", "LlamaTokenizer", 11),
}

MODEL_TYPE = {"llama3": "llama", "qwen3": "qwen3", "qwen3moe": "qwen3_moe", "mixtral": "mixtral",
              "gemma3": "gemma3_text", "phi3": "phi3"}
CLASS = {"llama3": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM",
         "qwen3moe": "Qwen3MoeForCausalLM", "mixtral": "MixtralForCausalLM",
         "gemma3": "Gemma3ForCausalLM", "phi3": "Phi3ForCausalLM"}


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_config(tag, arch, p, d):
    c = json.load(open(os.path.join(d, "config.json")))
    ok = (c["architectures"] == [CLASS[arch]] and c["model_type"] == MODEL_TYPE[arch]
          and c["hidden_size"] == p["hidden"] and c["num_hidden_layers"] == p["layers"]
          and c["num_attention_heads"] == p["heads"] and c["num_key_value_heads"] == p["kv"]
          and c["intermediate_size"] == p["ff"] and c["vocab_size"] == p["vocab"]
          and c["torch_dtype"] == {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}[p["dtype"]])
    q.check(ok, f"{tag}: config.json architecture and shapes")
    has_hd = arch in ("qwen3", "qwen3moe", "gemma3")
    q.check(("head_dim" in c) == has_hd and (not has_hd or c["head_dim"] == p["head_dim"]),
            f"{tag}: head_dim key {'present' if has_hd else 'absent'}")
    if arch != "gemma3":
        q.check(c["tie_word_embeddings"] is p["tied"], f"{tag}: tie_word_embeddings {p['tied']}")
    if arch == "llama3":
        q.check(c["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 8192}
                and c["rope_theta"] == 500000.0 and isinstance(c["rope_theta"], float)
                and c["max_position_embeddings"] == 131072, f"{tag}: llama3 rope")
    if arch in ("qwen3", "qwen3moe"):
        q.check(c["rope_theta"] == 1e6 and not c["attention_bias"] and c["rope_scaling"] is None
                and c["sliding_window"] is None and c["use_sliding_window"] is False,
                f"{tag}: qwen3 rope_theta 1e6, no biases, no sliding window")
    if arch == "qwen3moe":
        q.check(c["num_experts"] == p["experts"] and c["num_experts_per_tok"] == p["used"]
                and c["moe_intermediate_size"] == p["moe_ff"] and c["decoder_sparse_step"] == 1
                and c["mlp_only_layers"] == [] and c["norm_topk_prob"] is True,
                f"{tag}: qwen3moe expert keys")
    if arch == "mixtral":
        q.check(c["num_local_experts"] == p["experts"] and c["num_experts_per_tok"] == p["used"]
                and c["rope_theta"] == 1e6 and isinstance(c["rope_theta"], float)
                and "sliding_window" in c and c["sliding_window"] is None,
                f"{tag}: mixtral expert keys, rope_theta, sliding_window null")
    if arch == "gemma3":
        q.check(c["query_pre_attn_scalar"] == p["head_dim"] and c["sliding_window"] == 512
                and c["sliding_window_pattern"] == 6 and c["rope_local_base_freq"] == 10000
                and c["rope_theta"] == 1000000 and is_int(c["rope_theta"])
                and c["hidden_activation"] == "gelu_pytorch_tanh" and "hidden_act" not in c
                and "tie_word_embeddings" not in c, f"{tag}: gemma3 keys")
    if arch == "phi3":
        rs = c["rope_scaling"]
        n = p["head_dim"] // 2
        q.check(rs["type"] == "longrope" and len(rs["long_factor"]) == n
                and len(rs["short_factor"]) == n
                and all(isinstance(x, float) for x in rs["long_factor"] + rs["short_factor"])
                and is_int(c["original_max_position_embeddings"]) and is_int(c["sliding_window"]),
                f"{tag}: phi3 longrope ({n} factors each), original_max_position_embeddings")
    return c


def check_tokenizer(tag, arch, p, d, c):
    pieces, vs = sp_pieces(os.path.join(d, "tokenizer.model"))
    bos_s, eos_s, cls, n_added = FAMILY[arch]
    tc = json.load(open(os.path.join(d, "tokenizer_config.json")))
    atd = {int(k): v["content"] for k, v in tc.get("added_tokens_decoder", {}).items()}
    added = {i: s for i, s in atd.items() if i >= len(pieces)}
    q.check(vs == len(pieces) and pieces[:3] == ["<unk>", "<s>", "</s>"] and len(pieces) >= 262,
            f"{tag}: tokenizer.model of {len(pieces)} pieces")
    q.check(sorted(added) == list(range(len(pieces), len(pieces) + n_added))
            and len(pieces) + n_added <= p["vocab"],
            f"{tag}: {n_added} added tokens right after the pieces, inside vocab_size {p['vocab']}")
    q.check(all(atd[i] == pieces[i] for i in atd if i < len(pieces)),
            f"{tag}: added_tokens_decoder entries of pieces name them")
    vocab = {**dict(enumerate(pieces)), **added}
    q.check(vocab.get(c["bos_token_id"]) == bos_s and vocab.get(c["eos_token_id"]) == eos_s,
            f"{tag}: bos {c['bos_token_id']} = {bos_s}, eos {c['eos_token_id']} = {eos_s}")
    q.check(tc["tokenizer_class"] == cls, f"{tag}: tokenizer_class {cls}")
    g = json.load(open(os.path.join(d, "generation_config.json")))
    geos = g["eos_token_id"] if isinstance(g["eos_token_id"], list) else [g["eos_token_id"]]
    q.check(g["bos_token_id"] == c["bos_token_id"] and c["eos_token_id"] in geos,
            f"{tag}: generation_config.json bos/eos")
    q.check(os.path.exists(os.path.join(d, "special_tokens_map.json")),
            f"{tag}: special_tokens_map.json")


def run_case(tag, arch, args, p, base):
    d = os.path.join(base, tag)
    gen(d, ["--arch", arch, *args] if arch else args)
    arch = arch or json.load(open(os.path.join(d, "config.json")))["model_type"]
    arch = {"llama": "llama3", "qwen3_moe": "qwen3moe", "gemma3_text": "gemma3"}.get(arch, arch)
    t, wm = load_tensors(tag, d)
    e = expected(arch, p)
    q.check(set(t) == set(e), f"{tag}: tensor names ({len(t)})"
            + ("" if set(t) == set(e) else f": extra {sorted(set(t) - set(e))[:4]},"
               f" missing {sorted(set(e) - set(t))[:4]}"))
    bad = [k for k in set(t) & set(e) if t[k][1] != e[k]]
    q.check(not bad, f"{tag}: tensor shapes" + (f": {bad[0]} {t[bad[0]][1]} != {e[bad[0]]}" if bad else ""))
    q.check(all(v[0] == p["dtype"] for v in t.values()), f"{tag}: every tensor {p['dtype']}")
    c = check_config(tag, arch, p, d)
    check_tokenizer(tag, arch, p, d, c)
    norm = [k for k in t if k.endswith("norm.weight")]
    means = [mean_std(values(t[k]))[0] for k in norm]
    want = 0.0 if arch == "gemma3" else 1.0
    q.check(all(abs(m - want) < 0.1 for m in means), f"{tag}: norm weights near {want}")
    m, sd = mean_std(values(t["model.embed_tokens.weight"]))
    q.check(abs(m) < 0.005 and 0.015 < sd < 0.025, f"{tag}: embedding ~ N(0, 0.02)")
    return d, t, wm


def params(**kw):
    p = {"layers": 2, "tied": False, "dtype": "F16", "experts": 0, "used": 0, "moe_ff": 0}
    p.update(kw)
    p.setdefault("head_dim", p["hidden"] // p["heads"])
    return p


def main():
    if not os.access(q.GENMODEL, os.X_OK):
        q.skip(f"{q.GENMODEL} not built")
    base = q.tmpdir("genmodel-arch")
    try:
        # the original llama layout keeps its bytes
        d = os.path.join(base, "legacy")
        gen(d, ["--hidden", "64", "--layers", "2"])
        for f, h in LEGACY_SHA256.items():
            got = hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
            q.check(got == h, f"legacy llama {f} unchanged")

        run_case("llama3", "llama3", ["--hidden", "128", "--heads", "4", "--kv-heads", "2",
                                      "--ff", "256", "--vocab", "600"],
                 params(hidden=128, heads=4, kv=2, ff=256, vocab=600), base)
        run_case("llama3-tied", "llama3", ["--hidden", "64", "--tied"],
                 params(hidden=64, heads=4, kv=2, ff=128, vocab=576, tied=True), base)
        run_case("qwen3", "qwen3", ["--hidden", "96", "--heads", "4", "--kv-heads", "2",
                                    "--head-dim", "32", "--ff", "192", "--vocab", "400", "--tied"],
                 params(hidden=96, heads=4, kv=2, head_dim=32, ff=192, vocab=400, tied=True), base)
        run_case("qwen3moe", "qwen3moe",
                 ["--hidden", "64", "--heads", "4", "--kv-heads", "1", "--head-dim", "32",
                  "--ff", "192", "--experts", "4", "--experts-used", "2", "--moe-ff", "48",
                  "--shards", "3"],
                 params(hidden=64, heads=4, kv=1, head_dim=32, ff=192, vocab=384, experts=4,
                        used=2, moe_ff=48), base)
        mx_args = ["--hidden", "64", "--heads", "4", "--kv-heads", "2", "--ff", "96",
                   "--experts", "4", "--layers", "3", "--shards", "3", "--dtype", "bf16"]
        d, t, wm = run_case("mixtral", "mixtral", mx_args,
                            params(hidden=64, heads=4, kv=2, ff=96, vocab=320, experts=4, used=2,
                                   layers=3, dtype="BF16"), base)
        spans = {}
        for k, s in wm.items():
            if ".block_sparse_moe.experts." in k:
                spans.setdefault(int(k.split(".")[2]), set()).add(s)
        split = sorted(l for l, s in spans.items() if len(s) == 2)
        q.check(len(split) == 2 and all(len(s) <= 2 for s in spans.values()),
                f"mixtral: the experts of layers {split} span two shards (one per boundary)")
        for l in split:
            first = {wm[f"model.layers.{l}.block_sparse_moe.experts.{x}.w1.weight"] for x in range(2)}
            rest = {wm[f"model.layers.{l}.block_sparse_moe.experts.{x}.w1.weight"] for x in range(2, 4)}
            q.check(len(first) == 1 and len(rest) == 1 and first != rest,
                    f"mixtral layer {l}: experts 0-1 in {first}, 2-3 in {rest}")
        # deterministic per seed
        d2 = os.path.join(base, "mixtral-again")
        gen(d2, ["--arch", "mixtral", *mx_args])
        same = all(open(os.path.join(d, f), "rb").read() == open(os.path.join(d2, f), "rb").read()
                   for f in set(wm.values()))
        q.check(same, "mixtral: the same bytes again")
        shutil.rmtree(d2)
        gen(d2, ["--arch", "mixtral", *mx_args, "--seed", "9"])
        t2, _ = load_tensors("mixtral-seed9", d2)
        q.check(values(t2["model.embed_tokens.weight"]) != values(t["model.embed_tokens.weight"]),
                "mixtral: another --seed, other weights")
        run_case("gemma3", "gemma3", ["--hidden", "64", "--heads", "2", "--kv-heads", "1",
                                      "--head-dim", "48", "--ff", "128", "--vocab", "300"],
                 params(hidden=64, heads=2, kv=1, head_dim=48, ff=128, vocab=300, tied=True,
                        dtype="BF16"), base)
        run_case("phi3", "phi3", ["--hidden", "96", "--heads", "4", "--kv-heads", "2",
                                  "--ff", "160", "--vocab", "400"],
                 params(hidden=96, heads=4, kv=2, ff=160, vocab=400), base)
        # presets: real shapes, cut down by the options after them
        run_case("preset-gemma3-1b", None, ["--preset", "gemma3-1b", "--layers", "1",
                                            "--vocab", "1000"],
                 params(hidden=1152, layers=1, heads=4, kv=1, head_dim=256, ff=6912, vocab=1000,
                        tied=True, dtype="BF16"), base)
        run_case("preset-qwen3-30b-a3b", None,
                 ["--preset", "qwen3-30b-a3b", "--layers", "1", "--vocab", "1000",
                  "--experts", "8", "--dtype", "f16"],
                 params(hidden=2048, layers=1, heads=32, kv=4, head_dim=128, ff=6144, vocab=1000,
                        experts=8, used=8, moe_ff=768), base)
        c = json.load(open(os.path.join(base, "preset-qwen3-30b-a3b", "config.json")))
        q.check(c["max_position_embeddings"] == 40960 and c["tie_word_embeddings"] is False,
                "preset qwen3-30b-a3b: 40960 positions, untied")
        run_case("preset-phi3.5-mini", None, ["--preset", "phi3.5-mini", "--layers", "1",
                                              "--hidden", "768", "--heads", "8", "--kv-heads",
                                              "8", "--ff", "1024"],
                 params(hidden=768, layers=1, heads=8, kv=8, ff=1024, vocab=32064, dtype="BF16"),
                 base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    q.finish()


if __name__ == "__main__":
    main()
