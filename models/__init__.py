"""Flax score networks; `models.utils` turns a network into a `score_fn(x, t)`.

MODELS maps a config name to (module class, its config dataclass).
"""
from models import mlp

MODELS = {"mlp": (mlp.MLP, mlp.MLPConfig)}


def get_model(name: str, **kwargs):
  """Builds a network from plain keyword arguments (the fields of its config class)."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; valid choices: {sorted(MODELS)}")
  module, config_class = MODELS[name]
  return module(config_class(**kwargs))
