"""The config's schema: which keys exist and which values are valid, checked before
anything is built (run/build.py calls `check`). A misspelt key stops the run naming the
closest valid one; a value outside its domain, or a name not in its registry, is one line
naming the key, the value and the valid choices. Keys come from the code that takes them:
an SDE's from its dataclass fields, a sampler's from its factory's signature, a network's
from its config class; registries are read at check time, so an entry added in a config
file counts. (The config's defaults are configs/default_toy.py and its descendants.)
"""
import dataclasses
import difflib
import inspect

import jax

import consistency
import controllable_generation as cg
import datasets
import likelihood
import losses
import models
import sampling
import schedules
import sde_lib
import weightings
from infra.errors import RunError
from models import parameterizations

IMAGE_DATA_KEYS = ("dataset", "num_eval", "data_dir", "image_size", "num_channels", "centered",
                   "random_flip", "uniform_dequantization")


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
                   "trace_estimator", "accumulation_steps", "model_axis_size", "consistency"),
      "training.consistency": ("teacher_workdir", "teacher_checkpoint_step", "teacher",
                               "num_steps", "grid", "eps", "schedule", "init_student"),
      "training.posthoc_ema": ("sigma_rels", "snapshot_freq"),
      "optim": _arguments(schedules.get_optimizer, ("posthoc_sigma_rels",)),
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
                     "training.model_axis_size", "training.consistency.num_steps"),
                    AT_LEAST_1),
    **dict.fromkeys(("training.eval_freq", "training.posthoc_ema.snapshot_freq"),
                    OFF_OR_AT_LEAST_1),
    **dict.fromkeys(("optim.warmup", "optim.weight_decay", "optim.grad_clip",
                     "eval.fid_reference_size",
                     "sampling.guidance_scale", "sampling.classifier_scale"), AT_LEAST_0),
    **dict.fromkeys(("optim.lr", "optim.adam_eps", "optim.t_ref", "classifier.lr",
                     "training.min_time", "model.sigma_data", "training.consistency.eps"),
                    POSITIVE),
    **dict.fromkeys(("optim.beta1", "model.ema_rate"), UNIT),
    "training.label_dropout": (_number(lambda v: 0 <= v < 1), "in [0, 1)"),
    **dict.fromkeys(("eval.checkpoint_step", "sampling.autoguidance.checkpoint_step"),
                    (_number(lambda v: v >= -1), ">= 0, or -1 for the latest")),
    "sampling.autoguidance.weight": AT_LEAST_0,
    "training.consistency.teacher_checkpoint_step": (_number(lambda v: v >= -1),
                                                     ">= 0, or -1 for none"),
    # ema.gamma_of_sigma_rel's domain: the relative widths of power EMAs with gamma > 0
    "eval.posthoc_sigma_rel": (_number(lambda v: v == 0 or 0 < v < 12 ** -0.5),
                               "0 (off) or in (0, 0.2887)"),
}


_ABSENT = object()


def _get(config, dotted: str):
  """config's value at a dotted key; _ABSENT where a section or key is missing (a
  section some configs lack)."""
  for part in dotted.split("."):
    if part not in config:
      return _ABSENT
    config = config[part]
  return config


def _check_keys(where: str, section, valid):
  for key in section.keys():
    if key not in valid:
      close = difflib.get_close_matches(key, valid, n=1)
      hint = f"did you mean {close[0]!r}? " if close else ""
      raise RunError(f"unknown config key config.{where}.{key}; {hint}valid keys: {sorted(valid)}")


def choices() -> dict:
  """Dotted key -> the names it may take (a dict's keys are listed sorted, a tuple's in
  order)."""
  return {"model.name": models.MODELS, "optim.schedule": schedules.SCHEDULES,
          "training.loss": (*losses.MULTI_LEVEL_LOSSES, *consistency.LOSSES),
          "training.objective": losses.OBJECTIVES,
          "training.consistency.teacher": consistency.TEACHERS,
          "training.consistency.grid": sampling.TIME_GRIDS,
          "training.trace_estimator": losses.TRACE_ESTIMATORS,
          "training.weighted.weighting": weightings.WEIGHTINGS,
          "training.weighted.noise_levels": weightings.NOISE_LEVEL_DISTRIBUTIONS,
          "model.parameterization": parameterizations.PARAMETERIZATIONS,
          "model.noise_conditioning": parameterizations.NOISE_CONDITIONINGS,
          "controllable.mask": cg.MASKS}


def check(config):
  """Every key under the checked sections is one that something reads, every value with a
  domain lies in it, every name is in its registry, and the settings agree with each
  other and with the devices; else a one-line RunError."""
  for where, valid in keys().items():
    if (section := _get(config, where)) is not _ABSENT:
      _check_keys(where, section, valid)
  for key, registry in choices().items():
    if (name := _get(config, key)) is not _ABSENT and name not in registry:
      valid = list(registry) if isinstance(registry, tuple) else sorted(registry)
      raise RunError(f"unknown config.{key}={name!r}; valid choices: {valid}")
  lookup(sde_lib.SDES, config.sde.name.lower(), "config.sde.name")
  for name in (config.sampling.method, *config.eval.samplers):
    lookup(sampling.SAMPLERS, name, "config.sampling.method / config.eval.samplers entry")
  _check_keys("model", config.model, NETWORK_KEYS + tuple(
      f.name for f in dataclasses.fields(models.MODELS[config.model.name][1])))
  toy = config.data.dataset in datasets.TOY_DISTRIBUTIONS
  _check_keys("data", config.data, ("dataset", "num_eval") if toy else IMAGE_DATA_KEYS)
  for key, (valid, description) in {**DOMAINS, **_step_count_domains()}.items():
    if (value := _get(config, key)) is not _ABSENT and not valid(value):
      raise RunError(f"config.{key}={value!r}: must be {description}")
  _check_labels(config, labelled=not toy)
  _check_noise_levels(config)
  _check_consistency(config)
  _check_divisibility(config)


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


def _check_consistency(config):
  """A consistency loss trains an unconditional consistency function at the boundary time
  its sampler uses; distillation names its teacher's checkpoint; the held-out loss (a
  DSM-type loss's) is off."""
  t, m = config.training, config.model
  c, loss = t.consistency, f"config.training.loss={t.loss!r}"
  if m.parameterization == "consistency" and config.sampling.consistency.eps != c.eps:
    raise RunError(f"config.sampling.consistency.eps={config.sampling.consistency.eps} must "
                   f"equal the consistency boundary config.training.consistency.eps={c.eps}")
  if t.loss not in consistency.LOSSES:
    return
  needs = {"config.model.parameterization": (m.parameterization, "'consistency'"),
           "config.model.num_label_classes": (m.get("num_label_classes", 0), "0"),
           "config.eval.enable_loss": (config.eval.enable_loss, "False"),
           "config.training.eval_freq": (t.eval_freq, "0")}
  for key, (value, valid) in needs.items():
    if repr(value) != valid:
      raise RunError(f"{loss} needs {key}={valid}, got {value!r}")
  if t.loss == "consistency_distillation" and (not c.teacher_workdir
                                               or c.teacher_checkpoint_step < 0):
    raise RunError(f"{loss} needs a teacher: set config.training.consistency.teacher_workdir "
                   "(a trained run under this SDE) and its checkpoint_step (>= 0), got "
                   f"{c.teacher_workdir!r} and {c.teacher_checkpoint_step}")


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

