#!/usr/bin/env python3
"""PyTorch .pth fixtures for the C .pth reader (src/pth.c, tests/test_pth.c, tests/convert_test.sh).

Loads the committed original-layout fixture tests/fixtures/tiny-wan22-t2v-orig (never rebuilds a model) and writes

  tests/fixtures/tiny-wan22-t2v-pth/      the tiny t2v model's non-expert files as the release ships them:
      models_t5_umt5-xxl-enc-bf16.pth       torch.save of the umT5 encoder state dict (original names, bf16): an
                                            OrderedDict with the `_metadata` attribute module.state_dict() has
      Wan2.1_VAE.pth                        torch.save of the VAE state dict (original names, f32)
      google/umt5-xxl/                      the tokenizer files (tokenizer.json, spiece.model, *_config.json)
    The experts stay in tiny-wan22-t2v-orig (high_noise_model/, low_noise_model/ as safetensors, like the
    release); the tests assemble a complete release folder from the two at run time.

  tests/fixtures/pth/                     reader cases, each checked here against torch.load first:
      edge.pth + edge.safetensors           torch.save of F32/F16/BF16/F64/I64/I32/I16/I8/U8/BOOL tensors, a 0-d
                                            scalar, an empty tensor, two views sharing one storage (one with a
                                            storage offset), an nn.Parameter; the safetensors file holds the same
                                            tensors (contiguous copies) for the bit-for-bit comparison
      proto4.pth                            the same state dict with pickle_protocol=4 (FRAME, MEMOIZE,
                                            SHORT_BINUNICODE, STACK_GLOBAL)
      wrapped.pth                           {"state_dict": {...}, "epoch": 3}: a training checkpoint
      f8.pth                                float8_e4m3fn / float8_e5m2 tensors (_rebuild_tensor_v3, UntypedStorage)
      zip64.pth                             edge.pth's entries re-packed with zip64 extra fields and a zip64 end record
      bad_noncontig.pth                     a transposed (non-contiguous) tensor
      bad_global.pth                        GLOBAL os.system + REDUCE (what a malicious pickle does)
      bad_builtins.pth                      GLOBAL builtins.eval through STACK_GLOBAL (protocol 4)
      bad_reduce.pth                        REDUCE on an allowed global that is not a callable (torch.FloatStorage)
      bad_inst.pth                          the INST opcode (protocol-0 object creation)
      bad_truncated.pth                     the first 60% of edge.pth
      bad_entry_oob.pth                     a storage entry whose size runs past the central directory
      bad_offset_oob.pth                    a tensor whose storage offset lies past the end of its storage
      bad_numel.pth                         a storage whose numel needs more bytes than its entry holds
      bad_compressed.pth                    edge.pth re-packed with deflate-compressed entries
      bad_nostop.pth                        a pickle cut before STOP
      bad_legacy.pth                        the start of a legacy (torch < 1.6, non-zip) file, which is not read

Usage: tools/ref/.venv/bin/python tools/ref/dump_pth.py   (a few seconds; two runs give identical files)
"""

import collections
import io
import os
import pickle
import shutil
import struct
import zipfile
import zlib

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
ORIG = os.path.join(FIX, "tiny-wan22-t2v-orig")
T2V = os.path.join(FIX, "tiny-wan22-t2v")
OUT_MODEL = os.path.join(FIX, "tiny-wan22-t2v-pth")
OUT_CASES = os.path.join(FIX, "pth")
SEED = 500


def state_dict_like_module(sd):
    """An OrderedDict carrying `_metadata`, as nn.Module.state_dict() returns it (pickled through BUILD)."""
    out = collections.OrderedDict(sd)
    out._metadata = collections.OrderedDict({"": {"version": 1}})
    return out


def check_same(path, ref, weights_only=True):
    got = torch.load(path, map_location="cpu", weights_only=weights_only)
    assert list(got.keys()) == list(ref.keys()), path
    for k, v in ref.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and torch.equal(got[k], v), (path, k)


