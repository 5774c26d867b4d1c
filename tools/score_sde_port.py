"""score_sde's parameter trees -> this codebase's, leaf for leaf.

score_sde (Song et al., 2021) saves its networks as flax parameter dictionaries; its NCSN++,
DDPM++ and DDPM networks create the same layers in the same order as models/ncsnpp.py and
models/ddpm.py (DDPM with `attention_every_up_block=False`), so the trees differ only in
names: its residual blocks are ResnetBlockBigGANpp_i / ResnetBlockDDPMpp_i /
ResnetBlockDDPM_i (here ResnetBlock_i), its attention blocks AttnBlockpp_i (AttnBlock_i)
with 1x1 layers NIN_j {W, b} (Dense_j {kernel, bias}), and its resampling layers keep their
convolution in a Conv2d_0 {weight, bias} (here the layer's own {kernel, bias}); the 1x1
shortcut of a DDPM block is its NIN_0 (here Dense_1; Dense_0 in a DDPM without noise
conditioning, `unembedded_ddpm_shortcuts`). Its NCSNv2 nests each RefineBlock's
convolutions in RCUBlock / MSFBlock / CRPBlock submodules, which models/ncsnv2.py creates in
the same order inline (`sequential_refine_blocks` numbers them through), and keeps
InstanceNorm++ parameters as [1, 1, 1, C] (here [C]; leading axes of size 1 are dropped).
`convert` renames by RULES and checks that every leaf of the target tree is filled exactly
once with an array of its shape. tools/verify_score_sde.py runs score_sde's code beside
ours on the converted parameters.
"""
import re

import numpy as np

RULES = (   # applied in order
    # DDPM's blocks: the 1x1 shortcut NIN_0 is created after the noise projection Dense_0,
    # so here it is Dense_1. (No published config uses NCSN++'s DDPM-style blocks; their
    # shortcut would collide with Dense_0 below, an error, not a silent mismatch.)
    (r"ResnetBlockDDPM_(\d+)/NIN_0/W$", r"ResnetBlock_\1/Dense_1/kernel"),
    (r"ResnetBlockDDPM_(\d+)/NIN_0/b$", r"ResnetBlock_\1/Dense_1/bias"),
    (r"ResnetBlock(?:BigGANpp|DDPMpp|DDPM)_(\d+)", r"ResnetBlock_\1"),
    (r"AttnBlockpp_(\d+)", r"AttnBlock_\1"),
    (r"NIN_(\d+)/W$", r"Dense_\1/kernel"),
    (r"NIN_(\d+)/b$", r"Dense_\1/bias"),
    (r"((?:Down|Up)sample_\d+)/Conv2d_0/weight$", r"\1/kernel"),
    (r"((?:Down|Up)sample_\d+)/Conv2d_0/bias$", r"\1/bias"),
    (r"InstanceNorm2dPlus_(\d+)", r"InstanceNormPlus_\1"),
)
REFINE_BLOCK = re.compile(r"RefineBlock_\d+$")
DDPM_BLOCK = re.compile(r"ResnetBlockDDPM_\d+$")


def _index(name: str) -> int:
  return int(name.rsplit("_", 1)[1])


def sequential_refine_blocks(tree: dict) -> dict:
  """NCSNv2's RefineBlock_i {RCUBlock_0..n-1 (one per input), MSFBlock_0 (n > 1),
  CRPBlock_0, RCUBlock_n (output)} {Conv_k} -> RefineBlock_i {Conv_0, Conv_1, ...} in that
  order of creation; every other subtree unchanged."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict) and REFINE_BLOCK.match(key) and any(
        k.startswith("RCUBlock_") for k in value):
      rcus = sorted((k for k in value if k.startswith("RCUBlock_")), key=_index)
      order = rcus[:-1] + [k for k in ("MSFBlock_0", "CRPBlock_0") if k in value] + rcus[-1:]
      if set(order) != set(value):
        raise ConversionError(f"{key} has unexpected submodules {sorted(set(value) - set(order))}")
      convs = [value[sub][conv] for sub in order for conv in sorted(value[sub], key=_index)]
      out[key] = {f"Conv_{i}": conv for i, conv in enumerate(convs)}
    elif isinstance(value, dict):
      out[key] = sequential_refine_blocks(value)
    else:
      out[key] = value
  return out


def unembedded_ddpm_shortcuts(tree: dict) -> dict:
  """A DDPM block without a noise projection (score_sde's `model.conditional = False`)
  creates its 1x1 shortcut NIN_0 first: ResnetBlockDDPM_i {NIN_0 {W, b}} with no Dense_0
  -> {Dense_0 {kernel, bias}} (with the projection it is Dense_1, by RULES)."""
  out = {}
  for key, value in tree.items():
    if (isinstance(value, dict) and DDPM_BLOCK.match(key) and "NIN_0" in value
        and "Dense_0" not in value):
      nin = value["NIN_0"]
      out[key] = {**{k: v for k, v in value.items() if k != "NIN_0"},
                  "Dense_0": {"kernel": nin["W"], "bias": nin["b"]}}
    elif isinstance(value, dict):
      out[key] = unembedded_ddpm_shortcuts(value)
    else:
      out[key] = value
  return out


class ConversionError(ValueError):
  """A score_sde tree that does not fit the target network (the message names the leaf)."""


def flatten(tree, prefix=""):
  """{"a": {"b": x}} -> {"a/b": x} (leaves: anything that is not a dict)."""
  flat = {}
  for key, value in tree.items():
    path = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(flatten(value, path + "/"))
    else:
      flat[path] = value
  return flat


def unflatten(flat):
  tree = {}
  for path, value in flat.items():
    *parents, leaf = path.split("/")
    node = tree
    for key in parents:
      node = node.setdefault(key, {})
    node[leaf] = value
  return tree


def our_name(path: str) -> str:
  for pattern, replacement in RULES:
    path = re.sub(pattern, replacement, path)
  return path


def convert(theirs: dict, target_shapes: dict) -> dict:
  """score_sde parameters (nested dict of arrays, without a "params" level, as its
  checkpoints store them) -> our variables {"params": ...}, nested like `target_shapes`
  (our variables' leaf shapes, e.g. of Experiment.abstract_state.params). Raises
  ConversionError naming the first leaf that has no target, a target filled twice or left
  empty, or a shape that differs."""
  targets = {path: tuple(shape) for path, shape in flatten(target_shapes["params"]).items()}
  converted = {}
  theirs = unembedded_ddpm_shortcuts(sequential_refine_blocks(theirs))
  for path, value in flatten(theirs).items():
    name = our_name(path)
    if name not in targets:
      raise ConversionError(f"score_sde leaf {path!r} (as {name!r}) has no counterpart in the "
                            "target network: is the config the checkpoint's?")
    if name in converted:
      raise ConversionError(f"two score_sde leaves map to {name!r} (the second: {path!r})")
    value = np.asarray(value)
    if value.shape == (1,) * (value.ndim - len(targets[name])) + targets[name]:
      value = value.reshape(targets[name])
    if value.shape != targets[name]:
      raise ConversionError(f"score_sde leaf {path!r} has shape {value.shape}, the target "
                            f"{name!r} {targets[name]}: is the config the checkpoint's?")
    converted[name] = value
  missing = sorted(set(targets) - set(converted))
  if missing:
    raise ConversionError(f"{len(missing)} target leaves have no score_sde counterpart, "
                          f"e.g. {missing[0]!r}: is the config the checkpoint's?")
  return {"params": unflatten(converted)}
