"""config -> Experiment, once: the one place that reads the ConfigDict.

`build(config)` checks every key (a misspelt one stops the run, naming the closest valid
key), builds the SDE, the network, the optimizer and the task, and jits the functions
every mode uses. Each takes parameters as an argument, so evaluating many checkpoints
compiles each function once:

  train_step(state, batch [n_jitted_steps, B, ...], key) -> (state, {"loss"})
  sample(params, key, classifier_params=None, labels=None) -> (x [sampling.batch_size, ...],
    nfe), split over all devices (samplers[name] for each of sampling.method and
    eval.samplers; classifier_params: run/classifier.py's, for classifier guidance;
    labels [sampling.batch_size]: one class per sample, replacing sampling.class_label)
  log_likelihood(params, key, x [eval.batch_size, ...]) -> logp [eval.batch_size] (nats)
  eval_loss(params, x0 [eval.batch_size, ...], key) -> scalar (network in eval mode)
  (a class-conditional network's batches are (x0, labels [B]) pairs)
"""
import dataclasses
import difflib
import functools
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

import controllable_generation as cg
import datasets
import ema
import likelihood
import losses
import models
import sampling
import sde_lib
import weightings
from models import utils as mutils
import run
from run import classifier
from run import tasks

P = jax.sharding.PartitionSpec
RunError = run.RunError


def _arguments(fn, skip) -> tuple[str, ...]:
  return tuple(p for p in inspect.signature(fn).parameters if p not in skip)


SDE_PARAMS = {"vesde": ("sigma_min", "sigma_max", "T"), "vpsde": ("beta_min", "beta_max", "T"),
              "subvpsde": ("beta_min", "beta_max", "T"), "edm": ("sigma_max",),
              "rectified_flow": ("T",)}     # EDM's T is sigma_max
NETWORK_KEYS = ("name", "parameterization", "scale_input", "center_input", "noise_conditioning",
                "sigma_data", "ema_rate", "ema_warmup", "ema_sigma_rel")
KEYS = {   # section -> the keys something reads
    "sde": ("name", "beta_min", "beta_max", "sigma_min", "sigma_max", "num_scales", "T"),
    "training": ("loss", "reduce_mean", "likelihood_weighting", "importance_sampling",
                 "min_time", "batch_size", "n_iters", "n_jitted_steps", "log_freq",
                 "snapshot_freq", "snapshot_freq_for_preemption", "eval_freq", "label_dropout",
                 "weighted", "posthoc_ema"),
    "training.posthoc_ema": ("sigma_rels", "snapshot_freq"),
    "optim": ("lr", "beta1", "adam_eps", "weight_decay", "warmup", "grad_clip"),
    "eval": ("enable_loss", "enable_likelihood", "enable_sampling", "num_loss_batches",
             "batch_size", "likelihood_points", "likelihood", "checkpoint_step", "samplers",
             "feature_net", "bpd_repeats", "posthoc_sigma_rel"),
    "eval.likelihood": _arguments(likelihood.get_likelihood_fn, ("sde",)),
    "training.weighted": _arguments(losses.weighted_loss, (
        "score_fn", "sde", "x0", "key", "reduce_mean", "eps", "sigma_data", "per_example")),
    "sampling": ("method", "batch_size", "num_samples", "class_label", "guidance_scale",
                 "guidance_interval", "classifier_scale", *sampling.SAMPLERS),
    "classifier": ("num_classes", "n_iters", "batch_size", "lr"),
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

  @property
  def num_label_classes(self) -> int:
    """> 0 for a class-conditional network (its null label), else 0."""
    return self.config.model.get("num_label_classes", 0)

  def score_fn(self, params, train=False, key=None, labels=None):
    """score_fn(x, t) of the network with `params` (dropout keyed by `key` if `train`);
    a class-conditional network sees `labels` [B] (None: the null label)."""
    m = self.config.model
    rngs = {"dropout": key} if train else None
    extra = {} if labels is None else {"labels": labels}
    apply_fn = lambda p, x, c: self.model.apply(p, x, c, train=train, rngs=rngs, **extra)
    return mutils.get_score_fn(apply_fn, params, self.sde, m.parameterization, m.scale_input,
                               m.noise_conditioning, m.sigma_data, m.get("center_input", False))

  def sampling_score_fn(self, params, classifier_params=None, labels=None):
    """The score the samplers use. With sampling.class_label >= 0 (or `labels` [B],
    which replace it): a class-conditional network's score of that class, with
    classifier-free guidance at sampling.guidance_scale (within
    sampling.guidance_interval if set); with sampling.classifier_scale > 0, plus
    classifier guidance by the noise-conditional classifier with `classifier_params`
    (any network). Otherwise the unconditional score (a conditional network's null
    label)."""
    s = self.config.sampling
    if s.class_label < 0:
      return self.score_fn(params)
    label = s.class_label if labels is None else labels
    score_fn = self.score_fn(params)
    if self.num_label_classes:
      score_fn = cg.classifier_free_guidance(
          lambda x, t, y: self.score_fn(params, labels=y)(x, t), label,
          s.guidance_scale, self.num_label_classes, tuple(s.guidance_interval) or None)
    if s.classifier_scale:
      score_fn = cg.classifier_guidance(score_fn, classifier.log_prob_fn(self, classifier_params),
                                        label, s.classifier_scale)
    return score_fn

  def make_sampler(self, method: str, shape, **overrides):
    """sampler(key, score_fn) of `sampling.SAMPLERS[method]` for x of `shape`, with the
    config's settings `sampling.<method>` updated by `overrides`."""
    factory = lookup(sampling.SAMPLERS, method, "config.sampling.method")
    return factory(self.sde, shape, **{**self.config.sampling[method], **overrides})

  def init_state(self, key) -> losses.TrainState:
    """The step-0 train state of PRNG key `key` (EMA = parameters), replicated, compiled
    once per Experiment with its own compiler options (so not callable inside a jit)."""
    return self._jitted_init_state(key)

  @functools.cached_property
  def _jitted_init_state(self) -> Callable:
    # It runs once per run, but on the CPU XLA's backend optimizations of its hundreds of
    # random-number calls make it slow to compile: 7.8 s for the tests' small U-Net, 2.3 s at
    # level 0 (values equal up to rounding, tested; run time 6 ms either way).
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}
    return jax.jit(self._init_state, out_shardings=self.sharding(), compiler_options=options)

  def _init_state(self, key) -> losses.TrainState:
    params = self.model.init(key, jnp.zeros((1, *self.task.example_shape)), jnp.zeros((1,)))
    return losses.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                             opt_state=self.optimizer.init(params), ema_params=params)

  def posthoc_averages(self, state: losses.TrainState) -> tuple:
    """The power EMAs tracked for post-hoc EMA (config.training.posthoc_ema.sigma_rels),
    kept in the optimizer state by ema.track_power_emas; () when none are."""
    return state.opt_state[-1].averages if self.config.training.posthoc_ema.sigma_rels else ()

  def abstract_state(self):
    """The train state's shapes, dtypes and (replicated) shardings, without computing."""
    return jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.sharding()),
        jax.eval_shape(self._init_state, jax.random.PRNGKey(0)))