def write_model():
    if os.path.isdir(OUT_MODEL):
        shutil.rmtree(OUT_MODEL)
    os.makedirs(os.path.join(OUT_MODEL, "google", "umt5-xxl"))
    for src, dst in (("models_t5_umt5-xxl-enc-bf16.safetensors", "models_t5_umt5-xxl-enc-bf16.pth"),
                     ("Wan2.1_VAE.safetensors", "Wan2.1_VAE.pth")):
        sd = load_file(os.path.join(ORIG, src))
        sd = state_dict_like_module({k: sd[k] for k in sorted(sd)})
        path = os.path.join(OUT_MODEL, dst)
        torch.save(sd, path)
        check_same(path, sd)
        print(f"[write] {os.path.relpath(path, ROOT)}: {len(sd)} tensors, {os.path.getsize(path)} bytes")
    for f in ("tokenizer.json", "spiece.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(os.path.join(T2V, "tokenizer", f), os.path.join(OUT_MODEL, "google", "umt5-xxl", f))


# ---- a tiny zip writer (stored or deflated entries, optional zip64 records), for the hand-made cases ----

def write_zip(path, entries, zip64=False, deflate=False, align=64):
    """entries: list of (name, bytes). Local headers are padded so data starts on `align` bytes, like torch."""
    out = io.BytesIO()
    central = []
    for name, data in entries:
        nb = name.encode()
        method = 8 if deflate else 0
        payload = zlib.compress(data)[2:-4] if deflate else data
        crc = zlib.crc32(data)
        off = out.tell()
        extra = b""
        if zip64:
            extra = struct.pack("<HHQQ", 1, 16, len(data), len(payload))
        pad = (-(off + 30 + len(nb) + len(extra) + 4)) % align
        extra += struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # torch's "FB" padding field
        size32 = 0xFFFFFFFF if zip64 else len(data)
        csize32 = 0xFFFFFFFF if zip64 else len(payload)
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if zip64 else 20, 0, method, 0, 0x21, crc,
                              csize32, size32, len(nb), len(extra)))
        out.write(nb + extra + payload)
        central.append((nb, method, crc, len(payload), len(data), off))
    cd_off = out.tell()
    for nb, method, crc, csize, size, off in central:
        extra = struct.pack("<HHQQQ", 1, 24, size, csize, off) if zip64 else b""
        out.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45 if zip64 else 20, 0, method, 0, 0x21, crc,
                              0xFFFFFFFF if zip64 else csize, 0xFFFFFFFF if zip64 else size, len(nb), len(extra),
                              0, 0, 0, 0, 0xFFFFFFFF if zip64 else off))
        out.write(nb + extra)
    cd_size = out.tell() - cd_off
    n = len(central)
    if zip64:
        z64 = out.tell()
        out.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_off))
        out.write(struct.pack("<IIQI", 0x07064B50, 0, z64, 1))
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    else:
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_off, 0))
    with open(path, "wb") as f:
        f.write(out.getvalue())


