"""config -> Experiment, once: with main.py, the one place that reads a ConfigDict.

`build(config)` checks every key (a misspelt one stops the run, naming the closest valid
key) and every value with a domain (one line naming the key, the value and the valid
range), then reads each value once into run/experiment.py's specs, builds the SDE, the
network, the optimizer and the data, resolves the score functions and jits the functions
every mode uses. Config keys come from the code that takes them: an SDE's from its
dataclass fields, a sampler's from its factory's signature, a network's from its config
class.
"""
import dataclasses
import difflib
import inspect
import json

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
import schedules
import sde_lib
import weightings
from models import parameterizations
import run
from run import data as data_lib
from run import experiment
from run import mesh as mesh_lib
from models import classifier as classifier_lib

P = jax.sharding.PartitionSpec
RunError = run.RunError


def _arguments(fn, skip) -> tuple[str, ...]:
  return tuple(p for p in inspect.signature(fn).parameters if p not in skip)


def sde_keys(cls) -> tuple[str, ...]:
  """An SDE class's config keys: its dataclass fields (N is config.sde.num_scales)."""
  return tuple(f.name for f in dataclasses.fields(cls) if f.init and f.name != "N")


NETWORK_KEYS = ("name", "parameterization", "scale_input", "center_input", "noise_conditioning",
                "sigma_data", "ema_rate", "ema_warmup", "ema_sigma_rel")


def keys() -> dict:
  """Section -> the keys something reads (computed at build, so an SDE or sampler
  registered in a config file is included)."""
  return {
      "sde": ("name", "num_scales", *{k for cls in sde_lib.SDES.values() for k in sde_keys(cls)}),
      "training": ("loss", "reduce_mean", "likelihood_weighting", "importance_sampling",
                   "min_time", "batch_size", "n_iters", "n_jitted_steps", "log_freq",
                   "snapshot_freq", "snapshot_freq_for_preemption", "eval_freq",
                   "label_dropout", "weighted", "posthoc_ema", "objective", "n_projections",
                   "trace_estimator", "accumulation_steps", "model_axis_size"),
      "training.posthoc_ema": ("sigma_rels", "snapshot_freq"),
      "optim": ("lr", "beta1", "adam_eps", "weight_decay", "warmup", "grad_clip", "schedule",
                "decay_steps", "t_ref"),
      "eval": ("enable_loss", "enable_likelihood", "enable_sampling", "num_loss_batches",
               "batch_size", "likelihood_points", "likelihood", "checkpoint_step", "samplers",
               "feature_net", "fid_protocol", "fid_reference", "fid_reference_size",
               "bpd_repeats", "posthoc_sigma_rel"),
      "eval.likelihood": _arguments(likelihood.get_likelihood_fn, ("sde",)),
      "training.weighted": _arguments(losses.weighted_loss, (
          "score_fn", "sde", "x0", "key", "reduce_mean", "eps", "sigma_data", "objective",
          "per_example")),
      "sampling": ("method", "batch_size", "num_samples", "class_label", "guidance_scale",
                   "guidance_interval", "classifier_scale", "autoguidance", *sampling.SAMPLERS),
      "sampling.autoguidance": ("workdir", "checkpoint_step", "weight"),
      "classifier": ("num_classes", "n_iters", "batch_size", "lr"),
      "controllable": ("mask", "method", "resamplings"),
      **{f"sampling.{name}": _arguments(factory, ("sde", "shape"))
         for name, factory in sampling.SAMPLERS.items()},
  }


def _number(test):
  return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and test(v)


