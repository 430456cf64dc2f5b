#!/usr/bin/env python3
"""MOUNTPOINT/.quantfs/metrics: the Prometheus text exposition format, version 0.0.4,
read strictly (parse_exposition below), and its counters moving with reads:
  - the format: metric and label name syntax, label values with only the \\\\ \\" \\n
    escapes, HELP and TYPE at most once per family and before its samples, a family's
    samples contiguous, one sample per series, values that parse as floats, counters
    named *_total and only counters so, the text ending in a newline;
  - a model directory whose name holds a quote, a backslash, a newline and a byte that is
    not UTF-8 is labelled with exactly that name, escaped (the byte as '?');
  - reading a GGUF file raises bytes_served by its size and chunks_quantized by its chunks,
    with quantize seconds; reading it again (O_DIRECT) counts memory hits; after a remount
    with the same disk cache it counts disk hits and quantizes nothing;
  - a source rewritten under a mount counts errors{kind="source_changed"} and {"read"};
    a rescan counts rescans and moves the generation."""
import math
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qfstest as q  # noqa: E402
import opsutil as u  # noqa: E402

METRIC_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class FormatError(Exception):
    pass


def parse_value(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise FormatError(f"value {s!r} is not a float")
    return float(s)


def parse_labels(s, i, lineno):
    """Labels from s[i] == '{': ({name: value}, index after '}')."""
    labels = {}
    i += 1
    while True:
        if s[i:i + 1] == "}":
            return labels, i + 1
        m = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(s, i)
        if not m:
            raise FormatError(f"line {lineno}: bad label name at {s[i:]!r}")
        name = m.group(0)
        if name.startswith("__"):
            raise FormatError(f"line {lineno}: reserved label name {name}")
        i = m.end()
        if s[i:i + 2] != '="':
            raise FormatError(f"line {lineno}: expected =\" after {name}")
        i += 2
        v = []
        while True:
            if i >= len(s):
                raise FormatError(f"line {lineno}: unterminated label value")
            c = s[i]
            if c == "\\":
                e = s[i + 1:i + 2]
                if e not in ("\\", '"', "n"):
                    raise FormatError(f"line {lineno}: bad escape \\{e}")
                v.append("\n" if e == "n" else e)
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                v.append(c)
                i += 1
        if name in labels:
            raise FormatError(f"line {lineno}: label {name} twice")
        labels[name] = "".join(v)
        if s[i:i + 1] == ",":
            i += 1
        elif s[i:i + 1] != "}":
            raise FormatError(f"line {lineno}: expected , or }} at {s[i:]!r}")


def parse_exposition(text):
    """{family: {"type", "help", "samples": {frozenset(labels): value}}}, or FormatError."""
    if text and not text.endswith("\n"):
        raise FormatError("the text does not end with a newline")
    fams, done, current = {}, set(), None

    def fam(name):
        return fams.setdefault(name, {"type": None, "help": None, "samples": {}})

    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not METRIC_RE.match(name):
                    raise FormatError(f"line {lineno}: bad metric name {name!r}")
                f = fam(name)
                if name in done or f["samples"]:
                    raise FormatError(f"line {lineno}: {parts[1]} of {name} after its samples")
                key = parts[1].lower()
                if f[key] is not None:
                    raise FormatError(f"line {lineno}: second {parts[1]} for {name}")
                val = parts[3] if len(parts) > 3 else ""
                if key == "type" and val not in TYPES:
                    raise FormatError(f"line {lineno}: unknown type {val!r}")
                if key == "help" and re.search(r"\\[^\\n]", val):
                    raise FormatError(f"line {lineno}: bad escape in HELP")
                f[key] = val
                if current and current != name:
                    done.add(current)
                current = name
            continue
        m = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*").match(line)
        if not m:
            raise FormatError(f"line {lineno}: bad sample {line!r}")
        name, i = m.group(0), m.end()
        labels = {}
        if line[i:i + 1] == "{":
            labels, i = parse_labels(line, i, lineno)
        rest = line[i:]
        if not rest.startswith(" "):
            raise FormatError(f"line {lineno}: no space before the value")
        fields = rest.split()
        if len(fields) not in (1, 2):
            raise FormatError(f"line {lineno}: trailing garbage {rest!r}")
        value = parse_value(fields[0])
        if len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1]):
            raise FormatError(f"line {lineno}: bad timestamp {fields[1]!r}")
        # the family: the sample's name, or for histograms/summaries its base name
        base = name
        for suf in ("_bucket", "_sum", "_count"):
            if name.endswith(suf) and fams.get(name[: -len(suf)], {}).get("type") in (
                    "histogram", "summary"):
                base = name[: -len(suf)]
        if base in done:
            raise FormatError(f"line {lineno}: samples of {base} are not contiguous")
        if current and current != base:
            done.add(current)
        current = base
        f = fam(base)
        key = (name, frozenset(labels.items()))
        if key in f["samples"]:
            raise FormatError(f"line {lineno}: duplicate series {name}{labels}")
        f["samples"][key] = value
    for name, f in fams.items():
        t = f["type"] or "untyped"
        if t == "counter" and not name.endswith("_total"):
            raise FormatError(f"counter {name} does not end in _total")
        if name.endswith("_total") and t != "counter":
            raise FormatError(f"{name} ends in _total but is typed {t}")
        if t == "counter" and any(v < 0 or math.isnan(v) for v in f["samples"].values()):
            raise FormatError(f"counter {name} has a negative or NaN value")
    return fams


