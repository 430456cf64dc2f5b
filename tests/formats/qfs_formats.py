#!/usr/bin/env python3
"""Independent readers for the four quantized output directories quantfs serves:

  <model>.fp8/        compressed-tensors float-quantized (FP8_DYNAMIC)
  <model>.w4a16/      compressed-tensors pack-quantized (W4A16, group 128)
  <model>.gptq/       GPTQ checkpoint format v1, 4 bits, group 128, sym
  <model>.mlx-4bit/   MLX affine, group 64 (and .mlx-8bit/)

Written from the format descriptions in notes/formats.md (compressed-tensors,
llm-compressor, AutoGPTQ, GPTQModel, vLLM, transformers, mlx, mlx_lm sources),
not from quantfs code.  Standard library only.

  python3 tests/formats/qfs_formats.py selftest
  python3 tests/formats/qfs_formats.py check DIR {fp8,w4a16,gptq,mlx-4bit,mlx-8bit} [--source SRC] [--rows N]
  python3 tests/formats/qfs_formats.py dump FILE.safetensors

As a module: STFile (strict safetensors reader), decode(), the dequantizers
fp8_dequant / w4a16_dequant / gptq_dequant / mlx_dequant (whole matrices) and
their *_row variants, validate_{fp8,w4a16,gptq,mlx}_config(config) -> [problems],
and check_dir(path, fmt, source=None) -> [problems].
"""
import json
import math
import os
import random
import struct
import sys
import tempfile

# ---------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
              "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
              "F8_E4M3": 1, "F8_E5M2": 1}
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
MAX_HEADER = 100_000_000          # safetensors MAX_HEADER_SIZE


class FormatError(Exception):
    pass


class TensorInfo:
    __slots__ = ("name", "dtype", "shape", "begin", "end")

    def __init__(self, name, dtype, shape, begin, end):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end

    @property
    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def __repr__(self):
        return f"{self.name}: {self.dtype}{list(self.shape)} @[{self.begin},{self.end})"