AT_LEAST_1 = (_number(lambda v: v >= 1), ">= 1")
OFF_OR_AT_LEAST_1 = (_number(lambda v: v >= 0), ">= 1, or 0 for off")
AT_LEAST_0 = (_number(lambda v: v >= 0), ">= 0")
POSITIVE = (_number(lambda v: v > 0), "> 0")
UNIT = (_number(lambda v: 0 <= v <= 1), "in [0, 1]")
DOMAINS = {
    **dict.fromkeys(("sde.num_scales", "data.num_eval", "training.batch_size",
                     "training.n_iters", "training.n_jitted_steps", "training.log_freq",
                     "training.snapshot_freq", "training.snapshot_freq_for_preemption",
                     "eval.num_loss_batches", "eval.batch_size", "eval.likelihood_points",
                     "eval.bpd_repeats", "sampling.batch_size", "sampling.num_samples",
                     "classifier.n_iters", "classifier.batch_size",
                     "controllable.resamplings", "training.n_projections",
                     "optim.decay_steps", "training.accumulation_steps",
                     "training.model_axis_size"), AT_LEAST_1),
    **dict.fromkeys(("training.eval_freq", "training.posthoc_ema.snapshot_freq"),
                    OFF_OR_AT_LEAST_1),
    **dict.fromkeys(("optim.warmup", "optim.weight_decay", "optim.grad_clip",
                     "eval.fid_reference_size",
                     "sampling.guidance_scale", "sampling.classifier_scale"), AT_LEAST_0),
    **dict.fromkeys(("optim.lr", "optim.adam_eps", "optim.t_ref", "classifier.lr",
                     "training.min_time", "model.sigma_data"), POSITIVE),
    **dict.fromkeys(("optim.beta1", "model.ema_rate"), UNIT),
    "training.label_dropout": (_number(lambda v: 0 <= v < 1), "in [0, 1)"),
    **dict.fromkeys(("eval.checkpoint_step", "sampling.autoguidance.checkpoint_step"),
                    (_number(lambda v: v >= -1), ">= 0, or -1 for the latest")),
    "sampling.autoguidance.weight": AT_LEAST_0,
}


def _get(config, dotted: str):
  for part in dotted.split("."):
    config = config[part]
  return config


def _check_keys(where: str, section, valid):
  for key in section.keys():
    if key not in valid:
      close = difflib.get_close_matches(key, valid, n=1)
      hint = f"did you mean {close[0]!r}? " if close else ""
      raise RunError(f"unknown config key config.{where}.{key}; {hint}valid keys: {sorted(valid)}")


def check_config(config):
  """Every key under the checked sections is one that something reads, and every value
  with a domain lies in it."""
  for where, valid in keys().items():
    _check_keys(where, _get(config, where), valid)
  model_class = lookup(models.MODELS, config.model.name, "config.model.name")[1]
  _check_keys("model", config.model,
              NETWORK_KEYS + tuple(f.name for f in dataclasses.fields(model_class)))
  toy = config.data.dataset in datasets.TOY_DISTRIBUTIONS
  _check_keys("data", config.data, ("dataset", "num_eval") if toy else data_lib.IMAGE_DATA_KEYS)
  for key, (valid, description) in {**DOMAINS, **_step_count_domains()}.items():
    try:
      value = _get(config, key)
    except KeyError:          # a section this config does not have (score_sde's)
      continue
    if not valid(value):
      raise RunError(f"config.{key}={value!r}: must be {description}")


def _step_count_domains() -> dict:
  """sampling.<name>.num_steps >= 1 for every sampler that takes it (None too where its
  factory's default is None: the SDE's N)."""
  domains = {}
  for name, factory in sampling.SAMPLERS.items():
    parameter = inspect.signature(factory).parameters.get("num_steps")
    if parameter is not None and parameter.default is None:
      domains[f"sampling.{name}.num_steps"] = (
          lambda v: v is None or AT_LEAST_1[0](v), ">= 1, or None for config.sde.num_scales")
    elif parameter is not None:
      domains[f"sampling.{name}.num_steps"] = AT_LEAST_1
  return domains


def lookup(registry: dict, name: str, what: str):
  if name not in registry:
    raise RunError(f"unknown {what}={name!r}; valid choices: {sorted(registry)}")
  return registry[name]


