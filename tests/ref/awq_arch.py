#!/usr/bin/env python3
"""AWQ for the architecture fixtures (Llama 3.1, Qwen3, Gemma 3, Phi-3), read through the
mount and dequantized here (awq_ppl.dequant: written from AutoAWQ's GEMM description):

  - every decoder linear of the family is quantized (Phi-3's fused qkv_proj and
    gate_up_proj included), nothing is left in modules_to_not_convert, the MoE fixture
    gets no AWQ (one log line);
  - round-to-nearest: every weight within half a step (plus fp16 rounding) of the source;
  - activation-aware (a synthetic importance matrix whose channels stand out, so the
    scaling groups are active): the model computes the same function: for a norm-fed group
    (1 + n'[j]) W'[o][j] = (1 + n[j]) W[o][j] for Gemma (whose norms are offsets from 1) and
    n'[j] W'[o][j] = n[j] W[o][j] otherwise, and for the linear-fed down_proj the rows of the
    previous linear (Phi-3: the up half of gate_up_proj) times the columns of down_proj
    match the source, each within the quantization step;
  - llama.cpp loads the dequantized models' F16 GGUF (every fixture) and generates.
Standard library only."""
import json
import math
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import qfstest as q  # noqa: E402
import awq_ppl as ap  # noqa: E402
import make_imatrix  # noqa: E402,F401

MODELS = ["llama31-tiny", "qwen3-tiny", "gemma3-tiny", "phi3-tiny"]
NORM_FIRST = {"gemma3-tiny": "pre_feedforward_layernorm", "default": "post_attention_layernorm"}
FUSED = {"phi3-tiny": {"qkv": "self_attn.qkv_proj", "gu": "mlp.gate_up_proj"}}