def build_sde(c) -> sde_lib.SDE:
  params = lookup(SDE_PARAMS, c.name.lower(), "config.sde.name")
  return sde_lib.get_sde(c.name.lower(), N=c.num_scales, **{k: c[k] for k in params})


def build_optimizer(o) -> optax.GradientTransformation:
  """Adam(W) with linear warmup to a constant rate and global-norm clipping. The rate
  comes from the config at every start, never from a checkpoint."""
  warmup = max(o.warmup, 1)
  schedule = optax.join_schedules(
      [optax.linear_schedule(0.0, o.lr, warmup), optax.constant_schedule(o.lr)], [warmup])
  adam = optax.adamw(schedule, b1=o.beta1, eps=o.adam_eps, weight_decay=o.weight_decay)
  return optax.chain(optax.clip_by_global_norm(o.grad_clip), adam) if o.grad_clip > 0 else adam


def _check_labels(config, task):
  """Class labels: for class-conditional networks or classifier guidance, within their
  classes."""
  n, t, s = config.model.get("num_label_classes", 0), config.training, config.sampling
  if n and not isinstance(task, tasks.ImageTask):
    raise RunError(f"config.model.num_label_classes={n} needs labelled image data; "
                   f"config.data.dataset={config.data.dataset!r} has no labels")
  if not 0.0 <= t.label_dropout < 1.0 or (t.label_dropout and not n):
    raise RunError(f"config.training.label_dropout={t.label_dropout} must be in [0, 1), and "
                   "0 unless config.model.num_label_classes > 0")
  if s.classifier_scale < 0 or (s.classifier_scale and s.class_label < 0):
    raise RunError(f"config.sampling.classifier_scale={s.classifier_scale}: must be >= 0, and "
                   "> 0 only with a class (config.sampling.class_label)")
  if s.classifier_scale and not isinstance(task, tasks.ImageTask):
    raise RunError(f"config.sampling.classifier_scale={s.classifier_scale} needs labelled "
                   f"image data; config.data.dataset={config.data.dataset!r} has no labels")
  classes = n or (config.classifier.num_classes if s.classifier_scale else 0)
  if not -1 <= s.class_label < classes:
    raise RunError(f"config.sampling.class_label={s.class_label}: valid are -1 (none)"
                   + (f" and 0 ... {classes - 1}" if classes else "; class labels need a "
                      "class-conditional network (config.model.num_label_classes > 0) or "
                      "classifier guidance (config.sampling.classifier_scale > 0)"))
  if s.guidance_scale and (s.class_label < 0 or not n):
    raise RunError(f"config.sampling.guidance_scale={s.guidance_scale} needs a class: set "
                   "config.sampling.class_label (and a class-conditional network)")
  if s.guidance_interval and len(s.guidance_interval) != 2:
    raise RunError(f"config.sampling.guidance_interval={tuple(s.guidance_interval)}: give "
                   "(t_lo, t_hi), or () for every t")