def metrics(mnt):
    with open(os.path.join(mnt, ".quantfs", "metrics"), "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")  # must be UTF-8
    return parse_exposition(text)


MOUNT = None  # the mountpoint label every sample carries (set by main)


def value(fams, name, **labels):
    f = fams.get(name)
    if not f:
        return None
    if MOUNT is not None:
        labels = dict(labels, mountpoint=MOUNT)
    return f["samples"].get((name, frozenset(labels.items())))


def self_test():
    """The parser refuses what the format forbids."""
    global MOUNT
    MOUNT = None
    bad = [
        "a 1",                                   # no final newline
        "1a 1\n",                                # metric name
        'a{1b="x"} 1\n',                         # label name
        'a{b="\\t"} 1\n',                        # escape
        "a one\n",                               # value
        "# TYPE a gauge\n# TYPE a gauge\na 1\n",  # TYPE twice
        "a 1\n# TYPE a gauge\n",                 # TYPE after samples
        'a{b="x"} 1\na{b="x"} 2\n',              # duplicate series
        "a 1\nb 1\na 2\n",                       # not contiguous
        "# TYPE a counter\na 1\n",               # counter without _total
        "# TYPE a_total gauge\na_total 1\n",     # _total not a counter
    ]
    for t in bad:
        try:
            parse_exposition(t)
            q.check(False, f"the parser refuses {t!r}")
        except FormatError:
            pass
    good = '# HELP a_total x\n# TYPE a_total counter\na_total{b="q\\"\\\\\\n"} 1.5e3\n'
    f = parse_exposition(good)
    q.check(value(f, "a_total", b='q"\\\n') == 1500.0, "the parser reads escapes")


def genmodel(path, seed=1):
    r = subprocess.run([q.GENMODEL, "--out", path, "--hidden", "64", "--layers", "2",
                        "--seed", str(seed)], capture_output=True)
    if r.returncode:
        sys.exit(f"qfs-genmodel failed: {r.stderr}")


def read_direct(path):
    size = os.path.getsize(path)
    got, off = 0, 0
    while off < size:
        b = q.pread_direct(path, off, min(1 << 20, size - off))
        if not b:
            break
        got += len(b)
        off += len(b)
    return got