def _no_dup_pairs(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise FormatError(f"duplicate JSON key {k!r}")
        d[k] = v
    return d


class STFile:
    """Strict safetensors reader.  src: a path or a bytes object.

    Always checked (what the safetensors crate rejects): header length vs file,
    UTF-8 JSON object, entries {dtype, shape, data_offsets}, known dtype,
    end-begin == numel*size, offsets contiguous from 0 with no holes, last end ==
    end of file, __metadata__ a str->str map.  Also checked unless turned off:
    header length a multiple of 8 padded with spaces only (pad_check), every
    tensor's absolute offset a multiple of `align`, data laid out in tensor-name
    order (require_sorted), no duplicate keys."""

    def __init__(self, src, *, align=8, require_sorted=True, pad_check=True):
        self._buf = None
        self._fh = None
        if isinstance(src, (bytes, bytearray, memoryview)):
            self._buf = bytes(src)
            size = len(self._buf)
            self.path = "<bytes>"
        else:
            self.path = src
            self._fh = open(src, "rb")
            self._fh.seek(0, 2)
            size = self._fh.tell()
        self.size = size
        if size < 8:
            raise FormatError("file shorter than 8 bytes")
        n = struct.unpack("<Q", self._read(0, 8))[0]
        if n > MAX_HEADER:
            raise FormatError(f"header length {n} > {MAX_HEADER}")
        if 8 + n > size:
            raise FormatError(f"header length {n} runs past the file ({size} bytes)")
        self.header_len = n
        raw = self._read(8, n)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("header is not UTF-8")
        if not text.startswith("{"):
            raise FormatError("header does not start with '{'")
        if pad_check:
            if n % 8:
                raise FormatError(f"header length {n} is not a multiple of 8")
            body = text.rstrip(" ")
            if not body.endswith("}"):
                raise FormatError("header padding is not spaces after the JSON object")
            tail = text[len(body):]
            if len(tail) >= 8:
                raise FormatError(f"header has {len(tail)} padding spaces (>= 8)")
        try:
            hdr = json.loads(text, object_pairs_hook=_no_dup_pairs)
        except json.JSONDecodeError as e:
            raise FormatError(f"header is not JSON: {e}")
        if not isinstance(hdr, dict):
            raise FormatError("header is not a JSON object")
        meta = hdr.pop("__metadata__", None)
        if meta is not None:
            if not isinstance(meta, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
                raise FormatError("__metadata__ is not a string->string map")
        self.metadata = meta
        self.tensors = {}
        for name, e in hdr.items():
            if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
                raise FormatError(f"{name}: entry must have exactly dtype, shape, data_offsets")
            dt, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
            if dt not in DTYPE_SIZE:
                raise FormatError(f"{name}: unknown dtype {dt!r}")
            if not isinstance(shape, list) or not all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
                raise FormatError(f"{name}: bad shape {shape!r}")
            if (not isinstance(offs, list) or len(offs) != 2 or not all(
                    isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offs)):
                raise FormatError(f"{name}: bad data_offsets {offs!r}")
            t = TensorInfo(name, dt, tuple(shape), offs[0], offs[1])
            if t.end < t.begin or t.end - t.begin != t.numel * DTYPE_SIZE[dt]:
                raise FormatError(f"{name}: data_offsets {offs} do not match {dt}{shape}")
            self.tensors[name] = t
        by_off = sorted(self.tensors.values(), key=lambda t: (t.begin, t.end))
        pos = 0
        for t in by_off:
            if t.begin != pos:
                raise FormatError(f"{t.name}: begins at {t.begin}, previous data ends at {pos}"
                                  " (hole or overlap)")
            pos = t.end
        if 8 + n + pos != size:
            raise FormatError(f"data ends at {8 + n + pos}, file has {size} bytes")
        if align:
            for t in by_off:
                if t.numel and (8 + n + t.begin) % align:
                    raise FormatError(f"{t.name}: file offset {8 + n + t.begin} not {align}-aligned")
        if require_sorted:
            order = [t.name for t in by_off]
            if order != sorted(order):
                bad = next(i for i, (a, b) in enumerate(zip(order, sorted(order))) if a != b)
                raise FormatError(f"data not in name order: {order[bad]!r} at position {bad}")
        self.data_start = 8 + n

    def _read(self, off, length):
        if self._buf is not None:
            return self._buf[off:off + length]
        self._fh.seek(off)
        b = self._fh.read(length)
        if len(b) != length:
            raise FormatError("short read")
        return b

    def close(self):
        if self._fh:
            self._fh.close()
            self._fh = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def __contains__(self, name):
        return name in self.tensors

    def info(self, name):
        return self.tensors[name]

    def raw(self, name, start=0, length=None):
        t = self.tensors[name]
        nb = t.end - t.begin
        if length is None:
            length = nb - start
        if start < 0 or start + length > nb:
            raise IndexError(f"{name}: byte range {start}+{length} outside {nb}")
        return self._read(self.data_start + t.begin + start, length)

    def values(self, name):
        t = self.tensors[name]
        return decode(t.dtype, self.raw(name))

    def row(self, name, r):
        """Row r of a 2-D tensor, decoded."""
        t = self.tensors[name]
        if len(t.shape) != 2:
            raise FormatError(f"{name}: not 2-D")
        es = DTYPE_SIZE[t.dtype]
        return decode(t.dtype, self.raw(name, r * t.shape[1] * es, t.shape[1] * es))

    def element(self, name, flat_index):
        t = self.tensors[name]
        es = DTYPE_SIZE[t.dtype]
        return decode(t.dtype, self.raw(name, flat_index * es, es))[0]


def write_safetensors(path, tensors, metadata=None, *, order="name", align=8, gap=0,
                      pad_char=b" "):
    """Tiny writer for the self-test.  tensors: name -> (dtype, shape, bytes).
    order 'name' lays data out by name; 'reverse' the opposite.  Refuses to
    produce a misaligned offset unless align=0.  gap>0 inserts that many
    junk bytes before the second tensor (an illegal file, for negative tests)."""
    names = sorted(tensors)
    if order == "reverse":
        names = names[::-1]
    hdr = {}
    if metadata is not None:
        hdr["__metadata__"] = metadata
    pos = 0
    blobs = []
    for i, nm in enumerate(names):
        dt, shape, data = tensors[nm]
        if i == 1 and gap:
            blobs.append(b"\xee" * gap)
            pos += gap
        if align and pos % align:
            raise ValueError(f"{nm}: offset {pos} not {align}-aligned; pick shapes with "
                             f"sizes that are multiples of {align}")
        hdr[nm] = {"dtype": dt, "shape": list(shape), "data_offsets": [pos, pos + len(data)]}
        blobs.append(data)
        pos += len(data)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += pad_char * ((8 - len(h) % 8) % 8)
    out = struct.pack("<Q", len(h)) + h + b"".join(blobs)
    if path is None:
        return out
    with open(path, "wb") as f:
        f.write(out)
    return out


# ---------------------------------------------------------------------------
# scalar encodings
# ---------------------------------------------------------------------------

def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bits_f32(b):
    return struct.unpack("<f", struct.pack("<I", b & 0xFFFFFFFF))[0]


def f32(x):
    """Round a Python float to float32 (RNE); inf on overflow like C."""
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def bf16_bits_from_f32(x):
    """float32 value -> bf16 bits, round to nearest even (torch/c10 semantics)."""
    b = f32_bits(x)
    if (b & 0x7F800000) == 0x7F800000 and (b & 0x7FFFFF):
        return ((b >> 16) | 0x40) & 0xFFFF
    b += 0x7FFF + ((b >> 16) & 1)
    return (b >> 16) & 0xFFFF


def bf16_bits_value(h):
    return bits_f32(h << 16)


def bf16(x):
    return bf16_bits_value(bf16_bits_from_f32(f32(x)))


def f16(x):
    return struct.unpack("<e", struct.pack("<e", x))[0]


def round_dtype(x, dt):
    if dt == "BF16":
        return bf16(x)
    if dt == "F16":
        return f16(x)
    if dt == "F32":
        return f32(x)
    raise ValueError(dt)


def encode_floats(dt, vals):
    if dt == "F32":
        return struct.pack(f"<{len(vals)}f", *vals)
    if dt == "F16":
        return struct.pack(f"<{len(vals)}e", *vals)
    if dt == "BF16":
        return struct.pack(f"<{len(vals)}H", *[bf16_bits_from_f32(f32(v)) for v in vals])
    raise ValueError(dt)


def e4m3_value(code):
    """float8_e4m3fn: bias 7, no inf, S.1111.111 = NaN, max 448."""
    s = -1.0 if code & 0x80 else 1.0
    e = (code >> 3) & 0xF
    m = code & 7
    if e == 15 and m == 7:
        return math.nan
    if e == 0:
        return s * m * 2.0 ** -9
    return s * (1 + m / 8) * 2.0 ** (e - 7)


E4M3 = [e4m3_value(c) for c in range(256)]


def decode(dt, raw):
    n = len(raw) // DTYPE_SIZE[dt]
    if dt == "F32":
        return list(struct.unpack(f"<{n}f", raw))
    if dt == "F64":
        return list(struct.unpack(f"<{n}d", raw))
    if dt == "F16":
        return list(struct.unpack(f"<{n}e", raw))
    if dt == "BF16":
        hs = struct.unpack(f"<{n}H", raw)
        return list(struct.unpack(f"<{n}f", struct.pack(f"<{n}I", *[h << 16 for h in hs])))
    if dt in ("F8_E4M3",):
        return [E4M3[b] for b in raw]
    fmt = {"I64": "q", "I32": "i", "I16": "h", "I8": "b", "U64": "Q", "U32": "I",
           "U16": "H", "U8": "B", "BOOL": "?"}[dt]
    return list(struct.unpack(f"<{n}{fmt}", raw))


# ---------------------------------------------------------------------------
# dequantizers (row-wise so that a whole model need not be in memory)
# ---------------------------------------------------------------------------

def fp8_dequant_row(st, prefix, r):
    """compressed-tensors float-quantized, channel strategy:
    w[r, :] = e4m3(weight[r, :]) * weight_scale[r, 0]."""
    wt, sc = st.info(prefix + ".weight"), st.info(prefix + ".weight_scale")
    if wt.dtype != "F8_E4M3":
        raise FormatError(f"{prefix}.weight is {wt.dtype}, not F8_E4M3")
    if sc.shape != (wt.shape[0], 1):
        raise FormatError(f"{prefix}.weight_scale shape {list(sc.shape)} != [{wt.shape[0]}, 1]")
    s = st.element(prefix + ".weight_scale", r)
    return [v * s for v in st.row(prefix + ".weight", r)]


def unpack_nibbles_le(words, count, bits=4):
    """Element i at bits bits*(i % per) of word i // per, lowest bits first."""
    per = 32 // bits
    mask = (1 << bits) - 1
    out = []
    for w in words:
        w &= 0xFFFFFFFF
        for k in range(per):
            out.append((w >> (bits * k)) & mask)
    return out[:count]


def w4a16_dequant_row(st, prefix, r, bits=4):
    """compressed-tensors pack-quantized, symmetric group:
    weight_packed I32 [out, in*bits/32], element j of row r in word j*bits//32,
    stored q+2^(bits-1); w = (nibble - 8) * weight_scale[r, j // group]."""
    pk, sc = st.info(prefix + ".weight_packed"), st.info(prefix + ".weight_scale")
    if pk.dtype != "I32":
        raise FormatError(f"{prefix}.weight_packed is {pk.dtype}, not I32")
    out, n_in = _weight_shape(st, prefix, pk, bits)
    ngroups = sc.shape[1]
    if sc.shape[0] != out or n_in % ngroups:
        raise FormatError(f"{prefix}.weight_scale shape {list(sc.shape)} vs [{out}, {n_in}]")
    group = n_in // ngroups
    q = unpack_nibbles_le(st.row(prefix + ".weight_packed", r), n_in, bits)
    scales = st.row(prefix + ".weight_scale", r)
    off = 1 << (bits - 1)
    return [(q[j] - off) * scales[j // group] for j in range(n_in)]


def _weight_shape(st, prefix, pk, bits):
    name = prefix + ".weight_shape"
    if name not in st:
        raise FormatError(f"{name} missing")
    ws = st.values(name)
    if len(ws) != 2:
        raise FormatError(f"{name} has {len(ws)} entries")
    out, n_in = ws
    if pk.shape != (out, math.ceil(n_in * bits / 32)):
        raise FormatError(f"{prefix}.weight_packed shape {list(pk.shape)} vs weight_shape {ws}")
    return out, n_in


def gptq_dequant_row(st, prefix, n, bits=4, v1=True):
    """GPTQ: qweight I32 [in/8, out] (input k in word k//8, bits 4*(k%8)),
    qzeros I32 [groups, out/8] (output n in word n//8, bits 4*(n%8)), v1 stores
    zero-1; scales [groups, out]; g_idx I32 [in].
    Returns row n of W [out, in]: w[n, k] = scales[g, n] * (q[k, n] - zero[g, n])."""
    qw, qz = st.info(prefix + ".qweight"), st.info(prefix + ".qzeros")
    sc, gi = st.info(prefix + ".scales"), st.info(prefix + ".g_idx")
    per = 32 // bits
    mask = (1 << bits) - 1
    n_out = qw.shape[1]
    n_in = qw.shape[0] * per
    if gi.shape != (n_in,):
        raise FormatError(f"{prefix}.g_idx shape {list(gi.shape)} != [{n_in}]")
    if sc.shape[1] != n_out or qz.shape != (sc.shape[0], n_out // per):
        raise FormatError(f"{prefix}: scales {list(sc.shape)} / qzeros {list(qz.shape)} "
                          f"inconsistent with qweight {list(qw.shape)}")
    g_idx = st.values(prefix + ".g_idx")
    words = [st.element(prefix + ".qweight", row * n_out + n) for row in range(qw.shape[0])]
    q = []
    for w in words:
        w &= 0xFFFFFFFF
        for k in range(per):
            q.append((w >> (bits * k)) & mask)
    res = []
    zcache = {}
    for k in range(n_in):
        g = g_idx[k]
        if not 0 <= g < sc.shape[0]:
            raise FormatError(f"{prefix}.g_idx[{k}] = {g} out of range")
        if g not in zcache:
            zw = st.element(prefix + ".qzeros", g * qz.shape[1] + n // per) & 0xFFFFFFFF
            z = (zw >> (bits * (n % per))) & mask
            zcache[g] = (z + 1 if v1 else z, st.element(prefix + ".scales", g * n_out + n))
        z, s = zcache[g]
        res.append(s * (q[k] - z))
    return res


def mlx_dequant_row(st, prefix, r, bits, group_size):
    """MLX affine: weight U32 [out, in*bits/32] lowest bits first,
    scales/biases [out, in/group]; w = q * scale + bias."""
    wt = st.info(prefix + ".weight")
    sc, bi = st.info(prefix + ".scales"), st.info(prefix + ".biases")
    if wt.dtype != "U32":
        raise FormatError(f"{prefix}.weight is {wt.dtype}, not U32")
    n_in = wt.shape[1] * 32 // bits
    if sc.shape != (wt.shape[0], n_in // group_size) or bi.shape != sc.shape:
        raise FormatError(f"{prefix}: scales {list(sc.shape)} biases {list(bi.shape)} vs "
                          f"weight {list(wt.shape)} (in={n_in}, group {group_size})")
    q = unpack_nibbles_le(st.row(prefix + ".weight", r), n_in, bits)
    s = st.row(prefix + ".scales", r)
    b = st.row(prefix + ".biases", r)
    return [q[j] * s[j // group_size] + b[j // group_size] for j in range(n_in)]


def fp8_dequant(st, prefix):
    return [fp8_dequant_row(st, prefix, r) for r in range(st.info(prefix + ".weight").shape[0])]


def w4a16_dequant(st, prefix):
    return [w4a16_dequant_row(st, prefix, r)
            for r in range(st.info(prefix + ".weight_packed").shape[0])]


def gptq_dequant(st, prefix):
    return [gptq_dequant_row(st, prefix, n) for n in range(st.info(prefix + ".qweight").shape[1])]


def mlx_dequant(st, prefix, bits, group_size=64):
    return [mlx_dequant_row(st, prefix, r, bits, group_size)
            for r in range(st.info(prefix + ".weight").shape[0])]


# ---------------------------------------------------------------------------
# config validators
# ---------------------------------------------------------------------------

# QuantizationArgs fields every compressed-tensors release since 0.9 accepts.
CT_ARGS_PORTABLE = {"num_bits", "type", "symmetric", "group_size", "strategy",
                    "block_structure", "dynamic", "actorder", "observer", "observer_kwargs"}
CT_ARGS_NEW = {"scale_dtype", "zp_dtype"}            # 0.13+; rejected by 0.11/0.12
CT_SCHEME_KEYS = {"targets", "weights", "input_activations", "output_activations", "format"}
CT_STRATEGIES = {"tensor", "channel", "group", "block", "token", "tensor_group", "attn_head"}


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _ct_args(where, a, expect, problems, allow_new_fields):
    """pydantic-like checks of one QuantizationArgs dict, then the expectations."""
    if not isinstance(a, dict):
        problems.append(f"{where}: not an object")
        return
    allowed = CT_ARGS_PORTABLE | (CT_ARGS_NEW if allow_new_fields else set())
    for k in a:
        if k in CT_ARGS_NEW and not allow_new_fields:
            problems.append(f"{where}.{k}: compressed-tensors 0.11/0.12 reject this field "
                            "(extra='forbid'); omit it")
        elif k not in allowed:
            problems.append(f"{where}.{k}: unknown QuantizationArgs field (extra='forbid')")
    nb = a.get("num_bits", 8)
    if not _is_int(nb):
        problems.append(f"{where}.num_bits: {nb!r} is not an int")
    typ = a.get("type", "int")
    if typ not in ("int", "float"):
        problems.append(f"{where}.type: {typ!r} not int/float")
    for b in ("symmetric",):
        if b in a and not isinstance(a[b], bool):
            problems.append(f"{where}.{b}: {a[b]!r} is not a JSON bool")
    dyn = a.get("dynamic", False)
    if not (isinstance(dyn, bool) or dyn == "local"):
        problems.append(f"{where}.dynamic: {dyn!r} not a bool")
    gs = a.get("group_size")
    strat = a.get("strategy")
    if gs is not None and (not _is_int(gs) or gs < -1 or gs == 0):
        problems.append(f"{where}.group_size: {gs!r} invalid")
    if strat is not None and strat not in CT_STRATEGIES:
        problems.append(f"{where}.strategy: {strat!r} unknown")
    if strat is None:
        strat = "tensor" if gs is None else ("group" if _is_int(gs) and gs > 0 else "channel")
    if strat == "token" and not dyn:
        problems.append(f"{where}: strategy token requires dynamic true")
    if strat in ("group", "tensor_group") and not (_is_int(gs) and gs > 0):
        problems.append(f"{where}: strategy {strat} requires group_size > 0")
    if _is_int(gs) and gs > 0 and strat not in ("group", "tensor_group"):
        problems.append(f"{where}: group_size {gs} requires strategy group")
    if (a.get("block_structure") is None) != (strat != "block"):
        problems.append(f"{where}: block_structure and strategy block go together")
    if "observer_kwargs" in a and not isinstance(a["observer_kwargs"], dict):
        problems.append(f"{where}.observer_kwargs: not an object")
    for k, want in expect.items():
        have = a.get(k, _CT_DEFAULTS.get(k))
        if k == "strategy":
            have = strat
        if have != want or type(have) is not type(want):
            problems.append(f"{where}.{k}: {have!r}, expected {want!r}")


_CT_DEFAULTS = {"num_bits": 8, "type": "int", "symmetric": True, "group_size": None,
                "strategy": None, "block_structure": None, "dynamic": False, "actorder": None}


def _ct_common(cfg, fmt, problems):
    qc = cfg.get("quantization_config")
    if not isinstance(qc, dict):
        problems.append("config.json has no quantization_config object")
        return None
    if qc.get("quant_method") != "compressed-tensors":
        problems.append(f"quant_method {qc.get('quant_method')!r}, expected 'compressed-tensors'")
    if qc.get("format") != fmt:
        problems.append(f"format {qc.get('format')!r}, expected {fmt!r} (vLLM picks the scheme by it)")
    if qc.get("quantization_status") != "compressed":
        problems.append(f"quantization_status {qc.get('quantization_status')!r}: transformers "
                        "only loads packed weights when it is 'compressed'")
    if qc.get("kv_cache_scheme") is not None:
        problems.append("kv_cache_scheme should be null (no kv-cache scales are written)")
    if qc.get("sparsity_config"):
        problems.append("sparsity_config must be empty/absent")
    if qc.get("global_compression_ratio") is not None and not isinstance(
            qc.get("global_compression_ratio"), (int, float)):
        problems.append("global_compression_ratio must be a number or null")
    ign = qc.get("ignore", [])
    if not isinstance(ign, list) or not all(isinstance(x, str) for x in ign):
        problems.append("ignore must be a list of strings")
        ign = []
    if "lm_head" not in ign and not any(x.startswith("re:") and "lm_head" in x for x in ign):
        problems.append("ignore lacks 'lm_head': target 'Linear' would match the float lm_head")
    groups = qc.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        problems.append("config_groups missing or empty")
        return None
    if len(groups) != 1:
        problems.append(f"expected one config group, found {sorted(groups)}")
    name, g = next(iter(groups.items()))
    if not isinstance(g, dict):
        problems.append(f"config_groups.{name}: not an object (preset names are not written)")
        return None
    for k in g:
        if k not in CT_SCHEME_KEYS:
            problems.append(f"config_groups.{name}.{k}: unknown QuantizationScheme field")
    t = g.get("targets")
    if t != ["Linear"]:
        problems.append(f"config_groups.{name}.targets {t!r}, expected ['Linear']")
    if "format" in g and g["format"] not in (None, fmt):
        problems.append(f"config_groups.{name}.format {g['format']!r}, expected {fmt!r}")
    if g.get("output_activations") is not None:
        problems.append(f"config_groups.{name}.output_activations must be null")
    return name, g


def validate_fp8_config(cfg, allow_new_fields=False):
    """config.json of <model>.fp8/ (FP8_DYNAMIC, float-quantized)."""
    p = []
    r = _ct_common(cfg, "float-quantized", p)
    if r:
        name, g = r
        _ct_args(f"config_groups.{name}.weights", g.get("weights"),
                 {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel",
                  "dynamic": False, "group_size": None, "actorder": None}, p, allow_new_fields)
        ia = g.get("input_activations")
        if ia is None:
            p.append(f"config_groups.{name}.input_activations is null: that is W8A16 "
                     "(and then the format would be naive-quantized), not FP8_DYNAMIC")
        else:
            _ct_args(f"config_groups.{name}.input_activations", ia,
                     {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "token",
                      "dynamic": True, "group_size": None, "actorder": None}, p,
                     allow_new_fields)
    return p


def validate_w4a16_config(cfg, allow_new_fields=False, group_size=128):
    """config.json of <model>.w4a16/ (W4A16, pack-quantized)."""
    p = []
    r = _ct_common(cfg, "pack-quantized", p)
    if r:
        name, g = r
        w = g.get("weights")
        _ct_args(f"config_groups.{name}.weights", w,
                 {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
                  "group_size": group_size, "dynamic": False}, p, allow_new_fields)
        if isinstance(w, dict) and w.get("actorder") not in (None, "weight", "static"):
            p.append(f"config_groups.{name}.weights.actorder {w.get('actorder')!r}: group "
                     "actorder makes loaders expect weight_g_idx")
        if g.get("input_activations") is not None:
            p.append(f"config_groups.{name}.input_activations must be null for W4A16")
    return p


def validate_gptq_config(cfg, group_size=128):
    """config.json of <model>.gptq/ (GPTQ v1)."""
    p = []
    qc = cfg.get("quantization_config")
    if not isinstance(qc, dict):
        return ["config.json has no quantization_config object"]
    if qc.get("quant_method") != "gptq":
        p.append(f"quant_method {qc.get('quant_method')!r}, expected 'gptq'")
    need = {"bits": 4, "group_size": group_size, "desc_act": False, "sym": True}
    for k, want in need.items():       # vLLM gptq_marlin get_from_keys: all required
        if k not in qc:
            p.append(f"{k} missing (vLLM requires bits, group_size, desc_act, sym)")
        elif qc[k] != want or type(qc[k]) is not type(want):
            p.append(f"{k}: {qc[k]!r}, expected {want!r}")
    cf = qc.get("checkpoint_format")
    if cf is None:
        p.append("checkpoint_format missing (readers infer v1, but write 'gptq')")
    elif not isinstance(cf, str) or cf.lower() != "gptq":
        p.append(f"checkpoint_format {cf!r}, expected 'gptq' (v1: qzeros store zero-1)")
    if "damp_percent" in qc:
        d = qc["damp_percent"]
        if not isinstance(d, (int, float)) or isinstance(d, bool) or not 0 < d < 1:
            p.append(f"damp_percent {d!r}: transformers/AutoGPTQ require 0 < x < 1")
    for k in ("static_groups", "true_sequential"):
        if k in qc and not isinstance(qc[k], bool):
            p.append(f"{k}: {qc[k]!r} is not a bool")
    if qc.get("lm_head", False) is not False:
        p.append("lm_head must be false/absent (lm_head is left in float)")
    if qc.get("dynamic") not in (None, {}):
        p.append("dynamic per-module overrides must be absent")
    mfb = qc.get("model_file_base_name")
    if mfb not in (None, "model"):
        p.append(f"model_file_base_name {mfb!r}: AutoGPTQ would look for {mfb}.safetensors")
    if qc.get("pack_dtype", "int32") != "int32":
        p.append(f"pack_dtype {qc.get('pack_dtype')!r}, expected 'int32'")
    if "meta" in qc and not isinstance(qc["meta"], dict):
        p.append("meta must be an object")
    if "modules_in_block_to_quantize" in qc and not isinstance(
            qc["modules_in_block_to_quantize"], list):
        p.append("modules_in_block_to_quantize must be a list")
    return p


def validate_mlx_config(cfg, bits, group_size=64):
    """config.json of <model>.mlx-4bit/ or .mlx-8bit/ as mlx_lm writes and loads it."""
    p = []
    q = cfg.get("quantization")
    if not isinstance(q, dict):
        return ["config.json has no 'quantization' object (mlx_lm reads that key)"]
    if q.get("group_size") != group_size or not _is_int(q.get("group_size")):
        p.append(f"quantization.group_size {q.get('group_size')!r}, expected {group_size}")
    if q.get("bits") != bits or not _is_int(q.get("bits")):
        p.append(f"quantization.bits {q.get('bits')!r}, expected {bits}")
    if q.get("mode", "affine") != "affine":
        p.append(f"quantization.mode {q.get('mode')!r}, expected 'affine' or absent")
    for k, v in q.items():
        if k in ("group_size", "bits", "mode"):
            continue
        if not isinstance(v, (dict, bool)):
            p.append(f"quantization.{k}: per-module entries must be objects or bools")
        elif isinstance(v, dict) and ("group_size" not in v or "bits" not in v):
            p.append(f"quantization.{k}: per-module entry lacks group_size/bits")
    qc = cfg.get("quantization_config")
    if qc is not None and qc != q:
        p.append("quantization_config differs from quantization (mlx_lm writes a copy)")
    return p


# ---------------------------------------------------------------------------
# directory checks
# ---------------------------------------------------------------------------

FORMATS = ("fp8", "w4a16", "gptq", "mlx-4bit", "mlx-8bit")


def _is_norm(name):
    return "norm" in name.rsplit(".", 2)[-2] if name.count(".") >= 1 else False


def _float_2d_weights(st):
    return {n[:-len(".weight")]: t for n, t in st.tensors.items()
            if n.endswith(".weight") and t.dtype in FLOAT_DTYPES and len(t.shape) == 2}


def _ignored(prefix, ignore):
    import re
    for pat in ignore:
        if pat.startswith("re:"):
            if re.match(pat[3:], prefix):
                return True
        elif prefix == pat or prefix.endswith("." + pat):
            return True
    return False


def _load_source(src):
    """name -> (STFile, TensorInfo) across a possibly sharded source."""
    files = []
    idx = os.path.join(src, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = sorted(f for f in os.listdir(src) if f.endswith(".safetensors"))
    out = {}
    for fn in files:
        st = STFile(os.path.join(src, fn), align=0, require_sorted=False, pad_check=False)
        for n in st.tensors:
            out[n] = st
    return out


def _sample_rows(n, k):
    if n <= k:
        return list(range(n))
    return sorted({0, n - 1, *[(i * (n - 1)) // (k - 1) for i in range(k)]})


def check_dir(path, fmt, source=None, rows=3):
    """Problems with a served directory, [] if none.  With source (the HF model
    directory it was made from) `rows` sampled rows of every quantized linear are
    dequantized and compared with the source within the format's rounding bound."""
    if fmt not in FORMATS:
        raise ValueError(fmt)
    p = []
    cfgp = os.path.join(path, "config.json")
    try:
        with open(cfgp) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        return [f"config.json: {e}"]
    bits = 8 if fmt == "mlx-8bit" else 4
    if fmt == "fp8":
        p += validate_fp8_config(cfg)
    elif fmt == "w4a16":
        p += validate_w4a16_config(cfg)
    elif fmt == "gptq":
        p += validate_gptq_config(cfg)
    else:
        p += validate_mlx_config(cfg, bits)
    stp = os.path.join(path, "model.safetensors")
    try:
        st = STFile(stp)
    except (OSError, FormatError) as e:
        return p + [f"model.safetensors: {e}"]
    want_meta = "mlx" if fmt.startswith("mlx") else "pt"
    if (st.metadata or {}).get("format") != want_meta:
        p.append(f"safetensors __metadata__ {st.metadata!r}: expected format {want_meta!r}")
    ign = (cfg.get("quantization_config") or {}).get("ignore", []) if fmt in ("fp8", "w4a16") else []
    src = _load_source(source) if source else None
    dtype = cfg.get("torch_dtype") or cfg.get("dtype")
    sdt = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}.get(dtype)
    mods = []
    names = st.tensors
    if fmt == "fp8":
        for n, t in names.items():
            if n.endswith(".input_scale"):
                p.append(f"{n}: FP8_DYNAMIC has no input_scale")
            if t.dtype == "F8_E4M3":
                pre = n[:-len(".weight")] if n.endswith(".weight") else None
                if pre is None:
                    p.append(f"{n}: F8_E4M3 tensor that is not a .weight")
                    continue
                s = names.get(pre + ".weight_scale")
                if s is None:
                    p.append(f"{pre}.weight_scale missing")
                    continue
                if s.shape != (t.shape[0], 1):
                    p.append(f"{pre}.weight_scale shape {list(s.shape)} != [{t.shape[0]}, 1]")
                if s.dtype not in FLOAT_DTYPES or (sdt and s.dtype != sdt):
                    p.append(f"{pre}.weight_scale dtype {s.dtype}, expected source dtype {sdt}")
                for r in _sample_rows(t.shape[0], rows):
                    rb = st.raw(n, r * t.shape[1], t.shape[1])
                    if b"\x7f" in rb or b"\xff" in rb:
                        p.append(f"{n} row {r}: NaN code (0x7F/0xFF); the cast must be clamped")
                        break
                    sv = st.element(pre + ".weight_scale", r)
                    if not (sv > 0 and math.isfinite(sv)):
                        p.append(f"{pre}.weight_scale[{r}] = {sv!r}, expected > 0")
                mods.append(pre)
    elif fmt == "w4a16":
        for n, t in names.items():
            if not n.endswith(".weight_packed"):
                continue
            pre = n[:-len(".weight_packed")]
            if t.dtype != "I32":
                p.append(f"{n}: dtype {t.dtype}, expected I32")
            ws, sc = names.get(pre + ".weight_shape"), names.get(pre + ".weight_scale")
            if ws is None or sc is None:
                p.append(f"{pre}: weight_shape/weight_scale missing")
                continue
            if ws.dtype != "I64" or ws.shape != (2,):
                p.append(f"{pre}.weight_shape {ws.dtype}{list(ws.shape)}, expected I64[2]")
            out, n_in = st.values(pre + ".weight_shape")
            if t.shape != (out, n_in // 8) or n_in % 128:
                p.append(f"{n}: shape {list(t.shape)} vs weight_shape [{out}, {n_in}]")
            if sc.shape != (out, n_in // 128):
                p.append(f"{pre}.weight_scale shape {list(sc.shape)}, expected [{out}, {n_in // 128}]")
            if sc.dtype not in FLOAT_DTYPES or (sdt and sc.dtype != sdt):
                p.append(f"{pre}.weight_scale dtype {sc.dtype}, expected source dtype {sdt}")
            for extra in (".weight", ".weight_zero_point", ".weight_g_idx"):
                if pre + extra in names:
                    p.append(f"{pre}{extra} present in a symmetric pack-quantized module")
            mods.append(pre)
    elif fmt == "gptq":
        for n, t in names.items():
            if not n.endswith(".qweight"):
                continue
            pre = n[:-len(".qweight")]
            parts = {k: names.get(pre + "." + k) for k in ("qzeros", "scales", "g_idx")}
            if any(v is None for v in parts.values()):
                p.append(f"{pre}: missing {[k for k, v in parts.items() if v is None]}")
                continue
            n_in, n_out = t.shape[0] * 8, t.shape[1]
            exp = {"qweight": ("I32", (n_in // 8, n_out)),
                   "qzeros": ("I32", (n_in // 128, n_out // 8)),
                   "scales": ("F16", (n_in // 128, n_out)),
                   "g_idx": ("I32", (n_in,))}
            for k, (dt, shp) in exp.items():
                ti = t if k == "qweight" else parts[k]
                if ti.dtype != dt or ti.shape != shp:
                    p.append(f"{pre}.{k}: {ti.dtype}{list(ti.shape)}, expected {dt}{list(shp)}")
            if n_in % 128 or n_out % 8:
                p.append(f"{pre}: in {n_in} / out {n_out} not multiples of 128 / 8")
            if parts["g_idx"].shape == (n_in,):
                gi = st.values(pre + ".g_idx")
                if gi != [k // 128 for k in range(n_in)]:
                    p.append(f"{pre}.g_idx is not k // 128")
            if parts["qzeros"].dtype == "I32":
                zs = set(st.values(pre + ".qzeros"))
                if zs != {0x77777777}:
                    p.append(f"{pre}.qzeros: {sorted(zs)[:4]}..., expected all 0x77777777 (v1 sym)")
            if pre + ".weight" in names:
                p.append(f"{pre}.weight left next to qweight")
            mods.append(pre)
    else:
        for n, t in names.items():
            if not n.endswith(".scales"):
                continue
            pre = n[:-len(".scales")]
            w, b = names.get(pre + ".weight"), names.get(pre + ".biases")
            if w is None or b is None:
                p.append(f"{pre}: weight/biases missing next to scales")
                continue
            if w.dtype != "U32" or len(w.shape) != 2:
                p.append(f"{pre}.weight: {w.dtype}{list(w.shape)}, expected U32 2-D")
                continue
            n_in = w.shape[1] * 32 // bits
            if t.shape != (w.shape[0], n_in // 64) or b.shape != t.shape:
                p.append(f"{pre}: scales {list(t.shape)} biases {list(b.shape)}, expected "
                         f"[{w.shape[0]}, {n_in // 64}]")
            if t.dtype not in FLOAT_DTYPES or b.dtype != t.dtype or (sdt and t.dtype != sdt):
                p.append(f"{pre}: scales/biases dtype {t.dtype}/{b.dtype}, expected {sdt}")
            mods.append(pre)
        emb = [n for n in names if n.endswith("embed_tokens.weight")]
        for n in emb:
            if names[n].dtype in FLOAT_DTYPES and names[n].shape[-1] % 64 == 0:
                p.append(f"{n}: mlx_lm quantizes embeddings; this one is float")
    # leftovers: float 2-D weights that loaders/producers would expect quantized
    for pre, t in _float_2d_weights(st).items():
        if _is_norm(pre + ".weight"):
            continue
        is_emb = pre.endswith("embed_tokens") or pre.endswith("wte")
        if fmt.startswith("mlx"):
            if t.shape[-1] % 64 == 0 and not is_emb:
                p.append(f"{pre}.weight: float Linear that mlx_lm would have quantized")
        elif not is_emb and pre != "lm_head" and ".layers." in pre and not _ignored(pre, ign):
            p.append(f"{pre}.weight: float Linear inside the blocks"
                     + (" not in ignore" if ign is not None and fmt != "gptq" else ""))
    for n, t in names.items():
        if _is_norm(n) and t.dtype not in FLOAT_DTYPES:
            p.append(f"{n}: norm stored as {t.dtype}")
    if fmt in ("fp8", "w4a16", "gptq") and "lm_head.weight" in names and \
            names["lm_head.weight"].dtype not in FLOAT_DTYPES:
        p.append("lm_head.weight is quantized")
    if not mods:
        p.append("no quantized linear found")
    if src is not None:
        p += _compare_source(st, fmt, bits, mods, src, rows)
    st.close()
    return p


def _tol_int(scale, bias, dt, nbins, steps=0.5):
    """Bound on |q*scale + bias - w| with scale/bias rounded to dt after q was
    chosen: `steps` quantization steps (0.5 for symmetric RTN; 1.0 for MLX
    affine, whose far group edge can be clipped by up to one step because
    scale = edge/round(edge/scale0) shrinks the covered range), plus the
    dtype rounding of scale (times q <= nbins) and of bias; the nbins*u term
    also covers compressed-tensors rounding x/scale to the model dtype before
    the integer rounding."""
    u = {"BF16": 2.0 ** -8, "F16": 2.0 ** -11, "F32": 2.0 ** -24}.get(dt, 2.0 ** -8)
    return abs(scale) * (steps + nbins * u) + abs(bias) * u + 1e-30


def _off(got, ref, tol):
    """True when got is not within tol of ref (NaN and inf count as off)."""
    return not abs(got - ref) <= tol


def _e4m3_half_ulp(t):
    a = abs(t)
    if a < 2.0 ** -6:
        return 2.0 ** -10
    e = math.floor(math.log2(a))
    return 2.0 ** (e - 4)


def _compare_source(st, fmt, bits, mods, src, rows):
    p = []
    for pre in sorted(mods):
        wn = pre + ".weight"
        if wn not in src:
            p.append(f"{wn}: not in the source")
            continue
        sst = src[wn]
        si = sst.info(wn)
        if len(si.shape) != 2:
            continue
        n_out, n_in = si.shape
        for r in _sample_rows(n_out, rows):
            ref = sst.row(wn, r)
            if fmt == "fp8":
                got = fp8_dequant_row(st, pre, r)
                s = st.element(pre + ".weight_scale", r)
                bad = [j for j in range(n_in) if _off(got[j], ref[j], s * (
                       _e4m3_half_ulp(ref[j] / s if s else 0) + abs(ref[j] / s) * 2.0 ** -8)
                       + 1e-30)]
            elif fmt == "w4a16":
                got = w4a16_dequant_row(st, pre, r)
                sc = st.row(pre + ".weight_scale", r)
                dt = st.info(pre + ".weight_scale").dtype
                bad = [j for j in range(n_in)
                       if _off(got[j], ref[j], _tol_int(sc[j // 128], 0, dt, 8))]
            elif fmt == "gptq":
                got = gptq_dequant_row(st, pre, r)
                sc = [st.element(pre + ".scales", g * n_out + r) for g in range(n_in // 128)]
                # scales are F16, but q may have been chosen in the source dtype
                udt = "BF16" if si.dtype == "BF16" else "F16"
                bad = [j for j in range(n_in)
                       if _off(got[j], ref[j], _tol_int(sc[j // 128], 0, udt, 8))]
            else:
                got = mlx_dequant_row(st, pre, r, bits, 64)
                sc, bi = st.row(pre + ".scales", r), st.row(pre + ".biases", r)
                dt = st.info(pre + ".scales").dtype
                bad = [j for j in range(n_in) if _off(got[j], ref[j], _tol_int(
                       sc[j // 64], bi[j // 64], dt, (1 << bits) - 1, steps=1.0))]
            if len(got) != n_in:
                p.append(f"{pre} row {r}: {len(got)} values, source has {n_in}")
            elif bad:
                j = bad[0]
                p.append(f"{pre} row {r}: {len(bad)} values off, first [{j}] "
                         f"{got[j]!r} vs source {ref[j]!r}")
    return p


# ---------------------------------------------------------------------------
# reference encoders for the self-test (from the spec, not shared with readers)
# ---------------------------------------------------------------------------

_E4M3_FINITE = sorted((E4M3[c], c) for c in range(0x7F))   # non-negative finite codes


def ref_e4m3_encode(t, saturate=False):
    """Nearest e4m3fn code by exhaustive search, ties to the even code
    (= even mantissa).  saturate=False reproduces torch's cast: values that
    round past 448 (|t| > 464) and inf/NaN give the NaN code."""
    if math.isnan(t):
        return 0x7F
    sign = 0x80 if math.copysign(1.0, t) < 0 else 0
    a = abs(t)
    if saturate:
        a = min(a, 448.0)
    elif a > 464.0:
        return sign | 0x7F
    best = None
    for v, c in _E4M3_FINITE:
        d = abs(v - a)
        if best is None or d < best[0] or (d == best[0] and c % 2 == 0 and best[1] % 2):
            best = (d, c)
    return sign | best[1]


def c10_e4m3_from_f32(x):
    """Bit-level port of pytorch c10 fp8e4m3fn_from_fp32_value (the torch cast),
    used only to cross-check ref_e4m3_encode, which is a different algorithm."""
    fb = f32_bits(f32(x)) if not math.isnan(x) else 0x7FC00000
    sign = fb & 0x80000000
    fb ^= sign
    if fb >= (1087 << 20):
        res = 0x7F
    elif fb < (121 << 23):
        t = f32_bits(f32(bits_f32(fb) + bits_f32(141 << 23)))
        res = (t - (141 << 23)) & 0xFF
    else:
        mant_odd = (fb >> 20) & 1
        fb = (fb + (((7 - 127) << 23) & 0xFFFFFFFF) + 0x7FFFF) & 0xFFFFFFFF
        fb += mant_odd
        res = (fb >> 20) & 0xFF
    return res | (sign >> 24)


def ref_fp8_quantize(W, dt):
    """compressed-tensors FP8 channel: s = D(absmax/448), zero -> eps(D);
    q = e4m3(clamp(D(f32(x)/f32(s)), -448, 448))."""
    eps = {"BF16": 2.0 ** -7, "F16": 2.0 ** -10, "F32": 2.0 ** -23}[dt]
    codes, scales = [], []
    for row in W:
        amax = max(max(abs(x) for x in row), 0.0)
        s = round_dtype(amax / 448.0, dt)
        if s == 0:
            s = eps
        scales.append(s)
        codes.append([ref_e4m3_encode(max(-448.0, min(448.0, round_dtype(f32(x / s), dt))))
                      for x in row])
    return codes, scales


def ref_int4_quantize(W, dt, group=128):
    """Symmetric int4 RTN as compressed-tensors does it: s = D(absmax/7.5),
    q = clamp(round_half_even(D(x/s)), -8, 7).  Returns q [-8,7] and scales."""
    Q, S = [], []
    for row in W:
        qs, ss = [], []
        for g0 in range(0, len(row), group):
            grp = row[g0:g0 + group]
            s = round_dtype(max(abs(x) for x in grp) / 7.5, dt) or 2.0 ** -7
            ss.append(s)
            for x in grp:
                v = max(-8.0, min(7.0, round_dtype(f32(x / s), dt)))
                qs.append(int(round(v)))
        Q.append(qs)
        S.append(ss)
    return Q, S


def ref_pack_rows_le(vals, bits=4):
    """Pack a list along its length, element k at bits*(k%per) of word k//per."""
    per = 32 // bits
    words = []
    for i in range(0, len(vals), per):
        w = 0
        for k, v in enumerate(vals[i:i + per]):
            w |= (v & ((1 << bits) - 1)) << (bits * k)
        words.append(w)
    return words


def i32(w):
    return w - (1 << 32) if w & 0x80000000 else w


def ref_mlx_quantize(W, bits, group, dt, variant="cpu"):
    """mlx affine_quantize, float32 arithmetic.  variant 'cpu' =
    backend/cpu/quantized.cpp (true min/max, rint); 'gpu' = metal/cuda kernels
    (w_max starts at 0, round half away from zero).  Returns q, stored
    (dtype-rounded) scales and biases."""
    n_bins = float((1 << bits) - 1)
    eps = f32(1e-7)

    def rnd(x):
        if variant == "cpu":
            return float(round(x))            # Python round: half to even = rint
        return float(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)

    Q, S, B = [], [], []
    for row in W:
        qs, ss, bs = [], [], []
        for g0 in range(0, len(row), group):
            grp = [f32(x) for x in row[g0:g0 + group]]
            w_min, w_max = min(grp), max(grp)
            if variant != "cpu":
                w_max = max(w_max, 0.0)
            mask = abs(w_min) > abs(w_max)
            scale = max(f32(f32(w_max - w_min) / n_bins), eps)
            scale = scale if mask else -scale
            edge = w_min if mask else w_max
            q0 = rnd(f32(edge / scale))
            bias = 0.0
            if q0 != 0:
                scale = f32(edge / q0)
                bias = edge
            for x in grp:
                v = rnd(f32(f32(x - bias) / scale))
                qs.append(int(min(max(v, 0.0), n_bins)))
            ss.append(round_dtype(scale, dt))
            bs.append(round_dtype(bias, dt))
        Q.append(qs)
        S.append(ss)
        B.append(bs)
    return Q, S, B


# ---------------------------------------------------------------------------
# canonical config blocks (the notes' JSON), used by the self-test
# ---------------------------------------------------------------------------

def _args(**kw):
    a = {"actorder": None, "block_structure": None, "dynamic": False, "group_size": None,
         "num_bits": 8, "observer": None, "observer_kwargs": {}, "strategy": None,
         "symmetric": True, "type": "int"}
    a.update(kw)
    return a


def canonical_fp8_qc():
    return {
        "config_groups": {"group_0": {
            "format": "float-quantized",
            "input_activations": _args(dynamic=True, strategy="token", type="float"),
            "output_activations": None,
            "targets": ["Linear"],
            "weights": _args(observer="minmax", strategy="channel", type="float")}},
        "format": "float-quantized", "global_compression_ratio": None, "ignore": ["lm_head"],
        "kv_cache_scheme": None, "quant_method": "compressed-tensors",
        "quantization_status": "compressed", "sparsity_config": {}, "transform_config": {},
        "version": "0.12.2"}


def canonical_w4a16_qc():
    return {
        "config_groups": {"group_0": {
            "format": "pack-quantized", "input_activations": None, "output_activations": None,
            "targets": ["Linear"],
            "weights": _args(group_size=128, num_bits=4, observer="minmax", strategy="group")}},
        "format": "pack-quantized", "global_compression_ratio": None, "ignore": ["lm_head"],
        "kv_cache_scheme": None, "quant_method": "compressed-tensors",
        "quantization_status": "compressed", "sparsity_config": {}, "transform_config": {},
        "version": "0.12.2"}


def canonical_gptq_qc():
    return {"bits": 4, "group_size": 128, "desc_act": False, "sym": True, "lm_head": False,
            "damp_percent": 0.01, "static_groups": False, "true_sequential": True,
            "model_name_or_path": None, "model_file_base_name": "model",
            "quant_method": "gptq", "checkpoint_format": "gptq", "pack_dtype": "int32",
            "meta": {"quantizer": ["quantfs:0"]}}


# ---------------------------------------------------------------------------
# self-test
# ---------------------------------------------------------------------------

class _T:
    def __init__(self):
        self.n = self.bad = 0

    def ok(self, cond, what):
        self.n += 1
        if not cond:
            self.bad += 1
            print("FAIL:", what)

    def raises(self, fn, what, exc=FormatError):
        self.n += 1
        try:
            fn()
        except exc:
            return
        self.bad += 1
        print("FAIL (no error):", what)


def _rand_matrix(rng, rows, cols, dt, spice=True):
    W = [[round_dtype(rng.gauss(0, 0.05), dt) for _ in range(cols)] for _ in range(rows)]
    if spice and rows >= 4:
        W[1][3] = round_dtype(2.5, dt)                 # outlier
        W[2] = [round_dtype(abs(x) + 0.01, dt) for x in W[2]]   # all positive
        W[3] = [0.0] * cols                            # all zero
        if rows > 5:
            W[5] = [round_dtype(-abs(x) - 0.001, dt) for x in W[5]]  # all negative
    return W


def _selftest_fp8_scalar(T):
    for c in range(256):
        v = E4M3[c]
        if c in (0x7F, 0xFF):
            T.ok(math.isnan(v), f"e4m3 {c:#x} is NaN")
        else:
            T.ok(ref_e4m3_encode(v) == (c if c != 0x80 else 0x80), f"e4m3 code {c:#x} round trip")
    T.ok(E4M3[0x7E] == 448.0 and E4M3[0xFE] == -448.0, "max 448")
    T.ok(E4M3[0x01] == 2.0 ** -9 and E4M3[0x07] == 7 * 2.0 ** -9, "subnormals")
    T.ok(E4M3[0x08] == 2.0 ** -6, "min normal")
    T.ok(math.copysign(1, E4M3[0x80]) < 0 and E4M3[0x80] == 0, "negative zero")
    T.ok(sum(1 for v in E4M3 if math.isnan(v)) == 2, "only two NaN codes, no inf")
    cases = [
        (448.0, 0x7E, 0x7E), (464.0, 0x7E, 0x7E),            # tie to even (mantissa 110)
        (464.5, 0x7F, 0x7E), (479.0, 0x7F, 0x7E), (480.0, 0x7F, 0x7E), (1e9, 0x7F, 0x7E),
        (math.inf, 0x7F, 0x7E), (-500.0, 0xFF, 0xFE),
        (2.0 ** -10, 0x00, 0x00),                             # tie 0 / 2^-9 -> 0
        (3 * 2.0 ** -10, 0x02, 0x02),                         # tie 1 / 2 (x2^-9) -> 2
        (2.0 ** -10 + 2.0 ** -30, 0x01, 0x01),
        (-2.0 ** -9, 0x81, 0x81),
        (1.0625, 0x38, 0x38),                                 # tie 1.0 / 1.125 -> 1.0
        (1.1875, 0x3A, 0x3A),                                 # tie 1.125 / 1.25 -> 1.25
        (15 * 2.0 ** -10, 0x08, 0x08),                        # tie 7*2^-9 / 2^-6 -> 2^-6
        (0.0, 0x00, 0x00), (-0.0, 0x80, 0x80),
    ]
    for x, torch_code, sat_code in cases:
        T.ok(ref_e4m3_encode(x) == torch_code, f"torch-cast e4m3({x}) == {torch_code:#x}, "
             f"got {ref_e4m3_encode(x):#x}")
        T.ok(ref_e4m3_encode(x, saturate=True) == sat_code, f"saturating e4m3({x})")
    T.ok(ref_e4m3_encode(math.nan) == 0x7F, "NaN -> 0x7F")
    rng = random.Random(7)
    probe = [x for x, _, _ in cases] + [E4M3[c] for c in range(0x7F)]
    probe += [(E4M3[c] + E4M3[c + 1]) / 2 for c in range(0x7E)]          # every midpoint
    probe += [rng.uniform(-500, 500) for _ in range(3000)]
    probe += [rng.uniform(-1, 1) * 2.0 ** rng.randint(-12, 8) for _ in range(3000)]
    mism = [x for x in probe if not math.isinf(x)
            and c10_e4m3_from_f32(x) != ref_e4m3_encode(f32(x))]
    T.ok(not mism, f"exhaustive-search encoder == c10 bit algorithm ({len(probe)} values; "
         f"first mismatch {mism[:1]})")
    # bf16 / f16 helpers
    T.ok(bf16(1.0 + 2.0 ** -8) == 1.0 and bf16(1.0 + 3 * 2.0 ** -8) == 1.0 + 2.0 ** -6,
         "bf16 round half even")
    T.ok(decode("BF16", struct.pack("<H", 0x3F80)) == [1.0], "bf16 decode")
    T.ok(f16(1.0 + 2.0 ** -11) == 1.0, "f16 round half even")


def _selftest_safetensors(T, tmp):
    ts = {"a.weight": ("F32", (2, 2), struct.pack("<4f", 1, 2, 3, 4)),
          "b.idx": ("I64", (2,), struct.pack("<2q", 7, -9)),
          "c.u": ("U32", (2,), struct.pack("<2I", 0xFFFFFFFF, 5)),
          "d.h": ("BF16", (4,), encode_floats("BF16", [1, -2, 0.5, 3])),
          "e.f8": ("F8_E4M3", (8,), bytes([0x7E, 0xFE, 0x01, 0x38, 0, 0x80, 0x08, 0x3A])),
          "f.i": ("I32", (2,), struct.pack("<2i", -1, 3)),
          "g.h": ("F16", (4,), struct.pack("<4e", 1, 2, 3, -4)),
          "h.b": ("U8", (8,), bytes(range(8)))}
    good = write_safetensors(None, ts, {"format": "pt"})
    st = STFile(good)
    T.ok(st.metadata == {"format": "pt"}, "metadata")
    T.ok(st.values("a.weight") == [1, 2, 3, 4] and st.row("a.weight", 1) == [3, 4], "F32 + row")
    T.ok(st.values("b.idx") == [7, -9], "I64")
    T.ok(st.values("c.u") == [0xFFFFFFFF, 5], "U32")
    T.ok(st.values("d.h") == [1, -2, 0.5, 3], "BF16")
    T.ok(st.values("e.f8") == [448, -448, 2 ** -9, 1.0, 0, 0, 2 ** -6, 1.25], "F8_E4M3")
    T.ok(st.values("f.i") == [-1, 3] and st.values("g.h") == [1, 2, 3, -4], "I32/F16")
    T.ok(st.values("h.b") == list(range(8)), "U8")
    fp = os.path.join(tmp, "t.safetensors")
    write_safetensors(fp, ts, {"format": "pt"})
    with STFile(fp) as s2:
        T.ok(s2.element("a.weight", 2) == 3 and s2.values("b.idx") == [7, -9], "file-backed reads")
    # negative cases
    T.raises(lambda: STFile(write_safetensors(None, ts, gap=8)), "hole between tensors")
    T.raises(lambda: STFile(write_safetensors(None, ts, order="reverse")), "not name-ordered")
    STFile(write_safetensors(None, ts, order="reverse"), require_sorted=False)
    odd = dict(ts)
    odd["a0"] = ("U8", (3,), b"xyz")
    T.raises(lambda: STFile(write_safetensors(None, odd, align=0)), "misaligned offset")
    STFile(write_safetensors(None, odd, align=0), align=0)
    T.raises(lambda: STFile(good + b"\0"), "trailing byte")
    T.raises(lambda: STFile(good[:-1]), "truncated")
    T.raises(lambda: STFile(write_safetensors(None, ts, pad_char=b"\0")), "NUL header padding")
    n = struct.unpack("<Q", good[:8])[0]
    hdr = json.loads(good[8:8 + n])
    def rebuild(h, pad=True):
        b = json.dumps(h).encode()
        if pad:
            b += b" " * ((8 - len(b) % 8) % 8)
        elif len(b) % 8 == 0:
            b += b" "
        return struct.pack("<Q", len(b)) + b + good[8 + n:]
    h2 = dict(hdr)
    h2["a.weight"] = dict(hdr["a.weight"], dtype="F99")
    T.raises(lambda: STFile(rebuild(h2)), "unknown dtype")
    h3 = dict(hdr)
    h3["a.weight"] = dict(hdr["a.weight"], shape=[2, 3])
    T.raises(lambda: STFile(rebuild(h3)), "size mismatch")
    h4 = dict(hdr)
    h4["a.weight"] = dict(hdr["a.weight"], extra=1)
    T.raises(lambda: STFile(rebuild(h4)), "extra entry key")
    T.raises(lambda: STFile(rebuild(hdr, pad=False)), "header not multiple of 8",)
    dup = good[:8] + good[8:8 + n].replace(b'"b.idx"', b'"a.weight"', 1) + good[8 + n:]
    T.raises(lambda: STFile(dup), "duplicate key")
    h5 = dict(hdr)
    h5["__metadata__"] = {"format": 1}
    T.raises(lambda: STFile(rebuild(h5)), "non-string metadata")
    T.raises(lambda: STFile(struct.pack("<Q", 10 ** 9) + b"{}"), "huge header length")


def _mk_model_tensors(rng, dt, rows=16, cols=256):
    """One decoder layer: q_proj and down_proj weights, a norm, embeddings, lm_head."""
    W = {"model.layers.0.self_attn.q_proj": _rand_matrix(rng, rows, cols, dt),
         "model.layers.0.mlp.down_proj": _rand_matrix(rng, rows * 2, cols, dt, spice=False)}
    W["model.layers.0.mlp.down_proj"][0][0] = round_dtype(-3.0, dt)
    floats = {"model.layers.0.input_layernorm.weight": ("F", [round_dtype(1 + 0.01 * i, dt)
                                                              for i in range(cols)]),
              "model.embed_tokens.weight": ("F2", _rand_matrix(rng, 8, cols, dt, spice=False)),
              "lm_head.weight": ("F2", _rand_matrix(rng, 8, cols, dt, spice=False))}
    return W, floats


def _float_tensor(dt, v):
    kind, data = v
    if kind == "F":
        return (dt, (len(data),), encode_floats(dt, data))
    return (dt, (len(data), len(data[0])), encode_floats(dt, [x for r in data for x in r]))


def _selftest_fp8(T, rng, dt):
    W, floats = _mk_model_tensors(rng, dt)
    ts = {n: _float_tensor(dt, v) for n, v in floats.items()}
    refq = {}
    for pre, M in W.items():
        codes, scales = ref_fp8_quantize(M, dt)
        ts[pre + ".weight"] = ("F8_E4M3", (len(M), len(M[0])), bytes(c for r in codes for c in r))
        ts[pre + ".weight_scale"] = (dt, (len(M), 1), encode_floats(dt, scales))
        refq[pre] = (codes, scales)
    st = STFile(write_safetensors(None, ts, {"format": "pt"}))
    for pre, M in W.items():
        D = fp8_dequant(st, pre)
        codes, scales = refq[pre]
        T.ok(all(D[r][j] == E4M3[codes[r][j]] * scales[r] for r in range(len(M))
                 for j in range(len(M[0]))), f"fp8 {dt} {pre}: exact decode")
        worst = 0.0
        for r, row in enumerate(M):
            s = scales[r]
            for j, x in enumerate(row):
                tol = s * (_e4m3_half_ulp(x / s) + abs(x / s) * 2.0 ** -8) + 1e-30
                worst = max(worst, abs(D[r][j] - x) / tol)
        T.ok(worst <= 1.0, f"fp8 {dt} {pre}: within rounding bound (worst {worst:.3f})")
        T.ok(max(abs(v) for v in D[1]) <= 448 * scales[1] and
             any(abs(abs(v) - 448 * scales[1]) < 1e-9 for v in D[1]) if pre.endswith("q_proj")
             else True, f"fp8 {pre}: row absmax maps to 448")
    T.ok(refq["model.layers.0.self_attn.q_proj"][1][3] ==
         {"BF16": 2.0 ** -7, "F16": 2.0 ** -10}[dt], "zero row gets eps(D) scale")
    return ts


def _selftest_int4(T, rng, dt):
    W, floats = _mk_model_tensors(rng, dt)
    ct = {n: _float_tensor(dt, v) for n, v in floats.items()}
    gp = {n: _float_tensor("F16", v) if dt == "F16" else _float_tensor(dt, v)
          for n, v in floats.items()}
    refs = {}
    for pre, M in W.items():
        Q, S = ref_int4_quantize(M, dt)
        out, n_in = len(M), len(M[0])
        refs[pre] = (Q, S)
        # compressed-tensors pack-quantized
        packed = [i32(w) for r in Q for w in ref_pack_rows_le([q + 8 for q in r])]
        ct[pre + ".weight_packed"] = ("I32", (out, n_in // 8), struct.pack(f"<{len(packed)}i", *packed))
        ct[pre + ".weight_scale"] = (dt, (out, n_in // 128), encode_floats(dt, [s for r in S for s in r]))
        ct[pre + ".weight_shape"] = ("I64", (2,), struct.pack("<2q", out, n_in))
        # GPTQ v1: qweight [in/8, out] packed along input; qzeros zero-1 = 7
        qw = []
        for k8 in range(n_in // 8):
            for n in range(out):
                qw.append(i32(ref_pack_rows_le([Q[n][k] + 8 for k in range(8 * k8, 8 * k8 + 8)])[0]))
        gp[pre + ".qweight"] = ("I32", (n_in // 8, out), struct.pack(f"<{len(qw)}i", *qw))
        zeros = [i32(w) for g in range(n_in // 128) for w in ref_pack_rows_le([7] * out)]
        gp[pre + ".qzeros"] = ("I32", (n_in // 128, out // 8), struct.pack(f"<{len(zeros)}i", *zeros))
        s16 = [f16(S[n][g]) for g in range(n_in // 128) for n in range(out)]
        gp[pre + ".scales"] = ("F16", (n_in // 128, out), struct.pack(f"<{len(s16)}e", *s16))
        gi = [k // 128 for k in range(n_in)]
        gp[pre + ".g_idx"] = ("I32", (n_in,), struct.pack(f"<{n_in}i", *gi))
    sct = STFile(write_safetensors(None, ct, {"format": "pt"}))
    sgp = STFile(write_safetensors(None, gp, {"format": "pt"}))
    for pre, M in W.items():
        Q, S = refs[pre]
        D1, D2 = w4a16_dequant(sct, pre), gptq_dequant(sgp, pre)
        T.ok(all(D1[r][j] == Q[r][j] * S[r][j // 128] for r in range(len(M)) for j in range(len(M[0]))),
             f"w4a16 {dt} {pre}: exact decode")
        T.ok(all(D2[r][j] == Q[r][j] * f16(S[r][j // 128]) for r in range(len(M))
                 for j in range(len(M[0]))), f"gptq {dt} {pre}: exact decode")
        worst = max(abs(D1[r][j] - x) / _tol_int(S[r][j // 128], 0, dt, 8)
                    for r, row in enumerate(M) for j, x in enumerate(row))
        T.ok(worst <= 1.0, f"w4a16 {dt} {pre}: within half a step (worst {worst:.3f})")
        # the two packings are transposes of each other
        wp = sct.values(pre + ".weight_packed")
        qw = sgp.values(pre + ".qweight")
        out, n_in = len(M), len(M[0])
        T.ok(all(wp[n * (n_in // 8) + k8] == qw[k8 * out + n] for n in range(out)
                 for k8 in range(n_in // 8)), f"{pre}: weight_packed == qweight^T")
        T.ok(set(sgp.values(pre + ".qzeros")) == {0x77777777}, "qzeros all 0x77777777")
    q1 = refs["model.layers.0.self_attn.q_proj"][0]
    T.ok(min(q1[1]) >= -8 and max(q1[1]) <= 7 and 7 in q1[1], "int4 range [-8,7] used")
    T.ok(-8 in refs["model.layers.0.mlp.down_proj"][0][0], "negative absmax maps to -8")
    return ct, gp


def _selftest_mlx(T, rng, dt, bits, variant):
    W, floats = _mk_model_tensors(rng, dt)
    ts = {"model.layers.0.input_layernorm.weight":
          _float_tensor(dt, floats["model.layers.0.input_layernorm.weight"])}
    ref = {}
    for pre, M in list(W.items()) + [("model.embed_tokens", floats["model.embed_tokens.weight"][1]),
                                     ("lm_head", floats["lm_head.weight"][1])]:
        Q, S, B = ref_mlx_quantize(M, bits, 64, dt, variant)
        out, n_in = len(M), len(M[0])
        words = [w for r in Q for w in ref_pack_rows_le(r, bits)]
        ts[pre + ".weight"] = ("U32", (out, n_in * bits // 32), struct.pack(f"<{len(words)}I", *words))
        ts[pre + ".scales"] = (dt, (out, n_in // 64), encode_floats(dt, [s for r in S for s in r]))
        ts[pre + ".biases"] = (dt, (out, n_in // 64), encode_floats(dt, [b for r in B for b in r]))
        ref[pre] = (M, Q, S, B)
    st = STFile(write_safetensors(None, ts, {"format": "mlx"}))
    neg = False
    for pre, (M, Q, S, B) in ref.items():
        D = mlx_dequant(st, pre, bits, 64)
        T.ok(all(D[r][j] == Q[r][j] * S[r][j // 64] + B[r][j // 64] for r in range(len(M))
                 for j in range(len(M[0]))), f"mlx{bits} {variant} {dt} {pre}: exact decode")
        worst = max(abs(D[r][j] - x) / _tol_int(S[r][j // 64], B[r][j // 64], dt,
                                                (1 << bits) - 1, steps=1.0)
                    for r, row in enumerate(M) for j, x in enumerate(row))
        T.ok(worst <= 1.0, f"mlx{bits} {variant} {dt} {pre}: within bound (worst {worst:.3f})")
        neg |= any(s < 0 for r in S for s in r)
        # the larger-magnitude edge of each group is the bias (q = 0) when q0 != 0
        for r, row in enumerate(M):
            for g in range(len(row) // 64):
                grp = row[64 * g:64 * g + 64]
                lo, hi = min(grp), max(grp)
                if variant != "cpu":
                    hi = max(hi, 0.0)
                edge = lo if abs(lo) > abs(hi) else hi
                if B[r][g] != 0:
                    T.ok(B[r][g] == round_dtype(edge, dt), f"mlx bias is the edge ({pre} r{r} g{g})")
    T.ok(neg, "mlx: negative scales occur (|max| >= |min| groups)")
    return ts


def _selftest_configs(T):
    fp8 = {"torch_dtype": "bfloat16", "quantization_config": canonical_fp8_qc()}
    T.ok(validate_fp8_config(fp8) == [], f"canonical fp8 config: {validate_fp8_config(fp8)}")
    w4 = {"quantization_config": canonical_w4a16_qc()}
    T.ok(validate_w4a16_config(w4) == [], f"canonical w4a16 config: {validate_w4a16_config(w4)}")
    gp = {"quantization_config": canonical_gptq_qc()}
    T.ok(validate_gptq_config(gp) == [], f"canonical gptq config: {validate_gptq_config(gp)}")
    ml = {"quantization": {"group_size": 64, "bits": 4},
          "quantization_config": {"group_size": 64, "bits": 4}}
    T.ok(validate_mlx_config(ml, 4) == [], "mlx config")
    ml2 = {"quantization": {"group_size": 64, "bits": 8, "mode": "affine",
                            "model.layers.0.mlp.gate": {"group_size": 64, "bits": 8}}}
    T.ok(validate_mlx_config(ml2, 8) == [], "mlx config with mode and per-layer entry")

    def mut(base, path, value, validator, *a):
        import copy
        c = copy.deepcopy(base)
        d = c
        for k in path[:-1]:
            d = d[k]
        if value is KeyError:
            del d[path[-1]]
        else:
            d[path[-1]] = value
        return validator(c, *a)

    g = ("quantization_config", "config_groups", "group_0")
    bad = [
        (fp8, ("quantization_config", "format"), "naive-quantized", validate_fp8_config),
        (fp8, ("quantization_config", "quantization_status"), "frozen", validate_fp8_config),
        (fp8, ("quantization_config", "ignore"), [], validate_fp8_config),
        (fp8, g + ("weights", "strategy"), "tensor", validate_fp8_config),
        (fp8, g + ("weights", "zp_dtype"), None, validate_fp8_config),
        (fp8, g + ("weights", "foo"), 1, validate_fp8_config),
        (fp8, g + ("input_activations",), None, validate_fp8_config),
        (fp8, g + ("input_activations", "dynamic"), False, validate_fp8_config),
        (fp8, g + ("targets",), ["Embedding"], validate_fp8_config),
        (fp8, g + ("bogus",), 1, validate_fp8_config),
        (w4, g + ("weights", "group_size"), 64, validate_w4a16_config),
        (w4, g + ("weights", "strategy"), "channel", validate_w4a16_config),
        (w4, g + ("weights", "actorder"), "group", validate_w4a16_config),
        (w4, g + ("weights", "symmetric"), False, validate_w4a16_config),
        (w4, g + ("weights", "num_bits"), "4", validate_w4a16_config),
        (w4, ("quantization_config", "format"), "float-quantized", validate_w4a16_config),
        (gp, ("quantization_config", "sym"), KeyError, validate_gptq_config),
        (gp, ("quantization_config", "desc_act"), True, validate_gptq_config),
        (gp, ("quantization_config", "damp_percent"), 0, validate_gptq_config),
        (gp, ("quantization_config", "checkpoint_format"), "gptq_v2", validate_gptq_config),
        (gp, ("quantization_config", "bits"), 8, validate_gptq_config),
        (gp, ("quantization_config", "model_file_base_name"), "gptq_model-4bit-128g",
         validate_gptq_config),
        (ml, ("quantization", "group_size"), 32, validate_mlx_config, 4),
        (ml, ("quantization", "bits"), 8, validate_mlx_config, 4),
        (ml, ("quantization", "mode"), "mxfp4", validate_mlx_config, 4),
        (ml, ("quantization_config",), {"quant_method": "x"}, validate_mlx_config, 4),
    ]
    for base, path, value, fn, *a in bad:
        T.ok(mut(base, path, value, fn, *a) != [], f"{fn.__name__} catches {path[-1]}={value!r}")
    newer = mut(fp8, g + ("weights", "zp_dtype"), None, validate_fp8_config, True)
    T.ok(newer == [], f"allow_new_fields accepts zp_dtype: {newer}")


def _write_dir(tmp, name, cfg, tensors, meta):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    write_safetensors(os.path.join(d, "model.safetensors"), tensors, meta)
    return d


def _selftest_dirs(T, tmp, fp8_ts, ct_ts, gp_ts, mlx_ts):
    base = {"architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16"}
    d = _write_dir(tmp, "m.fp8", dict(base, quantization_config=canonical_fp8_qc()), fp8_ts,
                   {"format": "pt"})
    T.ok(check_dir(d, "fp8") == [], f"check_dir fp8: {check_dir(d, 'fp8')}")
    d = _write_dir(tmp, "m.w4a16", dict(base, quantization_config=canonical_w4a16_qc()), ct_ts,
                   {"format": "pt"})
    T.ok(check_dir(d, "w4a16") == [], f"check_dir w4a16: {check_dir(d, 'w4a16')}")
    d = _write_dir(tmp, "m.gptq", dict(base, quantization_config=canonical_gptq_qc()), gp_ts,
                   {"format": "pt"})
    T.ok(check_dir(d, "gptq") == [], f"check_dir gptq: {check_dir(d, 'gptq')}")
    mq = {"group_size": 64, "bits": 4}
    d = _write_dir(tmp, "m.mlx-4bit", dict(base, quantization=mq, quantization_config=mq), mlx_ts,
                   {"format": "mlx"})
    T.ok(check_dir(d, "mlx-4bit") == [], f"check_dir mlx: {check_dir(d, 'mlx-4bit')}")
    # broken variants
    bad = dict(fp8_ts)
    del bad["model.layers.0.mlp.down_proj.weight_scale"]
    d = _write_dir(tmp, "bad.fp8", dict(base, quantization_config=canonical_fp8_qc()), bad,
                   {"format": "pt"})
    T.ok(any("weight_scale missing" in x for x in check_dir(d, "fp8")), "fp8 missing scale caught")
    bad = dict(ct_ts)
    bad["model.layers.0.self_attn.k_proj.weight"] = ("BF16", (8, 256), encode_floats("BF16", [0.0] * 2048))
    d = _write_dir(tmp, "bad.w4a16", dict(base, quantization_config=canonical_w4a16_qc()), bad,
                   {"format": "pt"})
    T.ok(any("k_proj" in x for x in check_dir(d, "w4a16")), "w4a16 unquantized linear caught")
    d = _write_dir(tmp, "bad.gptq", dict(base, quantization_config=canonical_gptq_qc()), gp_ts, None)
    T.ok(any("__metadata__" in x for x in check_dir(d, "gptq")), "missing metadata caught")


def _selftest_source_compare(T, tmp, rng):
    dt = "BF16"
    M = _rand_matrix(rng, 8, 256, dt)
    src = {"model.layers.0.mlp.up_proj.weight": ("BF16", (8, 256), encode_floats(dt, [x for r in M for x in r]))}
    sdir = _write_dir(tmp, "srcmodel", {"torch_dtype": "bfloat16"}, src, {"format": "pt"})
    codes, scales = ref_fp8_quantize(M, dt)
    ts = {"model.layers.0.mlp.up_proj.weight": ("F8_E4M3", (8, 256), bytes(c for r in codes for c in r)),
          "model.layers.0.mlp.up_proj.weight_scale": (dt, (8, 1), encode_floats(dt, scales))}
    d = _write_dir(tmp, "cmp.fp8", {"torch_dtype": "bfloat16",
                                    "quantization_config": canonical_fp8_qc()}, ts, {"format": "pt"})
    T.ok(check_dir(d, "fp8", source=sdir, rows=8) == [], f"source compare fp8 ok: "
         f"{check_dir(d, 'fp8', source=sdir, rows=8)}")
    codes[2][10] ^= 0x08          # flip an exponent bit
    ts["model.layers.0.mlp.up_proj.weight"] = ("F8_E4M3", (8, 256), bytes(c for r in codes for c in r))
    d = _write_dir(tmp, "cmp2.fp8", {"torch_dtype": "bfloat16",
                                     "quantization_config": canonical_fp8_qc()}, ts, {"format": "pt"})
    T.ok(any("row 2" in x for x in check_dir(d, "fp8", source=sdir, rows=8)), "source compare catches a bad value")
    Q, S, B = ref_mlx_quantize(M, 4, 64, dt)
    words = [w for r in Q for w in ref_pack_rows_le(r, 4)]
    mt = {"model.layers.0.mlp.up_proj.weight": ("U32", (8, 32), struct.pack(f"<{len(words)}I", *words)),
          "model.layers.0.mlp.up_proj.scales": (dt, (8, 4), encode_floats(dt, [s for r in S for s in r])),
          "model.layers.0.mlp.up_proj.biases": (dt, (8, 4), encode_floats(dt, [b for r in B for b in r]))}
    mq = {"group_size": 64, "bits": 4}
    d = _write_dir(tmp, "cmp.mlx", {"torch_dtype": "bfloat16", "quantization": mq}, mt, {"format": "mlx"})
    T.ok(check_dir(d, "mlx-4bit", source=sdir, rows=8) == [], "source compare mlx ok")


def selftest():
    T = _T()
    rng = random.Random(1234)
    with tempfile.TemporaryDirectory(prefix="qfs-formats-") as tmp:
        _selftest_fp8_scalar(T)
        _selftest_safetensors(T, tmp)
        fp8_ts = None
        for dt in ("BF16", "F16"):
            t = _selftest_fp8(T, rng, dt)
            ct, gp = _selftest_int4(T, rng, dt)
            if dt == "BF16":
                fp8_ts, ct_ts, gp_ts = t, ct, gp
        mlx_ts = None
        for dt in ("BF16", "F16"):
            for bits in (4, 8):
                for variant in ("cpu", "gpu"):
                    t = _selftest_mlx(T, rng, dt, bits, variant)
                    if (dt, bits, variant) == ("BF16", 4, "cpu"):
                        mlx_ts = t
        _selftest_configs(T)
        _selftest_dirs(T, tmp, fp8_ts, ct_ts, gp_ts, mlx_ts)
        _selftest_source_compare(T, tmp, rng)
    print(f"{T.n - T.bad}/{T.n} checks passed")
    return 0 if T.bad == 0 else 1


def dump(path):
    with STFile(path, align=0, require_sorted=False, pad_check=False) as st:
        print(f"header {st.header_len} bytes, metadata {st.metadata}")
        for t in sorted(st.tensors.values(), key=lambda t: t.begin):
            al = "" if (st.data_start + t.begin) % 8 == 0 else "  (unaligned)"
            print(f"  {t!r}{al}")
    try:
        STFile(path).close()
        print("strict checks (sorted, aligned, padded): ok")
    except FormatError as e:
        print("strict checks:", e)


def main(argv):
    if len(argv) >= 1 and argv[0] == "selftest":
        return selftest()
    if len(argv) >= 3 and argv[0] == "check":
        src, rows = None, 3
        rest = argv[3:]
        while rest:
            if rest[0] == "--source" and len(rest) > 1:
                src, rest = rest[1], rest[2:]
            elif rest[0] == "--rows" and len(rest) > 1:
                rows, rest = int(rest[1]), rest[2:]
            else:
                print("unknown argument", rest[0])
                return 2
        probs = check_dir(argv[1], argv[2], source=src, rows=rows)
        for x in probs:
            print("problem:", x)
        print("ok" if not probs else f"{len(probs)} problem(s)")
        return 0 if not probs else 1
    if len(argv) == 2 and argv[0] == "dump":
        dump(argv[1])
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
