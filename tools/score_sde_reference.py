r"""Runs score_sde's own model code (a checkout of github.com/yang-song/score_sde, not part
of this repository) to produce what the port is checked against:

  python -m tools.score_sde_reference --score_sde /path/to/score_sde \
      --config ve/cifar10_ncsnpp_continuous --out /tmp/ve_ncsnpp.npz [--tiny]

Initializes the published network of that config with random parameters (seed 0) and
writes <out>: every parameter (its initialization plus N(0, 0.02^2) noise, so that
no layer is zero) (keys "param:<path>"), a batch x [4, H, W, C] of noisy data
at four times t, and score_sde's score function there (its get_score_fn, continuous
training). With --tiny the config is shrunk (nf 16, two levels, one block) so that
tests can run it; tools/verify_score_sde.py converts the parameters and compares. An
<out> ending in .json gets the parameter tree's shapes only (no computation: any size).

Only this file imports score_sde, in a process of its own: score_sde's sde_lib.py and
datasets.py share names with this repository's modules. score_sde was written for flax
0.3; under today's flax it needs two shims: flax.optim (which its models/utils.py names in
a type annotation and never uses), and bias initializers of two arguments (key, shape)
(NCSNv2's convolutions; today's flax passes a dtype too).

Discretely trained VE networks (NCSNv2; NCSN++ and DDPM trained with SMLD) take integer
labels: the times are moved to the nearest point of the N-level grid, t_i = 1 - i / (N - 1),
where score_sde's sigma_i equals sigma(t_i) of the continuous schedule. Discretely trained
VP networks (the DDPM chain) are evaluated at the times as they are: score_sde gives them
the float label t (N - 1) and divides by the std of the chain's level int(t (N - 1)).
"""
import importlib
import inspect
import json
import os
import sys
import types

from absl import app
from absl import flags
import numpy as np

FLAGS = flags.FLAGS
PERTURBATION = 0.02


def shrink(config):
  """configs/score_sde.py's "tiny" variant: nf 16, ch_mult (1, 2) (DDPM, whose GroupNorm has
  32 groups: nf 32, ch_mult (1, 1)), one block, 16 px; NCSNv2: nf 8 only (its depth
  follows the image size)."""
  if config.model.name.startswith("ncsnv2"):
    config.model.nf = 8
    return config
  ddpm = config.model.name == "ddpm"
  config.model.nf = 32 if ddpm else 16
  config.model.ch_mult = (1, 1) if ddpm else (1, 2)
  config.model.num_res_blocks = 1
  config.data.image_size = 16
  return config


def shim_flax():
  """What score_sde's models need of today's flax (see the module docstring)."""
  import flax  # pylint: disable=g-import-not-at-top
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  flax.optim = getattr(flax, "optim", types.SimpleNamespace(Optimizer=object))
  base = nn.Conv

  class Conv(base):   # the same name, so the same parameter paths
    def __post_init__(self):
      init = self.bias_init
      if len(inspect.signature(init).parameters) == 2:
        object.__setattr__(self, "bias_init", lambda key, shape, dtype=None: init(key, shape))
      super().__post_init__()

  nn.Conv = Conv


def flatten(tree, prefix=""):
  flat = {}
  for key, value in tree.items():
    if hasattr(value, "items"):
      flat.update(flatten(value, f"{prefix}{key}/"))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def main(_):
  shim_flax()
  here = os.path.abspath(os.getcwd())    # this repository: its configs/ and models/ would win
  sys.path[:] = [FLAGS.score_sde] + [p for p in sys.path if os.path.abspath(p or ".") != here]
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  sde_lib = importlib.import_module("sde_lib")
  mutils = importlib.import_module("models.utils")
  for name in ("ncsnpp", "ddpm", "ncsnv2"):
    importlib.import_module(f"models.{name}")      # registers the model
  config = importlib.import_module("configs." + FLAGS.config.replace("/", ".")).get_config()
  if FLAGS.tiny:
    config = shrink(config)
  model = mutils.get_model(config.model.name)(config=config)
  size, channels = config.data.image_size, config.data.num_channels
  x0 = jax.random.uniform(jax.random.PRNGKey(1), (4, size, size, channels))
  if config.data.centered:
    x0 = 2 * x0 - 1
  t = jnp.array([0.01, 0.2, 0.5, 0.9])
  # NCSNv2 indexes its sigmas by integer labels (score_sde's ve/ncsnv2/bedroom.py sets
  # `training.continuouse`, a typo, and would otherwise pass float labels).
  continuous = config.training.continuous and not config.model.name.startswith("ncsnv2")
  if not continuous and config.training.sde == "vesde":   # the nearest grid times
    n = config.model.num_scales - 1
    t = 1.0 - jnp.round((1.0 - t) * n) / n
  if config.training.sde == "vesde":
    sde = sde_lib.VESDE(config.model.sigma_min, config.model.sigma_max, config.model.num_scales)
  elif config.training.sde == "vpsde":
    sde = sde_lib.VPSDE(config.model.beta_min, config.model.beta_max, config.model.num_scales)
  else:
    sde = sde_lib.subVPSDE(config.model.beta_min, config.model.beta_max, config.model.num_scales)
  mean, std = sde.marginal_prob(x0, t)
  x = mean + std[:, None, None, None] * jax.random.normal(jax.random.PRNGKey(2), x0.shape)
  init = lambda: model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(3)},
                            x, jnp.ones((4,), jnp.float32 if continuous else jnp.int32),
                            train=False)
  if FLAGS.out.endswith(".json"):      # the parameter tree's shapes only (no computation)
    shapes = {k: list(v.shape) for k, v in flatten(jax.eval_shape(init)["params"]).items()}
    with open(FLAGS.out, "w") as f:
      json.dump({"config": FLAGS.config, "tiny": FLAGS.tiny, "shapes": shapes}, f)
    print(f"wrote {FLAGS.out}: {len(shapes)} parameter shapes")
    return
  variables = init()
  # Zero-initialized layers (init_scale 0) would make every output zero: perturb every leaf.
  leaves, treedef = jax.tree_util.tree_flatten(variables["params"])
  keys = jax.random.split(jax.random.PRNGKey(4), len(leaves))
  params = jax.tree_util.tree_unflatten(treedef, [
      leaf + PERTURBATION * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)])
  states = {k: v for k, v in variables.items() if k != "params"}
  score_fn = mutils.get_score_fn(sde, model, params, states, train=False,
                                 continuous=continuous)
  score = score_fn(x, t)
  arrays = {f"param:{k}": np.asarray(v) for k, v in flatten(params).items()}
  np.savez(FLAGS.out, x=np.asarray(x), t=np.asarray(t), score=np.asarray(score), **arrays,
           info=np.asarray(json.dumps({"config": FLAGS.config, "tiny": FLAGS.tiny,
                                       "model": config.model.name})))
  print(f"wrote {FLAGS.out}: {len(arrays)} parameter arrays, score |max| "
        f"{float(jnp.abs(score).max()):.4g}")


def define_flags():
  """The command's flags (defined only when it runs: importing this module defines none)."""
  flags.DEFINE_string("score_sde", None, "Path of a score_sde checkout.")
  flags.DEFINE_string("config", None, "score_sde config, e.g. ve/cifar10_ncsnpp_continuous.")
  flags.DEFINE_string("out", None, "Output .npz, or .json for the parameter shapes only.")
  flags.DEFINE_bool("tiny", False, "Shrink the network (nf 16, ch_mult (1, 2), 1 block).")
  flags.mark_flags_as_required(["score_sde", "config", "out"])


if __name__ == "__main__":
  define_flags()
  app.run(main)
