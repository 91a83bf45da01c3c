#!/usr/bin/env python3
"""Converts a PyTorch state dict (a .bin / .pt / .ckpt / .safetensors file, or a diffusers model
folder) into the safetensors file ddx-sample and ddx-inspect read, unchanged in names and
layouts, with the model's ddx config stored in the file when a diffusers config.json is found.

    python3 tools/convert_torch_checkpoint.py google-ddpm-cifar10-32/ ddpm_cifar10.safetensors
    build/eval/ddx-sample --checkpoint ddpm_cifar10.safetensors

    python3 tools/convert_torch_checkpoint.py [--config-json CONFIG.json] SRC DST

SRC is a diffusers folder (its diffusion_pytorch_model.safetensors or .bin, in the folder or in
unet/) or a weights file. The UNet2DModel config.json beside the weights (or the one named by
--config-json) is mapped to ddx's model.* keys and stored as the file's config, so ddx-sample
needs no --config; a setting ddx's unet_ddpm does not model is refused by name (exit 2) instead
of giving a model that loads and computes something else. Without a config.json nothing is
stored and ddx-sample needs --config CONFIG.yaml describing the model.

For google/ddpm-cifar10-32 (download the folder with `huggingface-cli download
google/ddpm-cifar10-32`): its unet weights use diffusers' old attention names (query, key, value,
proj_attn); ddx accepts those as well as the current ones (to_q, to_k, to_v, to_out.0).
Reading config.json and .safetensors weights needs only the standard library; .bin / .pt /
.ckpt weights need torch (pip install torch). None of this is needed to build or test ddx.
"""
import array
import json
import os
import struct
import sys

UNSUPPORTED = "is not supported by ddx's unet_ddpm"

# UNet2DModel.__init__'s defaults (diffusers 0.3x): a key missing from config.json means these.
DIFFUSERS_DEFAULTS = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896],
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}


class Unsupported(Exception):
    """A config.json setting ddx does not model; str() is the one-line message without the path."""

    def __init__(self, key, value, why=""):
        self.key, self.value = key, value
        super().__init__(f"{key}={json.dumps(value)} {UNSUPPORTED}{why}")


def _int(cfg, key, lo=None):
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo):
        raise Unsupported(key, v)
    return v


