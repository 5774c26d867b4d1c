"""config -> Experiment, once: the one place that reads the ConfigDict.

`build(config)` checks every key (a misspelt one stops the run, naming the closest valid
key), builds the SDE, the network, the optimizer and the task, and jits the functions
every mode uses. Each takes parameters as an argument, so evaluating many checkpoints
compiles each function once:

  train_step(state, batch [n_jitted_steps, B, ...], key) -> (state, {"loss"})
  sample(params, key) -> (x [sampling.batch_size, ...], nfe), split over all devices
    (samplers[name] for each of sampling.method and eval.samplers)
  log_likelihood(params, key, x [eval.batch_size, ...]) -> logp [eval.batch_size] (nats)
  eval_loss(params, x0 [eval.batch_size, ...], key) -> scalar (network in eval mode)
"""
import dataclasses
import difflib
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

import datasets
import likelihood
import losses
import models
import sampling
import sde_lib
from models import utils as mutils
import run
from run import tasks

P = jax.sharding.PartitionSpec
RunError = run.RunError


def _arguments(fn, skip) -> tuple[str, ...]:
  return tuple(p for p in inspect.signature(fn).parameters if p not in skip)


SDE_PARAMS = {"vesde": ("sigma_min", "sigma_max"), "vpsde": ("beta_min", "beta_max"),
              "subvpsde": ("beta_min", "beta_max")}
NETWORK_KEYS = ("name", "parameterization", "scale_input", "noise_conditioning", "sigma_data",
                "ema_rate", "ema_warmup")
KEYS = {   # section -> the keys something reads
    "sde": ("name", "beta_min", "beta_max", "sigma_min", "sigma_max", "num_scales", "T"),
    "training": ("loss", "reduce_mean", "likelihood_weighting", "importance_sampling",
                 "min_time", "batch_size", "n_iters", "n_jitted_steps", "log_freq",
                 "snapshot_freq", "snapshot_freq_for_preemption", "eval_freq"),
    "optim": ("lr", "beta1", "adam_eps", "weight_decay", "warmup", "grad_clip"),
    "eval": ("enable_loss", "enable_likelihood", "enable_sampling", "num_loss_batches",
             "batch_size", "likelihood_points", "likelihood", "checkpoint_step", "samplers",
             "feature_net", "bpd_repeats"),
    "eval.likelihood": _arguments(likelihood.get_likelihood_fn, ("sde",)),
    "sampling": ("method", "batch_size", "num_samples", *sampling.SAMPLERS),
    "controllable": ("mask", "method", "resamplings"),
    **{f"sampling.{name}": _arguments(factory, ("sde", "shape"))
       for name, factory in sampling.SAMPLERS.items()},
}


def _check_keys(where: str, section, valid):
  for key in section.keys():
    if key not in valid:
      close = difflib.get_close_matches(key, valid, n=1)
      hint = f"did you mean {close[0]!r}? " if close else ""
      raise RunError(f"unknown config key config.{where}.{key}; {hint}valid keys: {sorted(valid)}")


def check_config(config):
  """Every key under the checked sections is one that something reads."""
  for where, valid in KEYS.items():
    section = config
    for part in where.split("."):
      section = section[part]
    _check_keys(where, section, valid)
  if config.model.name not in models.MODELS:
    raise RunError(f"unknown config.model.name={config.model.name!r}; "
                   f"valid choices: {sorted(models.MODELS)}")
  config_class = models.MODELS[config.model.name][1]
  _check_keys("model", config.model,
              NETWORK_KEYS + tuple(f.name for f in dataclasses.fields(config_class)))
  toy = config.data.dataset in datasets.TOY_DISTRIBUTIONS
  _check_keys("data", config.data, ("dataset", "num_eval") if toy else tasks.IMAGE_DATA_KEYS)


def lookup(registry: dict, name: str, what: str):
  if name not in registry:
    raise RunError(f"unknown {what}={name!r}; valid choices: {sorted(registry)}")
  return registry[name]


@dataclasses.dataclass(frozen=True)
class Experiment:
  config: Any
  sde: sde_lib.SDE
  model: Any
  optimizer: optax.GradientTransformation
  task: Any                      # tasks.ToyTask or tasks.ImageTask
  mesh: jax.sharding.Mesh
  train_step: Callable
  samplers: dict                 # sampler name -> jitted sample(params, key)
  log_likelihood: Callable
  eval_loss: Callable

  @property
  def sample(self) -> Callable:
    """The configured sampler's sample(params, key) -> (x, nfe)."""
    return self.samplers[self.config.sampling.method]

  @property
  def eval_sampler_names(self) -> tuple[str, ...]:
    return tuple(self.config.eval.samplers) or (self.config.sampling.method,)

  def sharding(self, *spec) -> jax.sharding.NamedSharding:
    return jax.sharding.NamedSharding(self.mesh, P(*spec))

  def score_fn(self, params, train=False, key=None):
    """score_fn(x, t) of the network with `params` (dropout keyed by `key` if `train`)."""
    m = self.config.model
    rngs = {"dropout": key} if train else None
    apply_fn = lambda p, x, c: self.model.apply(p, x, c, train=train, rngs=rngs)
    return mutils.get_score_fn(apply_fn, params, self.sde, m.parameterization, m.scale_input,
                               m.noise_conditioning, m.sigma_data)

  def make_sampler(self, method: str, shape, **overrides):
    """sampler(key, score_fn) of `sampling.SAMPLERS[method]` for x of `shape`, with the
    config's settings `sampling.<method>` updated by `overrides`."""
    factory = lookup(sampling.SAMPLERS, method, "config.sampling.method")
    return factory(self.sde, shape, **{**self.config.sampling[method], **overrides})

  def init_state(self, key) -> losses.TrainState:
    params = self.model.init(key, jnp.zeros((1, *self.task.example_shape)), jnp.zeros((1,)))
    return losses.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                             opt_state=self.optimizer.init(params), ema_params=params)

  def abstract_state(self):
    """The train state's shapes, dtypes and (replicated) shardings, without computing."""
    return jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.sharding()),
        jax.eval_shape(self.init_state, jax.random.PRNGKey(0)))