def main():
    self_test()
    q.need_fuse()
    t = q.tmpdir("metrics")
    src = os.path.join(t, "src")
    os.makedirs(src)
    genmodel(os.path.join(src, "llama"))
    odd = b'odd"na\\me\nx\xff'
    genmodel(os.path.join(os.fsencode(src), odd).decode("utf-8", "surrogateescape"), 2)
    odd_label = 'odd"na\\me\nx?'
    cache = os.path.join(t, "cache")
    gguf = os.path.join("llama", "llama.Q4_K_M.gguf")
    lab = {"model": "llama", "format": "gguf", "variant": "Q4_K_M"}
    global MOUNT
    with q.Mount(src, os.path.join(t, "mnt"), f"cache={cache},rescan=0,nowatch") as m:
        MOUNT = os.path.realpath(m.mnt)
        try:
            m0 = metrics(m.mnt)
            q.check(True, f"the metrics file parses strictly ({len(m0)} families)")
        except (FormatError, UnicodeDecodeError) as e:
            q.check(False, f"the metrics file parses strictly: {e}")
            q.finish()
        bi = m0["quantfs_build_info"]["samples"]
        (bname, blabels), bval = next(iter(bi.items()))
        q.check(len(bi) == 1 and bval == 1 and
                {k for k, _ in blabels} == {"version", "device", "mountpoint"},
                f"quantfs_build_info {dict(blabels)}")
        q.check(all(dict(k[1]).get("mountpoint") == MOUNT for f in m0.values()
                    for k in f["samples"]), "every sample carries the mountpoint label")
        odd_models = {dict(k[1]).get("model") for k in m0["quantfs_bytes_served_total"]["samples"]}
        q.check(odd_label in odd_models,
                f"an odd model name is labelled escaped and as UTF-8 ({sorted(odd_models)!r})")
        q.check(value(m0, "quantfs_bytes_served_total", **lab) == 0, "nothing served yet")
        # The example service that publishes the file for node_exporter, run as systemd would.
        textdir = os.path.join(t, "textfile")
        os.makedirs(textdir)
        unit = os.path.join(q.SRC, "systemd", "quantfs-metrics@.service.example")
        argv = u.exec_start({"TEXTFILE_DIR": textdir}, MOUNT, path=unit)
        r = subprocess.run(argv, capture_output=True, text=True)
        inst = subprocess.run(["systemd-escape", "--path", MOUNT], capture_output=True,
                              text=True).stdout.strip() if u.have("systemd-escape") else MOUNT
        prom = os.path.join(textdir, f"quantfs-{inst}.prom")
        ok = r.returncode == 0 and os.listdir(textdir) == [os.path.basename(prom)]
        q.check(ok and set(parse_exposition(open(prom).read())) == set(m0),
                f"the example service publishes {os.path.basename(prom)} ({r.stderr.strip()})")
        size = os.path.getsize(os.path.join(m.mnt, gguf))
        chunks = value(m0, "quantfs_chunks", **lab)
        q.check(chunks and chunks > 0, f"quantfs_chunks of the file ({chunks})")
        q.check(value(m0, "quantfs_file_size_bytes", **lab) == size, "its size")
        # O_DIRECT: a page-cache reader's prefetch would run on across tensors, counting
        # chunks quantized ahead and then hit, which makes the sum below inexact
        n = len(q.pread_direct(os.path.join(m.mnt, gguf), 0, size))
        m1 = metrics(m.mnt)
        served = value(m1, "quantfs_bytes_served_total", **lab)
        q.check(served == size == n, f"bytes_served grew by the file's size ({served}, {size})")
        cq = value(m1, "quantfs_chunks_quantized_total", **lab)
        hits = value(m1, "quantfs_chunk_cache_hits_total", **lab)
        # chunks of equal content (the genmodel's norms) are one cache entry
        q.check(cq > 0 and cq + hits == chunks,
                f"chunks_quantized and cache hits count its chunks ({cq} + {hits} of {chunks})")
        secs = value(m1, "quantfs_quantize_seconds_total", **lab)
        q.check(secs is not None and secs > 0, f"with quantize seconds ({secs})")
        q.check(value(m1, "quantfs_cache_fills_total") >= cq, "cache fills counted")
        mem0 = value(m1, "quantfs_cache_hits_total", tier="memory")
        read_direct(os.path.join(m.mnt, gguf))
        m2 = metrics(m.mnt)
        q.check(value(m2, "quantfs_cache_hits_total", tier="memory") >= mem0 + chunks,
                "reading it again counts memory hits")
        q.check(value(m2, "quantfs_chunks_quantized_total", **lab) == cq,
                f"and quantizes nothing more ({value(m2, 'quantfs_chunks_quantized_total', **lab)})")
        q.check(value(m2, "quantfs_bytes_served_total", **lab) == 2 * size, "bytes served again")
        q.check(value(m2, "quantfs_cache_hits_total", tier="disk") == 0, "no disk hit yet")

        # A source rewritten in place under the mount (no rescan: nowatch, rescan=0), with
        # the same bytes: its identity changes, its content (and so the cache keys) not.
        st = os.path.join(src, "llama", "model.safetensors")
        time.sleep(0.01)
        with open(st, "r+b") as f:
            f.seek(os.path.getsize(st) - 2)
            tail = f.read(2)
            f.seek(os.path.getsize(st) - 2)
            f.write(tail)
        try:
            read_direct(os.path.join(m.mnt, "llama", "llama.Q8_0.gguf"))
            failed = False
        except OSError:
            failed = True
        m3 = metrics(m.mnt)
        q.check(failed, "a read of a rewritten source fails")
        q.check(value(m3, "quantfs_errors_total", kind="source_changed") >= 1 and
                value(m3, "quantfs_errors_total", kind="read") >= 1,
                "errors by kind: source_changed and read")
        gen0 = value(m3, "quantfs_generation")
        os.kill(m.proc.pid, signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and value(metrics(m.mnt), "quantfs_generation") == gen0:
            time.sleep(0.1)
        m4 = metrics(m.mnt)
        q.check(value(m4, "quantfs_generation") == gen0 + 1 and
                value(m4, "quantfs_rescans_total") >= 1, "a rescan moves generation and rescans")
        q.check(value(m4, "quantfs_bytes_served_total", **lab) == 0,
                "the model described again starts its counters from zero")
        rc = m.unmount()
        q.check(rc == 0, f"clean exit ({rc})")

    # A remount with the same disk cache: disk hits, nothing quantized.
    with q.Mount(src, os.path.join(t, "mnt2"), f"cache={cache},rescan=0,nowatch") as m:
        MOUNT = os.path.realpath(m.mnt)
        with open(os.path.join(m.mnt, "llama", "llama.Q4_K_M.gguf"), "rb") as f:
            f.read()
        m5 = metrics(m.mnt)
        disk = value(m5, "quantfs_cache_hits_total", tier="disk")
        q.check(disk is not None and disk >= 1, f"after a remount, hits by the disk tier ({disk})")
        cq = value(m5, "quantfs_chunks_quantized_total", **lab)
        q.check(cq == 0, f"and nothing quantized ({cq})")
        deadline = time.time() + 10  # the store is sized behind, after the first disk hit
        while time.time() < deadline and not value(metrics(m.mnt), "quantfs_cache_bytes",
                                                    tier="disk"):
            time.sleep(0.1)
        q.check(value(metrics(m.mnt), "quantfs_cache_bytes", tier="disk") > 0,
                "the disk tier's bytes are shown (no write in this process)")
    q.finish()


if __name__ == "__main__":
    main()