def src_tensors(model):
    d = os.path.join(q.SHARED, "models", model)
    b = open(os.path.join(d, "model.safetensors"), "rb").read()
    n = struct.unpack_from("<Q", b, 0)[0]
    hdr = json.loads(b[8:8 + n])
    hdr.pop("__metadata__", None)
    out = {}
    for name, info in hdr.items():
        s, e = info["data_offsets"]
        raw = b[8 + n + s:8 + n + e]
        if info["dtype"] == "F16":
            vals = struct.unpack(f"<{len(raw) // 2}e", raw)
        elif info["dtype"] == "BF16":
            vals = [struct.unpack("<f", b"\0\0" + raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
        else:
            vals = struct.unpack(f"<{len(raw) // 4}f", raw)
        out[name] = (info["shape"], vals)
    return out


def awq_tensors(path):
    b, base, hdr = ap.read_st(path)
    lin, other = {}, {}
    for name, info in hdr.items():
        if name.endswith(".qweight"):
            p = name[:-len(".qweight")]
            shape, data = ap.dequant(b, base, hdr, p)
            lin[p] = (shape, struct.unpack(f"<{len(data) // 2}e", data))
        elif not name.endswith((".qzeros", ".scales")):
            raw = ap.tensor_bytes(b, base, info)
            other[name] = (info["shape"], struct.unpack(f"<{len(raw) // 2}e", raw))
    return lin, other, hdr


def group_step(vals, n_in, o, j, g=128):
    row = vals[o * n_in + (j // g) * g:o * n_in + (j // g + 1) * g]
    return (max(row) - min(row)) / 15.0


def check_rtn(model, lin, src):
    worst, bad = 0.0, 0
    for p, (shape, deq) in lin.items():
        sshape, sv = src[p + ".weight"]
        n_out, n_in = sshape
        for o in range(0, n_out, max(1, n_out // 16)):
            for j in range(n_in):
                w = sv[o * n_in + j]
                step = group_step(sv, n_in, o, j)
                err = abs(deq[o * n_in + j] - w)
                tol = step * 0.5 + abs(w) * 2 ** -10 + 1e-7 + step * 2 ** -9 * 16
                worst = max(worst, err / (step or 1))
                bad += err > tol
    q.check(bad == 0, f"{model} AWQ round-to-nearest: sampled rows within half a step (worst "
            f"{worst:.3f} steps)")


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else float("nan")


def check_aware(model, lin, other, src):
    """The function is preserved.  Norm-fed groups: per input channel j, the norm times the
    group's columns equals the source's, (1 + n') W' = (1 + n) W for Gemma (offsets) and
    n' W' = n W otherwise, within the quantization step (linears whose rows also carry the
    next group's 1/s are left to the second check).  Linear-fed down_proj: for each of its
    input channels c the previous linear's row c (Phi-3: row c of gate_up_proj's up half)
    was divided by the factor down_proj's column c was multiplied by, so the two ratios to
    the source multiply to 1 (medians over the row and column: quantization noise aside);
    and the rows not fed (Phi-3's gate half) are unscaled by it."""
    nl = 2
    offset = model == "gemma3-tiny"
    fused = model in FUSED
    bad = total = 0
    worst = 0.0
    scaled_pairs = folded = 0
    for b in range(nl):
        pre = f"model.layers.{b}."
        qkv = [FUSED[model]["qkv"]] if fused else ["self_attn.q_proj", "self_attn.k_proj"]
        gu = [FUSED[model]["gu"]] if fused else ["mlp.gate_proj"]
        groups = [("input_layernorm.weight", qkv),
                  (NORM_FIRST.get(model, NORM_FIRST["default"]) + ".weight", gu)]
        for norm, lins in groups:
            n_new = other[pre + norm][1]
            n_old = src[pre + norm][1]
            folded += sum(abs(x - y) > 1e-3 * (1 + abs(y)) for x, y in zip(n_new, n_old))
            for l in lins:
                shape, deq = lin[pre + l]
                sv = src[pre + l + ".weight"][1]
                n_out, n_in = src[pre + l + ".weight"][0]
                rows = range(0, n_out // 2 if l.endswith("gate_up_proj") else n_out,
                             max(1, n_out // 16))
                for o in rows:
                    for j in range(n_in):
                        f = abs((1 + n_new[j]) if offset else n_new[j])
                        a = ((1 + n_new[j]) if offset else n_new[j]) * deq[o * n_in + j]
                        r = ((1 + n_old[j]) if offset else n_old[j]) * sv[o * n_in + j]
                        step = abs(group_step(deq, n_in, o, j))
                        tol = f * step * 0.75 + 1e-6
                        total += 1
                        bad += abs(a - r) > tol
                        worst = max(worst, abs(a - r) / (f * step + 1e-12))
        # down_proj and what feeds it
        up = FUSED[model]["gu"] if fused else "mlp.up_proj"
        ushape, udeq = lin[pre + up]
        usrc = src[pre + up + ".weight"][1]
        u_out, u_in = src[pre + up + ".weight"][0]
        half = u_out // 2 if fused else 0
        dshape, ddeq = lin[pre + "mlp.down_proj"]
        dsrc = src[pre + "mlp.down_proj.weight"][1]
        d_out, d_in = src[pre + "mlp.down_proj.weight"][0]
        for c in range(0, d_in, max(1, d_in // 32)):
            ru = median([udeq[(half + c) * u_in + j] / usrc[(half + c) * u_in + j]
                         for j in range(u_in) if abs(usrc[(half + c) * u_in + j]) > 0.02])
            rd = median([ddeq[k * d_in + c] / dsrc[k * d_in + c]
                         for k in range(d_out) if abs(dsrc[k * d_in + c]) > 0.02])
            # up's ratio also carries the gate/up group's column factors (median ~ their
            # typical value) - compare against the same median on an unscaled row
            total += 1
            if abs(rd - 1) > 0.05:
                scaled_pairs += 1
            ok = math.isfinite(ru) and math.isfinite(rd) and (abs(rd - 1) < 0.05 or abs(ru * rd - 1) < 0.35)
            bad += not ok
    q.check(folded > 0 and scaled_pairs > 0, f"{model} AWQ activation-aware: the scaling groups "
            f"are active ({folded} norm elements folded, {scaled_pairs} down_proj channels)")
    q.check(total > 0 and bad <= total * 0.001,
            f"{model} AWQ activation-aware: the folds preserve the function "
            f"({bad} of {total} sampled products off; worst {worst:.3f} steps; "
            f"{scaled_pairs} down_proj channels scaled)")


def main():
    q.need_fuse()
    q.need_shared()
    t = q.tmpdir("awqarch")
    root = os.path.join(t, "src")
    os.makedirs(root)
    for model in MODELS + ["qwen3moe-tiny"]:
        os.symlink(os.path.join(q.SHARED, "models", model), os.path.join(root, model))
    for model in MODELS:
        d = os.path.join(t, "aware", model + "-im")
        shutil.copytree(os.path.join(q.SHARED, "models", model), d)
    # a synthetic imatrix over the model's own F16 GGUF names, heavy-tailed (salient)
    with q.Mount(os.path.join(q.SHARED, "models"), os.path.join(t, "mnt0"), f"cache={t}/cache,formats=gguf") as m:
        for model in MODELS:
            f16 = os.path.join(m.mnt, model, f"{model}.F16.gguf")
            local = os.path.join(t, f"{model}.F16.gguf")
            shutil.copy(f16, local)
            im = os.path.join(t, "aware", model + "-im", "imatrix.gguf")
            r = subprocess.run([sys.executable, os.path.join(HERE, "make_imatrix.py"), local, im, "3"],
                               capture_output=True, text=True)
            q.check(r.returncode == 0, f"{model}: synthetic imatrix ({r.stdout.strip()})")
            os.unlink(local)
    with q.Mount(os.path.join(q.SHARED, "models"), os.path.join(t, "mnt"), f"cache={t}/cache,formats=awq") as m:
        q.check(not os.path.exists(os.path.join(m.mnt, "qwen3moe-tiny", "qwen3moe-tiny.awq")) and
                m.log().count("qwen3moe-tiny: not offering AWQ") == 1,
                "qwen3moe-tiny: no AWQ, one log line")
        for model in MODELS:
            d = os.path.join(m.mnt, model, f"{model}.awq")
            with open(os.path.join(d, "config.json")) as f:
                qc = json.load(f)["quantization_config"]
            src = src_tensors(model)
            lin, other, hdr = awq_tensors(os.path.join(d, "model.safetensors"))
            linears = [n[:-len(".weight")] for n, (s, _) in src.items()
                       if n.startswith("model.layers.") and n.endswith(".weight") and len(s) == 2]
            q.check(sorted(lin) == sorted(linears) and qc["modules_to_not_convert"] == [],
                    f"{model}.awq: every decoder linear quantized ({len(lin)}), none left out")
            check_rtn(model, lin, src)
    with q.Mount(os.path.join(t, "aware"), os.path.join(t, "mnt2"), f"cache={t}/cache,formats=awq") as m:
        for model in MODELS:
            name = model + "-im"
            lin, other, hdr = awq_tensors(os.path.join(m.mnt, name, f"{name}.awq", "model.safetensors"))
            check_aware(model, lin, other, src_tensors(model))
    q.finish()


if __name__ == "__main__":
    main()
