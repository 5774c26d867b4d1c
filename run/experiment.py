"""The Experiment: everything a mode needs, as plain values, small frozen specs and
functions jitted once (each takes parameters as an argument, so evaluating many
checkpoints compiles each once). run/build.py makes it; nothing reads a config after.

  train_step(state, batch [n_jitted_steps, B, ...], key, frozen) -> (state, {"loss"})
    (frozen: consistency distillation's teacher parameters, infra/weights.teacher_params;
    None for every other loss)
  samplers[name](params, key, classifier_params=None, labels=None, weak_params=None) ->
    (x [sampling batch, ...], nfe), split over all devices; `sample` is the configured one
    (weak_params: the autoguiding model's, infra/weights.weak_params)
  log_likelihood(params, key, x [eval batch, ...]) -> logp [eval batch] (nats)
  eval_loss(params, x0 [eval batch, ...], key) -> scalar (network in eval mode; None for
    the consistency losses, whose target is not the evaluated network)
  (a class-conditional network's batches are (x0, labels [B]) pairs)
"""
import dataclasses
from typing import Any, Callable

import jax
import optax

import sampling
import sde_lib

P = jax.sharding.PartitionSpec


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """config.training's loop settings (steps and frequencies in optimizer steps)."""
  batch_size: int
  n_iters: int
  n_jitted_steps: int
  log_freq: int
  snapshot_freq: int                 # checkpoints kept for evaluation
  preemption_freq: int               # overwritten, the last two kept
  eval_freq: int                     # 0: off
  posthoc_sigma_rels: tuple          # power EMAs stored for post-hoc EMA; (): none
  posthoc_freq: int
  init_student: bool                 # a consistency student starts from its teacher


@dataclasses.dataclass(frozen=True)
class EvalSpec:
  """config.eval: what --mode eval / train_eval measure and on which parameters."""
  enable_loss: bool
  enable_likelihood: bool
  enable_sampling: bool
  num_loss_batches: int
  batch_size: int
  likelihood_points: int
  bpd_repeats: int
  checkpoint_step: int | None        # --mode sample / inpaint / colorize; None: the latest
  posthoc_sigma_rel: float           # > 0: the post-hoc EMA of this width; 0: the EMA
  samplers: tuple                    # sampler names (never empty)
  named_metrics: bool                # sample metrics named "<sampler>/<metric>"


@dataclasses.dataclass(frozen=True)
class AutoguidanceSpec:
  """config.sampling.autoguidance: the weak model's workdir and checkpoint, and w."""
  workdir: str
  checkpoint_step: int               # -1: the latest
  weight: float


@dataclasses.dataclass(frozen=True)
class SampleSpec:
  """config.sampling: the chosen sampler, rounds, class and guidance."""
  method: str
  batch_size: int
  num_samples: int
  class_label: int                   # -1: unconditional
  classifier_scale: float            # > 0: classifier guidance (needs the classifier)
  autoguidance: AutoguidanceSpec | None   # None: off
  folder: str                        # --mode sample's folder name under samples/step_<s>/
  settings: dict                     # name -> the settings that determine its samples


@dataclasses.dataclass(frozen=True)
class ControllableSpec:
  """config.controllable (the PC sampler it constrains: sampler_kwargs["pc"])."""
  mask: str
  method: str
  resamplings: int


@dataclasses.dataclass(frozen=True)
class ClassifierSpec:
  """config.classifier: the noise-conditional classifier of classifier guidance."""
  num_classes: int
  n_iters: int
  batch_size: int
  lr: float
  min_time: float
  log_freq: int


@dataclasses.dataclass(frozen=True)
class OtherNetwork:
  """The network of another trained run, as its config.json records it: consistency
  distillation's teacher, autoguidance's weak model."""
  workdir: str
  checkpoint_step: int               # -1: the latest
  where: str                         # the setting that names it, for error messages
  abstract_params: Any               # its parameters' shapes, laid out on this mesh
  score_fn: Callable                 # (params, train=False, key=None, labels=None) -> s(x, t)


@dataclasses.dataclass(frozen=True)
class Experiment:
  record: dict                       # the config as JSON values, recorded in the workdir
  seed: int
  sde: sde_lib.SDE
  model: Any
  optimizer: optax.GradientTransformation
  teacher: OtherNetwork | None       # consistency distillation's; else None
  weak: OtherNetwork | None          # autoguidance's weak model; else None
  data: Any                          # data.py: ToyData or ImageData
  mesh: jax.sharding.Mesh
  num_label_classes: int             # > 0: class-conditional (the null label); else 0
  train: TrainSpec
  eval: EvalSpec
  sampling: SampleSpec
  controllable: ControllableSpec
  classifier: ClassifierSpec
  sampler_kwargs: dict               # sampler name -> its factory's settings
  abstract_state: Any                # the train state's shapes, dtypes and shardings
  init_state: Callable               # key -> the step-0 train state (jitted)
  score_fn: Callable                 # (params, train=False, key=None, labels=None) -> s(x, t)
  sampling_score_fn: Callable        # (params, classifier_params=None, labels=None,
                                     #  weak_params=None) -> s(x, t)
  class_log_prob_fn: Callable        # classifier params -> log p_t(c | x) [B, classes]
  train_step: Callable
  samplers: dict
  log_likelihood: Callable
  eval_loss: Callable | None

  @property
  def sample(self) -> Callable:
    """The configured sampler's sample(params, key, ...) -> (x, nfe)."""
    return self.samplers[self.sampling.method]

  def sharding(self, *spec) -> jax.sharding.NamedSharding:
    return jax.sharding.NamedSharding(self.mesh, P(*spec))

  def make_sampler(self, method: str, shape, **overrides):
    """sampler(key, score_fn) of `sampling.SAMPLERS[method]` for x of `shape`, with the
    config's settings of that sampler updated by `overrides`."""
    return sampling.SAMPLERS[method](self.sde, shape, **{**self.sampler_kwargs[method],
                                                          **overrides})