def ddx_config_from_diffusers(config):
    """diffusers UNet2DModel config (the dict of config.json) -> ordered list of (ddx key, YAML value).
    Raises Unsupported naming the first setting ddx's unet_ddpm does not model."""
    cls = config.get("_class_name", "UNet2DModel")
    if cls != "UNet2DModel":
        raise Unsupported("_class_name", cls)
    for key in config:
        if not key.startswith("_") and key not in DIFFUSERS_DEFAULTS:
            raise Unsupported(key, config[key], " (a setting this converter does not know)")
    cfg = dict(DIFFUSERS_DEFAULTS)
    cfg.update({k: v for k, v in config.items() if not k.startswith("_")})

    # Settings ddx fixes at one value: anything else is refused.
    fixed = {
        "center_input_sample": False,
        "time_embedding_type": "positional",
        "mid_block_type": "UNetMidBlock2D",
        "mid_block_scale_factor": 1,
        "downsample_type": "conv",
        "upsample_type": "conv",
        "act_fn": "silu",
        "resnet_time_scale_shift": "default",
        "add_attention": True,
    }
    for key, want in fixed.items():
        v = cfg[key]
        if isinstance(v, bool) != isinstance(want, bool) or v != want:
            raise Unsupported(key, v)
    # class_embed_type None with num_class_embeds is nn.Embedding(num_class_embeds, time_embed_dim)
    # added to the time embedding; "" builds no class embedding at all; "timestep" and "identity"
    # embed differently. num_train_timesteps only feeds the "learned" time embedding.
    if cfg["class_embed_type"] not in (None, ""):
        raise Unsupported("class_embed_type", cfg["class_embed_type"])

    boc = cfg["block_out_channels"]
    if not isinstance(boc, (list, tuple)) or not 1 <= len(boc) <= 8 or any(
            isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= 65536 for c in boc):
        raise Unsupported("block_out_channels", boc)
    boc = list(boc)
    L = len(boc)
    if cfg["time_embedding_dim"] is not None and cfg["time_embedding_dim"] != 4 * boc[0]:
        raise Unsupported("time_embedding_dim", cfg["time_embedding_dim"], f" (only 4 * block_out_channels[0] = {4 * boc[0]})")

    size = cfg["sample_size"]
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % (1 << (L - 1)) != 0:
        raise Unsupported("sample_size", cfg["sample_size"],
                          f" (a square side divisible by {1 << (L - 1)} is needed: it sets model.image_size)")
    in_ch = _int(cfg, "in_channels", 1)
    if in_ch not in (1, 3):
        raise Unsupported("in_channels", in_ch, " (images have 1 or 3 channels)")
    if cfg["out_channels"] != in_ch:
        raise Unsupported("out_channels", cfg["out_channels"], " (the prediction must have in_channels channels)")

    down, up = cfg["down_block_types"], cfg["up_block_types"]
    if not isinstance(down, (list, tuple)) or len(down) != L:
        raise Unsupported("down_block_types", down, f" (one of DownBlock2D / AttnDownBlock2D per level, {L} levels)")
    if not isinstance(up, (list, tuple)) or len(up) != L:
        raise Unsupported("up_block_types", up, f" (one of UpBlock2D / AttnUpBlock2D per level, {L} levels)")
    attn = []
    for i, t in enumerate(down):
        if t not in ("DownBlock2D", "AttnDownBlock2D"):
            raise Unsupported(f"down_block_types[{i}]", t)
        attn.append(t == "AttnDownBlock2D")
    for j, t in enumerate(up):
        want = "AttnUpBlock2D" if attn[L - 1 - j] else "UpBlock2D"
        if t not in ("UpBlock2D", "AttnUpBlock2D"):
            raise Unsupported(f"up_block_types[{j}]", t)
        if t != want:
            raise Unsupported(f"up_block_types[{j}]", t, f" (ddx mirrors down_block_types: {want} there)")

    groups = _int(cfg, "norm_num_groups", 1)
    for i, c in enumerate(boc):
        if c % groups:
            raise Unsupported("norm_num_groups", groups, f" (it must divide block_out_channels[{i}] = {c})")
    if cfg["attn_norm_num_groups"] is not None and cfg["attn_norm_num_groups"] != groups:
        raise Unsupported("attn_norm_num_groups", cfg["attn_norm_num_groups"], f" (only None or norm_num_groups {groups})")
    head_dim = cfg["attention_head_dim"]
    if head_dim is None:
        head_dim = 0
    else:
        head_dim = _int(cfg, "attention_head_dim", 1)
        for i, c in enumerate(boc):
            if (attn[i] or i == L - 1) and c % head_dim:
                raise Unsupported("attention_head_dim", head_dim,
                                  f" (it must divide block_out_channels[{i}] = {c}, which has attention)")
    pad = cfg["downsample_padding"]
    if pad not in (0, 1) or isinstance(pad, bool):
        raise Unsupported("downsample_padding", pad)
    flip = cfg["flip_sin_to_cos"]
    if not isinstance(flip, bool):
        raise Unsupported("flip_sin_to_cos", flip)
    shift = cfg["freq_shift"]
    if isinstance(shift, float) and shift.is_integer():
        shift = int(shift)
    if isinstance(shift, bool) or not isinstance(shift, int) or not 0 <= shift <= 65536 or boc[0] % 2 or boc[0] // 2 == shift:
        raise Unsupported("freq_shift", cfg["freq_shift"])
    eps = cfg["norm_eps"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise Unsupported("norm_eps", eps)
    dropout = cfg["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise Unsupported("dropout", dropout)
    nrb = _int(cfg, "layers_per_block", 1)
    # ddx's class table has num_classes + 1 rows, the last being the null class of classifier-free
    # guidance, so num_class_embeds E is model.num_classes E - 1: the last diffusers class becomes
    # ddx's null class (for a model trained without one, its last class is still sampled, as the
    # null class: ddx-sample --guidance 0 --class 0 gives it). E = 1 would leave no class at all.
    classes = cfg["num_class_embeds"]
    classes = 0 if classes is None or cfg["class_embed_type"] == "" else _int(cfg, "num_class_embeds", 2) - 1

    # Widths that are multiples of the first are written as ch * ch_mult (ddx's own form, e.g.
    # google/ddpm-cifar10-32 becomes configs/cifar10_ddpm.yaml's network); others as
    # block_out_channels. Both give a timestep embedding block_out_channels[0] wide.
    out = [("model.type", "unet_ddpm"), ("model.in_channels", in_ch), ("model.out_channels", in_ch),
           ("model.image_size", size)]
    if all(c % boc[0] == 0 for c in boc):
        out += [("model.ch", boc[0]), ("model.ch_mult", [c // boc[0] for c in boc])]
    else:
        out += [("model.ch", boc[0]), ("model.ch_mult", [1] * L), ("model.block_out_channels", boc)]
    out += [("model.num_res_blocks", nrb),
            ("model.attn_resolutions", [size >> i for i in range(L) if attn[i]]),
            ("model.dropout", float(dropout)),
            ("model.num_classes", classes),
            ("model.groups", groups),
            ("model.norm_eps", float(eps)),
            ("model.attention_head_dim", head_dim),
            ("model.flip_sin_to_cos", flip),
            ("model.freq_shift", shift),
            ("model.downsample_padding", pad),
            ("data.image_size", size)]
    # The data set only has to agree with the channels for the stored config to validate.
    if in_ch == 1:
        out.append(("data.dataset", "fashion_mnist"))
    return out


def _yaml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(str(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def ddx_yaml(settings, source):
    """The (key, value) list as the YAML ddx_config_load reads (keys not listed keep ddx's defaults)."""
    shown = "".join(ch if ch.isprintable() else "?" for ch in source)
    lines = [f"# model of {shown}, converted by tools/convert_torch_checkpoint.py"]
    section = None
    for key, value in settings:
        sec, leaf = key.split(".", 1)
        if sec != section:
            lines.append(f"{sec}:")
            section = sec
        lines.append(f"  {leaf}: {_yaml_value(value)}")
    return "\n".join(lines) + "\n"


def find_config_json(src):
    if not os.path.isdir(src):
        p = os.path.join(os.path.dirname(os.path.abspath(src)), "config.json")
        return p if os.path.exists(p) else None
    for sub in ("", "unet"):
        p = os.path.join(src, sub, "config.json")
        if os.path.exists(p) and os.path.exists(os.path.join(src, sub)) and any(
                os.path.exists(os.path.join(src, sub, n))
                for n in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")):
            return p
    return None


def read_config_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit2(f"{path}: cannot read the model config: {e}")
    if not isinstance(cfg, dict):
        raise SystemExit2(f"{path}: not a JSON object (a diffusers UNet2DModel config.json)")
    return cfg


class SystemExit2(Exception):
    """Bad input: one line on stderr, exit status 2."""


# ---- safetensors without torch ----------------------------------------------------------------

def _f32_bytes(dtype, raw):
    """Little-endian raw tensor bytes of dtype F32/F16/BF16 -> F32 bytes."""
    if dtype == "F32":
        return raw
    if dtype == "BF16":
        h = array.array("H")
        h.frombytes(raw)
        if sys.byteorder != "little":
            h.byteswap()
        w = array.array("I", (x << 16 for x in h))
        if sys.byteorder != "little":
            w.byteswap()
        return w.tobytes()
    if dtype == "F16":
        n = len(raw) // 2
        return struct.pack(f"<{n}f", *struct.unpack(f"<{n}e", raw))
    return None


def read_safetensors(path, keep=lambda name: True):
    """{name: (shape, f32 bytes)} of the tensors of a safetensors file whose names keep() accepts,
    with the standard library only."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise SystemExit2(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise SystemExit2(f"{path}: header length {n} runs past the end of the file")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as e:
        raise SystemExit2(f"{path}: bad safetensors header: {e}")
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or not keep(name):
            continue
        try:
            lo, hi = info["data_offsets"]
            dtype, shape = info["dtype"], list(info["shape"])
            ok = 0 <= lo <= hi <= len(data) - base
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise SystemExit2(f"{path}: tensor {name} has a bad entry in the safetensors header")
        raw = _f32_bytes(dtype, data[base + lo:base + hi])
        if raw is None:
            raise SystemExit2(f"{path}: tensor {name} has dtype {info['dtype']}; ddx reads F32, F16 and BF16 weights")
        out[name] = (shape, raw)
    return out


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    off = 0
    for name, (shape, raw) in tensors.items():
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for _, raw in tensors.values():
                f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise SystemExit2(f"{path}: cannot write: {e.strerror or e}")


def load_weights(src):
    """{name: (shape, f32 bytes)} from a weights file or a diffusers folder."""
    if os.path.isdir(src):
        for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
            for sub in ("", "unet"):
                p = os.path.join(src, sub, name)
                if os.path.exists(p):
                    return load_weights(p)
        raise SystemExit2(f"{src}: no diffusion_pytorch_model.safetensors or .bin in it (or in unet/)")
    if src.endswith(".safetensors"):
        return read_safetensors(src)
    try:
        import torch
    except ImportError:
        raise SystemExit2(f"{src}: reading .bin / .pt / .ckpt weights needs torch (pip install torch)")
    sd = torch.load(src, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "ema"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict):
        raise SystemExit2(f"{src}: not a state dict")
    return {k: (list(v.shape), v.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes())
            for k, v in sd.items() if torch.is_tensor(v)}


def main(argv):
    args, config_json = [], None
    i = 0
    while i < len(argv):
        if argv[i] == "--config-json" and i + 1 < len(argv):
            config_json = argv[i + 1]
            i += 2
        elif argv[i].startswith("--config-json="):
            config_json = argv[i].split("=", 1)[1]
            i += 1
        elif argv[i] in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            args.append(argv[i])
            i += 1
    if len(args) != 2:
        sys.stderr.write(__doc__)
        return 2
    src, dst = args
    try:
        # The config first: an unsupported model is refused before any weights are read.
        cfg_path = config_json or find_config_json(src)
        metadata = {"source": os.path.basename(os.path.normpath(src))}
        if cfg_path:
            try:
                settings = ddx_config_from_diffusers(read_config_json(cfg_path))
            except Unsupported as e:
                raise SystemExit2(f"{cfg_path}: {e}")
            metadata["config"] = ddx_yaml(settings, metadata["source"])
        tensors = load_weights(src)
        if not tensors:
            raise SystemExit2(f"{src}: no tensors found")
        if os.path.exists(dst) and not os.path.isfile(dst):
            raise SystemExit2(f"{dst}: exists and is not a regular file; choose another output path")
        write_safetensors(dst, tensors, metadata)
    except SystemExit2 as e:
        sys.stderr.write(f"{e}\n")
        return 2
    except OSError as e:
        sys.stderr.write(f"{e.filename or src}: {e.strerror or e}\n")
        return 2
    n = sum(len(raw) // 4 for _, raw in tensors.values())
    note = f"config from {cfg_path}" if cfg_path else "no config.json: ddx-sample needs --config CONFIG.yaml"
    print(f"{dst}: {len(tensors)} tensors, {n} parameters; {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