def _check_labels(config, labelled: bool):
  """Class labels: for class-conditional networks or classifier guidance, within their
  classes."""
  n, s = config.model.get("num_label_classes", 0), config.sampling
  if n and not labelled:
    raise RunError(f"config.model.num_label_classes={n} needs labelled image data; "
                   f"config.data.dataset={config.data.dataset!r} has no labels")
  if config.training.label_dropout and not n:
    raise RunError(f"config.training.label_dropout={config.training.label_dropout} must be 0 "
                   "unless config.model.num_label_classes > 0")
  if s.classifier_scale and s.class_label < 0:
    raise RunError(f"config.sampling.classifier_scale={s.classifier_scale} > 0 needs a class: "
                   "set config.sampling.class_label")
  if s.classifier_scale and not labelled:
    raise RunError(f"config.sampling.classifier_scale={s.classifier_scale} > 0 needs labelled "
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
  if s.autoguidance.weight != 1 and not s.autoguidance.workdir:
    raise RunError(f"config.sampling.autoguidance.weight={s.autoguidance.weight} needs a weak "
                   "model: set config.sampling.autoguidance.workdir")
  if s.guidance_interval and len(s.guidance_interval) != 2:
    raise RunError(f"config.sampling.guidance_interval={tuple(s.guidance_interval)}: give "
                   "(t_lo, t_hi), or () for every t")


def _check_noise_levels(config):
  """A network with a table row per noise level (NCSN as published) has one per level."""
  levels = config.model.get("noise_levels", 0)
  if levels and levels != config.sde.num_scales:
    raise RunError(f"config.model.noise_levels={levels} must equal config.sde.num_scales="
                   f"{config.sde.num_scales} (one table row per noise level)")
  if levels and config.model.noise_conditioning != "level_index":
    raise RunError(f"config.model.noise_levels={levels} needs config.model.noise_conditioning="
                   f"'level_index' (the row's index), got {config.model.noise_conditioning!r}")


def _check_divisibility(config):
  t, n_dev, m = config.training, jax.device_count(), config.training.model_axis_size
  if n_dev % m or jax.local_device_count() % m:
    raise RunError(f"config.training.model_axis_size={m} must divide the {n_dev} devices "
                   f"and each process's {jax.local_device_count()}")
  data_axis = f"the data axis of {n_dev // m} devices ({n_dev} / model_axis_size {m})"
  frequencies = {f"training.{name}": t[name] for name in (
      "log_freq", "snapshot_freq", "snapshot_freq_for_preemption", "n_iters", "eval_freq")}
  frequencies["training.posthoc_ema.snapshot_freq"] = t.posthoc_ema.snapshot_freq
  for name, value in frequencies.items():
    if value % t.n_jitted_steps:
      raise RunError(f"config.{name}={value} must be a multiple of "
                     f"config.training.n_jitted_steps={t.n_jitted_steps}")
  if t.posthoc_ema.sigma_rels and t.posthoc_ema.snapshot_freq <= 0:
    raise RunError(f"config.training.posthoc_ema.snapshot_freq={t.posthoc_ema.snapshot_freq} "
                   "must be > 0 when posthoc_ema.sigma_rels is set")
  if t.batch_size % (t.accumulation_steps * n_dev // m):
    raise RunError(f"config.training.batch_size={t.batch_size} must be divisible by "
                   f"config.training.accumulation_steps={t.accumulation_steps} x {data_axis}"
                   f" = {t.accumulation_steps * n_dev // m}")
  for name in ("training.batch_size", "sampling.batch_size", "eval.batch_size"):
    if _get(config, name) % (n_dev // m):
      raise RunError(f"config.{name}={_get(config, name)} must be divisible by {data_axis}")


def build_sde(c) -> sde_lib.SDE:
  cls = lookup(sde_lib.SDES, c.name.lower(), "config.sde.name")
  return cls(N=c.num_scales, **{k: c[k] for k in sde_keys(cls)})


def build_optimizer(o, posthoc_sigma_rels=()) -> optax.GradientTransformation:
  """Adam(W) with global-norm clipping at the rate of schedules.learning_rate (linear
  warmup, then optim.schedule), then the power EMAs of post-hoc EMA if posthoc_sigma_rels.
  The rate comes from the config at every start, never from a checkpoint."""
  lookup(schedules.SCHEDULES, o.schedule, "config.optim.schedule")
  schedule = schedules.learning_rate(o.lr, o.warmup, o.schedule, o.decay_steps, o.t_ref)
  optimizer = optax.adamw(schedule, b1=o.beta1, eps=o.adam_eps, weight_decay=o.weight_decay)
  if o.grad_clip > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(o.grad_clip), optimizer)
  if posthoc_sigma_rels:
    optimizer = optax.chain(optimizer, ema.track_power_emas(
        tuple(ema.gamma_of_sigma_rel(s) for s in posthoc_sigma_rels)))
  return optimizer


def _specs(config, sde) -> dict:
  """The loop settings of every mode, read once."""
  t, e, s = config.training, config.eval, config.sampling
  methods = tuple(e.samplers) or (s.method,)
  for name in (s.method, *methods):
    lookup(sampling.SAMPLERS, name, "config.sampling.method / config.eval.samplers entry")
  general = {k: v for k, v in s.to_dict().items() if k not in sampling.SAMPLERS
             and k != "num_samples"}
  folder = s.method + (f"_class{s.class_label}" if s.class_label >= 0 else "")
  folder += (f"_w{s.guidance_scale:g}" if s.guidance_scale else "") + (
      f"_classifier{s.classifier_scale:g}" if s.classifier_scale else "")
  folder += f"_ema{e.posthoc_sigma_rel:g}" if e.posthoc_sigma_rel else ""
  folder += f"_autoguided{s.autoguidance.weight:g}" if s.autoguidance.workdir else ""
  if e.posthoc_sigma_rel:
    ema.gamma_of_sigma_rel(e.posthoc_sigma_rel)    # a ValueError names a bad width
  return dict(
      train=experiment.TrainSpec(
          t.batch_size, t.n_iters, t.n_jitted_steps, t.log_freq, t.snapshot_freq,
          t.snapshot_freq_for_preemption, t.eval_freq, tuple(t.posthoc_ema.sigma_rels),
          t.posthoc_ema.snapshot_freq),
      eval=experiment.EvalSpec(
          e.enable_loss, e.enable_likelihood, e.enable_sampling, e.num_loss_batches,
          e.batch_size, e.likelihood_points, e.bpd_repeats,
          None if e.checkpoint_step < 0 else e.checkpoint_step, e.posthoc_sigma_rel, methods,
          bool(e.samplers)),
      sampling=experiment.SampleSpec(
          s.method, s.batch_size, s.num_samples, s.class_label, s.classifier_scale,
          experiment.AutoguidanceSpec(**s.autoguidance) if s.autoguidance.workdir else None,
          folder,
          {name: {**general, name: s[name].to_dict()} for name in sampling.SAMPLERS}),
      controllable=experiment.ControllableSpec(
          config.controllable.mask, config.controllable.method,
          config.controllable.resamplings, s.pc.to_dict()),
      classifier=experiment.ClassifierSpec(
          config.classifier.num_classes, config.classifier.n_iters,
          config.classifier.batch_size, config.classifier.lr, t.min_time, t.log_freq))


def _loss(t, sigma_data):
  """The training loss `loss(score_fn, sde, x0, key)` of config.training."""
  loss = lookup(losses.MULTI_LEVEL_LOSSES, t.loss, "config.training.loss")
  for key, choices in (("objective", losses.OBJECTIVES),
                       ("trace_estimator", losses.TRACE_ESTIMATORS)):
    lookup(dict.fromkeys(choices), t[key], f"config.training.{key}")
  kwargs = dict(reduce_mean=t.reduce_mean, objective=losses.Objective(
      t.objective, t.n_projections, t.trace_estimator))
  if t.loss == "continuous":
    kwargs.update(likelihood_weighting=t.likelihood_weighting,
                  importance_sampling=t.importance_sampling, eps=t.min_time)
  elif t.loss == "weighted":
    kwargs.update(eps=t.min_time, sigma_data=sigma_data, **t.weighted)
    lookup(weightings.WEIGHTINGS, t.weighted.weighting, "config.training.weighted.weighting")
    lookup(dict.fromkeys(weightings.NOISE_LEVEL_DISTRIBUTIONS), t.weighted.noise_levels,
           "config.training.weighted.noise_levels")
  return lambda score_fn, sde, x0, key: loss(score_fn, sde, x0, key, **kwargs)


def _score_fns(config, sde, model, num_classes: int):
  """(score_fn, class_log_prob_fn, sampling_score_fn): the network's score through its
  parameterization, the guidance classifier's log p_t(c | x), and the score the
  samplers use (class and guidance of config.sampling)."""
  m, s = config.model, config.sampling
  for key, choices in (("parameterization", parameterizations.PARAMETERIZATIONS),
                       ("noise_conditioning", parameterizations.NOISE_CONDITIONINGS)):
    lookup(dict.fromkeys(choices), m[key], f"config.model.{key}")
  options = dict(parameterization=m.parameterization, scale_input=m.scale_input,
                 noise_conditioning=m.noise_conditioning, sigma_data=m.sigma_data,
                 center_input=m.get("center_input", False))

  def score_fn(params, train=False, key=None, labels=None):
    rngs = {"dropout": key} if train else None
    extra = {} if labels is None else {"labels": labels}
    apply_fn = lambda p, x, c: model.apply(p, x, c, train=train, rngs=rngs, **extra)
    return parameterizations.get_score_fn(apply_fn, params, sde, **options)

  net = classifier_lib.NoiseConditionalCNN(num_classes=config.classifier.num_classes)
  class_log_prob_fn = lambda params: cg.noise_conditional_log_prob(
      lambda x, c: net.apply({"params": params}, x, c), sde, m.sigma_data)
  guidance = dict(null_label=num_classes, guidance_scale=s.guidance_scale,
                  interval=tuple(s.guidance_interval) or None,
                  classifier_scale=s.classifier_scale)

  def class_score_fn(params, classifier_params, labels):
    if s.class_label < 0:
      return score_fn(params)
    return cg.guided_score_fn(
        lambda x, t, y: score_fn(params, labels=y)(x, t),
        s.class_label if labels is None else labels,
        class_log_prob_fn=(None if classifier_params is None
                           else class_log_prob_fn(classifier_params)),
        **guidance)

  def sampling_score_fn(params, classifier_params=None, labels=None, weak_params=None):
    """The class's (guided) score; with weak_params, autoguided by the same score of the
    weak model's parameters at config.sampling.autoguidance.weight."""
    main = class_score_fn(params, classifier_params, labels)
    if weak_params is None:
      return main
    return cg.autoguidance(main, class_score_fn(weak_params, classifier_params, labels),
                           s.autoguidance.weight)

  return score_fn, class_log_prob_fn, sampling_score_fn


def _loss_fn(loss, score_fn, sde, num_classes: int, label_dropout: float):
  """loss_fn(params, batch, key, train=True) -> scalar. batch: x0, or (x0, labels [B]) for
  a class-conditional network, whose labels are replaced by the null label with
  probability label_dropout (training only)."""

  def loss_fn(params, batch, key, train=True):
    x0, labels = batch if num_classes else (batch, None)
    if labels is not None and train and label_dropout:
      drop = jax.random.bernoulli(jax.random.fold_in(key, 2), label_dropout, labels.shape)
      labels = jnp.where(drop, num_classes, labels)
    return loss(score_fn(params, train, jax.random.fold_in(key, 1), labels), sde, x0, key)

  return loss_fn


def _compile_options(abstract_state, n_jitted_steps: int, accumulation_steps: int):
  """(compiler options of init_state, whether the train step unrolls its steps)."""
  # Run once, but on the CPU XLA's backend optimizations of its hundreds of random-number
  # calls make it slow to compile: 7.8 s for the tests' small U-Net, 2.3 s at level 0
  # (values equal up to rounding, tested; run time 6 ms either way).
  cpu = jax.default_backend() == "cpu"
  options = {"xla_backend_optimization_level": 0} if cpu else {}
  # XLA:CPU compiles convolution gradients inside a loop body to generic loops, 25-150x
  # slower (benchmarks/README.md): on the CPU, the n_jitted_steps steps (and microbatches)
  # of a network with convolution kernels (4-D parameters) are compiled one after another.
  unroll = cpu and (n_jitted_steps > 1 or accumulation_steps > 1) and any(
      len(p.shape) == 4 for p in jax.tree_util.tree_leaves(abstract_state.params))
  return options, unroll


def _data(config):
  """run/data.py's ToyData or ImageData of config.data, with config.eval's feature
  network and FID protocol."""
  e = config.eval
  return data_lib.get_data(seed=config.seed, feature_net=e.feature_net, fid=dict(
      fid_protocol=e.fid_protocol, fid_reference=e.fid_reference,
      fid_reference_size=e.fid_reference_size), **config.data.to_dict())


def _samplers(sde, shape, sampler_kwargs: dict, methods) -> dict:
  """{name: sampler(key, score_fn)} of each method, for samples of `shape`."""
  return {name: sampling.SAMPLERS[name](sde, shape, **sampler_kwargs[name])
          for name in dict.fromkeys(methods)}


def build(config) -> experiment.Experiment:
  """Checks the config, reads it once, builds every object and jits every function."""
  check_config(config)
  _check_divisibility(config)
  _check_noise_levels(config)
  t, num_classes = config.training, config.model.get("num_label_classes", 0)
  mesh = mesh_lib.make_mesh(t.model_axis_size)
  replicated, split = (jax.sharding.NamedSharding(mesh, spec) for spec in (P(), P("data")))
  try:
    sde = build_sde(config.sde)
    model = models.get_model(config.model.name, **{
        k: v for k, v in config.model.items() if k not in NETWORK_KEYS})
    data = _data(config)
    _check_labels(config, data.labelled)
    specs = _specs(config, sde)
    loss = _loss(t, config.model.sigma_data)
    loglik_fn = likelihood.get_likelihood_fn(sde, **config.eval.likelihood)
    optimizer = build_optimizer(config.optim, t.posthoc_ema.sigma_rels)
    ema_decay = ema.decay_fn(config.model.ema_rate, config.model.ema_warmup,
                             config.model.ema_sigma_rel)
    score_fn, class_log_prob_fn, sampling_score_fn = _score_fns(config, sde, model, num_classes)
    sampler_kwargs = {name: config.sampling[name].to_dict() for name in sampling.SAMPLERS}
    samplers = _samplers(sde, (config.sampling.batch_size, *data.example_shape), sampler_kwargs,
                         (config.sampling.method, *specs["eval"].samplers))
  except ValueError as error:
    raise RunError(str(error).splitlines()[0]) from None

  loss_fn = _loss_fn(loss, score_fn, sde, num_classes, t.label_dropout)

  def init_state(key) -> losses.TrainState:
    params = model.init(key, jnp.zeros((1, *data.example_shape)), jnp.zeros((1,)))
    return losses.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                             opt_state=optimizer.init(params), ema_params=params)

  shapes = jax.eval_shape(init_state, jax.random.PRNGKey(0))
  state_sharding = mesh_lib.shardings(mesh, shapes)
  abstract_state = jax.tree_util.tree_map(
      lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
      shapes, state_sharding)
  params_sharding = state_sharding.params
  options, unroll = _compile_options(abstract_state, t.n_jitted_steps, t.accumulation_steps)

  def jit_sampler(sampler):
    # Called with 2 to 5 arguments, so no in_shardings (it must name every one passed):
    # the parameters (the weak model's too) are laid out like the train state's inside.
    def sample(params, key, classifier_params=None, labels=None, weak_params=None):
      params = jax.lax.with_sharding_constraint(params, params_sharding)
      if weak_params is not None:
        weak_params = jax.lax.with_sharding_constraint(weak_params, params_sharding)
      return sampler(key, sampling_score_fn(params, classifier_params, labels, weak_params))
    return jax.jit(sample, out_shardings=(split, replicated))

  return experiment.Experiment(
      record=json.loads(json.dumps(config.to_dict())), seed=config.seed, sde=sde, model=model,
      optimizer=optimizer, data=data, mesh=mesh, num_label_classes=num_classes, **specs,
      sampler_kwargs=sampler_kwargs, abstract_state=abstract_state,
      init_state=jax.jit(init_state, out_shardings=state_sharding, compiler_options=options),
      score_fn=score_fn, sampling_score_fn=sampling_score_fn,
      class_log_prob_fn=class_log_prob_fn,
      train_step=jax.jit(
          losses.get_train_step(loss_fn, optimizer, ema_decay, unroll=unroll,
                                accumulation_steps=t.accumulation_steps),
          in_shardings=(state_sharding, jax.sharding.NamedSharding(mesh, P(None, "data")),
                        replicated),
          out_shardings=(state_sharding, replicated), donate_argnums=(0,)),
      samplers={name: jit_sampler(sampler) for name, sampler in samplers.items()},
      log_likelihood=jax.jit(lambda params, key, x: loglik_fn(key, score_fn(params), x)[0],
                             in_shardings=(params_sharding, replicated, split),
                             out_shardings=split),
      eval_loss=jax.jit(lambda params, x0, key: loss_fn(params, x0, key, train=False),
                        in_shardings=(params_sharding, split, replicated),
                        out_shardings=replicated))