def zip_entries(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def repack(src, dst, **kw):
    """Re-packs a torch.save archive under the prefix of dst's file name (torch does the same)."""
    prefix = os.path.splitext(os.path.basename(dst))[0]
    write_zip(dst, [(prefix + n[n.index("/"):], d) for n, d in zip_entries(src)], **kw)


def save_pickle(path, pkl, storages):
    """An archive with a hand-written data.pkl and the given storages {key: bytes}."""
    prefix = os.path.splitext(os.path.basename(path))[0]
    entries = [(f"{prefix}/data.pkl", pkl), (f"{prefix}/byteorder", b"little")]
    entries += [(f"{prefix}/data/{k}", v) for k, v in storages.items()]
    entries.append((f"{prefix}/version", b"3\n"))
    write_zip(path, entries)


# ---- pickle fragments ------------------------------------------------------------------------------

def uni(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def tensor_pkl(storage_type, key, numel, offset, size, stride):
    """_rebuild_tensor_v2((storage pid), offset, size, stride, False, OrderedDict()) as torch writes it."""
    t = lambda xs: b"(" + b"".join(b"J" + struct.pack("<i", x) for x in xs) + b"t"  # noqa: E731
    return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + b"(" + uni("storage") + b"ctorch\n" + storage_type.encode() +
            b"\n" + uni(key) + uni("cpu") + b"J" + struct.pack("<i", numel) + b"tQ" + b"J" +
            struct.pack("<i", offset) + t(size) + t(stride) + b"\x89" + b"ccollections\nOrderedDict\n)R" + b"tR")


def one_tensor_dict(name, tensor_code):
    return b"\x80\x02}(" + uni(name) + tensor_code + b"u."


def edge_state_dict():
    g = torch.Generator().manual_seed(SEED)
    base = torch.randn(6, 5, generator=g)
    sd = collections.OrderedDict()
    sd["f32.weight"] = torch.randn(4, 3, generator=g)
    sd["f16"] = torch.randn(7, generator=g).to(torch.float16)
    sd["bf16.conv"] = torch.randn(2, 3, 1, 2, 2, generator=g).to(torch.bfloat16)
    sd["f64"] = torch.randn(3, generator=g).to(torch.float64)
    sd["i64"] = torch.tensor([-(2 ** 40), 0, 7, 2 ** 62], dtype=torch.int64)
    sd["i32"] = torch.tensor([-5, 1 << 30], dtype=torch.int32)
    sd["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255, 9], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 4)
    sd["shared.full"] = base
    sd["shared.row2"] = base[2]         # a view: storage offset 10, same storage as shared.full
    sd["shared.rows"] = base[3:5]       # a contiguous slice: offset 15
    sd["param"] = torch.nn.Parameter(torch.randn(3, generator=g))
    return sd


def write_cases():
    if os.path.isdir(OUT_CASES):
        shutil.rmtree(OUT_CASES)
    os.makedirs(OUT_CASES)
    p = lambda name: os.path.join(OUT_CASES, name)  # noqa: E731
    sd = edge_state_dict()
    torch.save(state_dict_like_module(sd), p("edge.pth"))
    check_same(p("edge.pth"), sd)
    save_file({k: v.detach().contiguous().clone() for k, v in sd.items()}, p("edge.safetensors"))
    torch.save(sd, p("proto4.pth"), pickle_protocol=4)
    check_same(p("proto4.pth"), sd, weights_only=False)  # torch's weights_only reader lacks FRAME (protocol 4)
    small = collections.OrderedDict((k, sd[k]) for k in ("f32.weight", "bf16.conv"))
    torch.save({"state_dict": small, "epoch": 3}, p("wrapped.pth"))
    f8 = collections.OrderedDict()
    f8["e4m3"] = torch.tensor([0.5, -2.0, 448.0]).to(torch.float8_e4m3fn)
    f8["e5m2"] = torch.tensor([1.0, -0.25]).to(torch.float8_e5m2)
    torch.save(f8, p("f8.pth"))
    save_file({k: v.clone() for k, v in f8.items()}, p("f8.safetensors"))
    repack(p("edge.pth"), p("zip64.pth"), zip64=True)
    check_same(p("zip64.pth"), sd)
    torch.save({"t": torch.randn(3, 4, generator=torch.Generator().manual_seed(SEED + 1)).t()},
               p("bad_noncontig.pth"))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    save_pickle(p("bad_global.pth"), pickle.dumps({"x": Evil()}, protocol=2), {})
    # STACK_GLOBAL builtins.eval (protocol 4)
    ev = (b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01x\x94\x8c\x08builtins\x94\x8c\x04eval\x94"
          b"\x93\x94\x8c\x061+1\x94\x85\x94R\x94u.")
    save_pickle(p("bad_builtins.pth"), ev, {})
    fl = struct.pack("<3f", 1.0, 2.0, 3.0)
    save_pickle(p("bad_reduce.pth"), one_tensor_dict("x", b"ctorch\nFloatStorage\n)R"), {"0": fl})
    save_pickle(p("bad_inst.pth"), b"\x80\x02}(X\x01\x00\x00\x00x(ios\nsystem\nu.", {})
    with open(p("edge.pth"), "rb") as f:
        data = f.read()
    with open(p("bad_truncated.pth"), "wb") as f:
        f.write(data[: len(data) * 6 // 10])
    # bad_entry_oob: the central directory claims 2^31 bytes for the storage entry
    good = one_tensor_dict("x", tensor_pkl("FloatStorage", "0", 3, 0, [3], [1]))
    save_pickle(p("bad_entry_oob.pth"), good, {"0": fl})
    raw = bytearray(open(p("bad_entry_oob.pth"), "rb").read())
    name = b"bad_entry_oob/data/0"
    at = raw.index(b"PK\x01\x02")
    while raw[at + 46: at + 46 + len(name)] != name:
        at = raw.index(b"PK\x01\x02", at + 4)
    struct.pack_into("<II", raw, at + 20, 1 << 31, 1 << 31)
    with open(p("bad_entry_oob.pth"), "wb") as f:
        f.write(bytes(raw))
    save_pickle(p("bad_offset_oob.pth"), one_tensor_dict("x", tensor_pkl("FloatStorage", "0", 3, 1000000, [3], [1])),
                {"0": fl})
    save_pickle(p("bad_numel.pth"), one_tensor_dict("x", tensor_pkl("FloatStorage", "0", 1000, 0, [3], [1])),
                {"0": fl})
    repack(p("edge.pth"), p("bad_compressed.pth"), deflate=True)
    legacy = io.BytesIO()
    torch.save(small, legacy, _use_new_zipfile_serialization=False)
    with open(p("bad_legacy.pth"), "wb") as f:  # its first two pickles (magic number, protocol version): the
        f.write(legacy.getvalue()[:21])          # rest holds random storage keys, not reproducible
    save_pickle(p("bad_nostop.pth"), good[:-1], {"0": fl})
    for name in sorted(os.listdir(OUT_CASES)):
        path = p(name)
        if name.startswith("bad_") and name not in ("bad_noncontig.pth", "bad_legacy.pth"):
            try:
                torch.load(path, map_location="cpu", weights_only=True)
                verdict = "loads (!)"
            except Exception as e:  # noqa: BLE001 - we only report what torch says
                msg = (str(e).splitlines() or [""])[0]
                verdict = f"torch.load(weights_only=True) refuses: {type(e).__name__} {msg[:80]}"
            print(f"[write] {os.path.relpath(path, ROOT)}: {verdict}")
        else:
            print(f"[write] {os.path.relpath(path, ROOT)}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    write_model()
    write_cases()
