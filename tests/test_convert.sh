#!/usr/bin/env bash
# tools/convert_torch_checkpoint.py on diffusers model folders, without torch:
#   - a folder made from a parity fixture (data/unet_ddpm/<variant>.safetensors: its
#     "diffusers_config" as config.json, its param.* tensors as diffusion_pytorch_model.safetensors)
#     converts; the stored config is the one the fixture was checked against (its "ddx_config"),
#     and ddx-sample samples the converted file with no --config;
#   - a config.json with a setting ddx's unet_ddpm does not model is refused by name: exit 2, one
#     line `PATH: KEY=VALUE is not supported by ddx's unet_ddpm`, no output file;
#   - with torch installed, a .bin state dict converts too (otherwise that part is skipped).
#   test_convert.sh PATH/TO/ddx-sample   (run from tests/)
set -u
sample=$1
conv=../tools/convert_torch_checkpoint.py
pass=0 fail=0 skip=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() {
    echo "convert: $pass passed, $fail failed, $skip skipped"
    [ "$fail" = 0 ]
    exit $?
}

if ! command -v python3 >/dev/null; then
    echo "SKIP: no python3"
    exit 77
fi

# A diffusers folder from a fixture, using the converter's own safetensors reader and writer.
make_folder() {   # variant folder [json edits as python dict literal]
    python3 - "$1" "$2" "${3:-{\}}" <<'PY'
import ast, json, os, sys
sys.path.insert(0, "../tools")
import convert_torch_checkpoint as c
variant, folder, edits = sys.argv[1], sys.argv[2], ast.literal_eval(sys.argv[3])
path = f"data/unet_ddpm/{variant}.safetensors"
with open(path, "rb") as f:
    n = int.from_bytes(f.read(8), "little")
    meta = json.loads(f.read(n))["__metadata__"]
cfg = json.loads(meta["diffusers_config"])
cfg["_class_name"] = "UNet2DModel"
cfg.update(edits)
os.makedirs(os.path.join(folder, "unet"), exist_ok=True)
with open(os.path.join(folder, "unet", "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
params = {k[len("param."):]: v for k, v in c.read_safetensors(path, lambda k: k.startswith("param.")).items()}
c.write_safetensors(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"), params, {"format": "pt"})
# The converter's mapping today must still be the one the parity fixture was checked with.
if not edits and c.ddx_yaml(c.ddx_config_from_diffusers(cfg), variant) != meta["ddx_config"]:
    sys.exit(f"{variant}: the converter maps its config.json to another ddx config than the parity fixture's")
PY
}

# Stored config of a converted file, as ddx reads it.
stored_config() {
    python3 - "$1" <<'PY'
import json, sys
with open(sys.argv[1], "rb") as f:
    n = int.from_bytes(f.read(8), "little")
    print(json.loads(f.read(n))["__metadata__"].get("config", ""))
PY
}

for v in widths defaults combined; do
    d=$tmp/$v
    if ! make_folder "$v" "$d"; then
        bad "$v: could not make the diffusers folder"
        continue
    fi
    if python3 "$conv" "$d" "$tmp/$v.safetensors" >"$tmp/out" 2>&1; then ok; else bad "$v: convert failed: $(cat "$tmp/out")"; continue; fi
    cfgtext=$(stored_config "$tmp/$v.safetensors")
    case $v in
    widths) want="block_out_channels: [12, 20]" ;;
    defaults) want="flip_sin_to_cos: true" ;;
    combined) want="num_classes: 2" ;;   # num_class_embeds 3: two classes and the null class
    esac
    if grep -qF "$want" <<<"$cfgtext"; then ok; else bad "$v: stored config lacks '$want': $cfgtext"; fi
    # No --config: the model comes from the stored config (a wrong one fails to load the weights).
    # The class-conditional one by class number (a diffusers folder has no class names), guided.
    extra=()
    [ "$v" = combined ] && extra=(--class 1 --guidance 2)
    if "$sample" --checkpoint "$tmp/$v.safetensors" --sampler ddim --steps 2 --n 2 "${extra[@]}" --out "$tmp/$v.png" \
        >"$tmp/out" 2>&1 && [ -s "$tmp/$v.png" ]; then
        ok
    else
        bad "$v: ddx-sample on the converted file: $(tail -3 "$tmp/out")"
    fi
done