def _check_divisibility(config):
  t, n_dev = config.training, jax.device_count()
  frequencies = {name: t[name] for name in ("log_freq", "snapshot_freq",
                                             "snapshot_freq_for_preemption", "n_iters", "eval_freq")}
  frequencies["posthoc_ema.snapshot_freq"] = t.posthoc_ema.snapshot_freq
  for name, value in frequencies.items():
    if value % t.n_jitted_steps:
      raise RunError(f"config.training.{name}={value} must be a multiple of "
                     f"config.training.n_jitted_steps={t.n_jitted_steps}")
  if t.posthoc_ema.sigma_rels and t.posthoc_ema.snapshot_freq <= 0:
    raise RunError(f"config.training.posthoc_ema.snapshot_freq={t.posthoc_ema.snapshot_freq} "
                   "must be > 0 when posthoc_ema.sigma_rels is set")
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
    _check_labels(config, task)
    loss = lookup(losses.MULTI_LEVEL_LOSSES, t.loss, "config.training.loss")
    loss_kwargs = dict(reduce_mean=t.reduce_mean)
    if t.loss == "continuous":
      loss_kwargs.update(likelihood_weighting=t.likelihood_weighting,
                         importance_sampling=t.importance_sampling, eps=t.min_time)
    elif t.loss == "weighted":
      loss_kwargs.update(eps=t.min_time, sigma_data=config.model.sigma_data, **t.weighted)
      lookup(weightings.WEIGHTINGS, t.weighted.weighting, "config.training.weighted.weighting")
      lookup(dict.fromkeys(weightings.NOISE_LEVEL_DISTRIBUTIONS), t.weighted.noise_levels,
             "config.training.weighted.noise_levels")
    loglik_fn = likelihood.get_likelihood_fn(sde, **e.likelihood)
    optimizer = build_optimizer(config.optim)
    if t.posthoc_ema.sigma_rels:
      optimizer = optax.chain(optimizer, ema.track_power_emas(
          tuple(ema.gamma_of_sigma_rel(s) for s in t.posthoc_ema.sigma_rels)))
    ema_decay = ema.decay_fn(config.model.ema_rate, config.model.ema_warmup,
                             config.model.ema_sigma_rel)
    if e.posthoc_sigma_rel:
      ema.gamma_of_sigma_rel(e.posthoc_sigma_rel)    # a ValueError names a bad width
    # A partial Experiment gives score_fn to the functions jitted below.
    exp = Experiment(config, sde, model, optimizer, task, mesh, *([None] * 4))
    for name in e.samplers:
      lookup(sampling.SAMPLERS, name, "config.eval.samplers entry")
    shape = (s.batch_size, *task.example_shape)
    samplers = {name: exp.make_sampler(name, shape)
                for name in dict.fromkeys((s.method, *e.samplers))}
  except ValueError as error:
    raise RunError(str(error).splitlines()[0]) from None

  def loss_fn(params, batch, key, train=True):
    """batch: x0, or (x0, labels [B]) for a class-conditional network, whose labels are
    replaced by the null label with probability training.label_dropout (training only)."""
    x0, labels = batch if exp.num_label_classes else (batch, None)
    if labels is not None and train and t.label_dropout:
      drop = jax.random.bernoulli(jax.random.fold_in(key, 2), t.label_dropout, labels.shape)
      labels = jnp.where(drop, exp.num_label_classes, labels)
    return loss(exp.score_fn(params, train, jax.random.fold_in(key, 1), labels), sde, x0, key,
                **loss_kwargs)

  # XLA:CPU compiles convolution gradients inside a loop body to generic loops, 25-150x
  # slower (benchmarks/README.md): on the CPU, the n_jitted_steps steps of a network with
  # convolution kernels (4-D parameters) are compiled one after another instead.
  unroll = jax.default_backend() == "cpu" and t.n_jitted_steps > 1 and any(
      len(p.shape) == 4 for p in jax.tree_util.tree_leaves(exp.abstract_state().params))
  train_step = jax.jit(
      losses.get_train_step(loss_fn, optimizer, ema_decay, unroll=unroll),
      in_shardings=(replicated, jax.sharding.NamedSharding(mesh, P(None, "data")), replicated),
      out_shardings=(replicated, replicated), donate_argnums=(0,))
  def jit_sampler(sampler):
    return jax.jit(lambda params, key, classifier_params=None, labels=None: sampler(
        key, exp.sampling_score_fn(params, classifier_params, labels)),
                   in_shardings=replicated, out_shardings=(split, replicated))
  log_likelihood = jax.jit(lambda params, key, x: loglik_fn(key, exp.score_fn(params), x)[0],
                           in_shardings=(replicated, replicated, split), out_shardings=split)
  eval_loss = jax.jit(lambda params, x0, key: loss_fn(params, x0, key, train=False),
                      in_shardings=(replicated, split, replicated), out_shardings=replicated)
  return dataclasses.replace(exp, train_step=train_step,
                             samplers={k: jit_sampler(v) for k, v in samplers.items()},
                             log_likelihood=log_likelihood, eval_loss=eval_loss)
