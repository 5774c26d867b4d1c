"""Flax score networks; `models.parameterizations` turns a network into a `score_fn(x, t)`.

Every network is called as `module.apply(params, x, c_noise, train)` with x [B, ...]
and the noise condition c_noise [B] (see models/parameterizations.py), and returns [B, ...].
MODELS maps a config name to (module class, its config dataclass).
"""
import jax
import jax.numpy as jnp
import numpy as np

from models import ddpm
from models import mlp
from models import ncsnpp
from models import ncsnv2

MODELS = {
    "mlp": (mlp.MLP, mlp.MLPConfig),
    "ddpm": (ddpm.DDPM, ddpm.DDPMConfig),
    "ncsnpp": (ncsnpp.NCSNpp, ncsnpp.NCSNppConfig),
    "ncsnv2": (ncsnv2.NCSNv2, ncsnv2.NCSNv2Config),
}


def get_model(name: str, **kwargs):
  """Builds a network from plain keyword arguments (the fields of its config class)."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; valid choices: {sorted(MODELS)}")
  module, config_class = MODELS[name]
  return module(config_class(**kwargs))


def count_params(model, shape) -> int:
  """Number of parameters of `model` on inputs of `shape` [B, ...], without computing."""
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(shape),
                                                jnp.zeros(shape[:1])))
  return sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(variables))