# Refusals: KEY=VALUE named on one line, exit 2, nothing written.
refuse() {   # edits expected-text
    local d=$tmp/bad
    rm -rf "$d" "$tmp/bad.safetensors"
    make_folder widths "$d" "$1" || { bad "could not make a folder for $1"; return; }
    python3 "$conv" "$d" "$tmp/bad.safetensors" >"$tmp/so" 2>"$tmp/se"
    local rc=$? lines
    lines=$(wc -l <"$tmp/se")
    if [ "$rc" = 2 ] && [ "$lines" = 1 ] && grep -qF "config.json: $2 is not supported by ddx's unet_ddpm" "$tmp/se" &&
        [ ! -e "$tmp/bad.safetensors" ]; then
        ok
    else
        bad "$1: exit $rc, $lines lines: $(cat "$tmp/se")"
    fi
}
refuse '{"act_fn": "gelu"}' 'act_fn="gelu"'
refuse '{"resnet_time_scale_shift": "scale_shift"}' 'resnet_time_scale_shift="scale_shift"'
refuse '{"add_attention": False}' 'add_attention=false'
refuse '{"class_embed_type": "timestep", "num_class_embeds": 4}' 'class_embed_type="timestep"'
refuse '{"num_class_embeds": 1}' 'num_class_embeds=1'
refuse '{"center_input_sample": True}' 'center_input_sample=true'
refuse '{"time_embedding_type": "fourier"}' 'time_embedding_type="fourier"'
refuse '{"norm_num_groups": 8}' 'norm_num_groups=8'
refuse '{"attn_norm_num_groups": 2}' 'attn_norm_num_groups=2'
refuse '{"down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"]}' 'down_block_types[1]="CrossAttnDownBlock2D"'
refuse '{"up_block_types": ["UpBlock2D", "UpBlock2D"]}' 'up_block_types[0]="UpBlock2D"'
refuse '{"mid_block_type": None}' 'mid_block_type=null'
refuse '{"mid_block_scale_factor": 1.414}' 'mid_block_scale_factor=1.414'
refuse '{"downsample_type": "resnet"}' 'downsample_type="resnet"'
refuse '{"upsample_type": "resnet"}' 'upsample_type="resnet"'
refuse '{"downsample_padding": 2}' 'downsample_padding=2'
refuse '{"attention_head_dim": 8}' 'attention_head_dim=8'
refuse '{"time_embedding_dim": 64}' 'time_embedding_dim=64'
refuse '{"sample_size": [16, 32]}' 'sample_size=[16, 32]'
refuse '{"out_channels": 2}' 'out_channels=2'
refuse '{"cross_attention_dim": 768}' 'cross_attention_dim=768'
refuse '{"_class_name": "UNet2DConditionModel"}' '_class_name="UNet2DConditionModel"'

# google/ddpm-cifar10-32's settings (the UNet2DModel that tests/reference/make_unet_ddpm_fixtures.py
# builds for cifar10_names.txt) map to ddx's default network: every model key at its default but
# dropout (diffusers' 0.0).
if python3 - <<'PY'; then ok; else bad "google/ddpm-cifar10-32's config.json does not map to ddx's default network"; fi
import sys
sys.path.insert(0, "../tools")
import convert_torch_checkpoint as c
cfg = {"_class_name": "UNet2DModel", "act_fn": "silu", "attention_head_dim": None,
       "block_out_channels": [128, 256, 256, 256], "center_input_sample": False,
       "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
       "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3,
       "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32,
       "out_channels": 3, "sample_size": 32, "time_embedding_type": "positional",
       "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]}
got = dict(c.ddx_config_from_diffusers(cfg))
want = {"model.type": "unet_ddpm", "model.in_channels": 3, "model.out_channels": 3, "model.image_size": 32,
        "model.ch": 128, "model.ch_mult": [1, 2, 2, 2], "model.num_res_blocks": 2, "model.attn_resolutions": [16],
        "model.dropout": 0.0, "model.num_classes": 0, "model.groups": 32, "model.norm_eps": 1e-6,
        "model.attention_head_dim": 0, "model.flip_sin_to_cos": False, "model.freq_shift": 1,
        "model.downsample_padding": 0, "data.image_size": 32}
if got != want:
    sys.exit(f"got {got}")
PY

# --config-json names the config for a bare weights file; a bad one is refused the same way.
make_folder widths "$tmp/cj" '{}' >/dev/null
if python3 "$conv" --config-json "$tmp/cj/unet/config.json" "$tmp/cj/unet/diffusion_pytorch_model.safetensors" \
    "$tmp/cj.safetensors" >"$tmp/out" 2>&1 && grep -qF "block_out_channels: [12, 20]" <<<"$(stored_config "$tmp/cj.safetensors")"; then
    ok
else
    bad "--config-json: $(cat "$tmp/out")"
fi

if python3 -c "import torch" 2>/dev/null; then
    python3 - "$tmp" <<'PY'
import sys, torch
sys.path.insert(0, "../tools")
import convert_torch_checkpoint as c
tmp = sys.argv[1]
sd = {k: torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape)
      for k, (shape, raw) in c.read_safetensors(f"{tmp}/widths/unet/diffusion_pytorch_model.safetensors").items()}
torch.save(sd, f"{tmp}/widths.bin")
PY
    cp "$tmp/widths/unet/config.json" "$tmp/config.json"
    if python3 "$conv" "$tmp/widths.bin" "$tmp/bin.safetensors" >"$tmp/out" 2>&1 &&
        python3 - "$tmp" <<'PY'; then
import sys
sys.path.insert(0, "../tools")
import convert_torch_checkpoint as c
tmp = sys.argv[1]
sys.exit(c.read_safetensors(f"{tmp}/bin.safetensors") != c.read_safetensors(f"{tmp}/widths.safetensors"))
PY
        ok
    else
        bad ".bin conversion differs from the .safetensors one: $(cat "$tmp/out")"
    fi
else
    echo "note: torch is not installed; the .bin conversion is not tested"
    skip=$((skip + 1))
fi
finish