def build_sde(c) -> sde_lib.SDE:
  params = lookup(SDE_PARAMS, c.name.lower(), "config.sde.name")
  return sde_lib.get_sde(c.name.lower(), N=c.num_scales, T=c.T, **{k: c[k] for k in params})


def build_optimizer(o) -> optax.GradientTransformation:
  """Adam(W) with linear warmup to a constant rate and global-norm clipping. The rate
  comes from the config at every start, never from a checkpoint."""
  warmup = max(o.warmup, 1)
  schedule = optax.join_schedules(
      [optax.linear_schedule(0.0, o.lr, warmup), optax.constant_schedule(o.lr)], [warmup])
  adam = optax.adamw(schedule, b1=o.beta1, eps=o.adam_eps, weight_decay=o.weight_decay)
  return optax.chain(optax.clip_by_global_norm(o.grad_clip), adam) if o.grad_clip > 0 else adam


def _check_divisibility(config):
  t, n_dev = config.training, jax.device_count()
  for name in ("log_freq", "snapshot_freq", "snapshot_freq_for_preemption", "n_iters",
               "eval_freq"):
    if t[name] % t.n_jitted_steps:
      raise RunError(f"config.training.{name}={t[name]} must be a multiple of "
                     f"config.training.n_jitted_steps={t.n_jitted_steps}")
  for name in ("training.batch_size", "sampling.batch_size", "eval.batch_size"):
    section, key = name.split(".")
    if config[section][key] % n_dev:
      raise RunError(f"config.{name}={config[section][key]} must be divisible by the "
                     f"{n_dev} devices ({jax.process_count()} processes)")


def build(config) -> Experiment:
  """Checks the config, builds every object and jits every function, once."""
  check_config(config)
  _check_divisibility(config)
  t, s, e = config.training, config.sampling, config.eval
  mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  replicated, split = (jax.sharding.NamedSharding(mesh, P()),
                       jax.sharding.NamedSharding(mesh, P("data")))
  try:
    sde = build_sde(config.sde)
    model = models.get_model(config.model.name, **{
        k: v for k, v in config.model.items() if k not in NETWORK_KEYS})
    for key, choices in (("parameterization", mutils.PARAMETERIZATIONS),
                         ("noise_conditioning", mutils.NOISE_CONDITIONINGS)):
      lookup(dict.fromkeys(choices), config.model[key], f"config.model.{key}")
    task = tasks.get_task(config.data, config.seed, e.feature_net if e.enable_sampling else "")
    loss = lookup(losses.MULTI_LEVEL_LOSSES, t.loss, "config.training.loss")
    loss_kwargs = dict(reduce_mean=t.reduce_mean)
    if t.loss == "continuous":
      loss_kwargs.update(likelihood_weighting=t.likelihood_weighting,
                         importance_sampling=t.importance_sampling, eps=t.min_time)
    loglik_fn = likelihood.get_likelihood_fn(sde, **e.likelihood)
    optimizer = build_optimizer(config.optim)
    # A partial Experiment gives score_fn to the functions jitted below.
    exp = Experiment(config, sde, model, optimizer, task, mesh, *([None] * 4))
    for name in e.samplers:
      lookup(sampling.SAMPLERS, name, "config.eval.samplers entry")
    shape = (s.batch_size, *task.example_shape)
    samplers = {name: exp.make_sampler(name, shape)
                for name in dict.fromkeys((s.method, *e.samplers))}
  except ValueError as error:
    raise RunError(str(error).splitlines()[0]) from None

  def loss_fn(params, x0, key, train=True):
    return loss(exp.score_fn(params, train, jax.random.fold_in(key, 1)), sde, x0, key,
                **loss_kwargs)

  train_step = jax.jit(
      losses.get_train_step(loss_fn, optimizer, config.model.ema_rate, config.model.ema_warmup),
      in_shardings=(replicated, jax.sharding.NamedSharding(mesh, P(None, "data")), replicated),
      out_shardings=(replicated, replicated), donate_argnums=(0,))
  def jit_sampler(sampler):
    return jax.jit(lambda params, key: sampler(key, exp.score_fn(params)),
                   in_shardings=(replicated, replicated), out_shardings=(split, replicated))
  log_likelihood = jax.jit(lambda params, key, x: loglik_fn(key, exp.score_fn(params), x)[0],
                           in_shardings=(replicated, replicated, split), out_shardings=split)
  eval_loss = jax.jit(lambda params, x0, key: loss_fn(params, x0, key, train=False),
                      in_shardings=(replicated, split, replicated), out_shardings=replicated)
  return dataclasses.replace(exp, train_step=train_step,
                             samplers={k: jit_sampler(v) for k, v in samplers.items()},
                             log_likelihood=log_likelihood, eval_loss=eval_loss)
