"""Train / evaluate / sample drivers: the only module that knows about devices, hosts,
files and the config. Everything below it receives plain arguments.

Parallelism: one `('data',)` mesh over all devices of all processes; the train step is
jitted once with the state replicated and the global batch split along `data`.
Checkpoints (Orbax, synchronous, written atomically) live in <workdir>/checkpoints:
one every `snapshot_freq_for_preemption` steps (the last two kept), every multiple of
`snapshot_freq` kept for evaluation, and one on SIGTERM.
"""
import dataclasses
import json
import math
import os
import signal
import time
from typing import Any, Optional

from absl import logging
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
import orbax.checkpoint as ocp

import datasets
import evaluation
import likelihood
import losses
import metric_writer
import models
import sampling
import sde_lib
from models import utils as mutils

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

P = jax.sharding.PartitionSpec


class RunError(Exception):
  """A failure to report to the user in one line (bad input, non-finite loss, ...)."""


# --- Config -> plain objects. ----------------------------------------------------------

def build_sde(config) -> sde_lib.SDE:
  c = config.sde
  name = c.name.lower()
  params = {"vesde": dict(sigma_min=c.sigma_min, sigma_max=c.sigma_max),
            "vpsde": dict(beta_min=c.beta_min, beta_max=c.beta_max),
            "subvpsde": dict(beta_min=c.beta_min, beta_max=c.beta_max)}
  if name not in params:
    raise RunError(f"unknown SDE config.sde.name={c.name!r}; valid choices: {sorted(params)}")
  return sde_lib.get_sde(name, N=c.num_scales, T=c.T, **params[name])


def build_model(config):
  if config.model.name not in models.MODELS:
    raise RunError(f"unknown model config.model.name={config.model.name!r}; "
                   f"valid choices: {sorted(models.MODELS)}")
  _, config_class = models.MODELS[config.model.name]
  fields = {f.name: config.model[f.name] for f in dataclasses.fields(config_class)
            if f.name in config.model}
  return models.get_model(config.model.name, **fields)


def build_optimizer(config) -> optax.GradientTransformation:
  """Adam(W) with linear warmup to a constant rate and global-norm clipping. The rate
  comes from the config at every start, never from a checkpoint."""
  o = config.optim
  schedule = optax.join_schedules(
      [optax.linear_schedule(0.0, o.lr, max(o.warmup, 1)), optax.constant_schedule(o.lr)],
      [max(o.warmup, 1)])
  adam = optax.adamw(schedule, b1=o.beta1, eps=o.eps, weight_decay=o.weight_decay)
  return optax.chain(optax.clip_by_global_norm(o.grad_clip), adam) if o.grad_clip > 0 else adam


def build_score_fn(config, sde, model, params, apply_fn=None):
  m = config.model
  return mutils.get_score_fn(apply_fn or model.apply, params, sde, m.parameterization,
                             m.scale_input, m.noise_conditioning)


def build_loss_fn(config, sde, model, train=True):
  """loss_fn(params, x0, key) -> scalar, the configured multi-noise-level DSM loss. With
  `train`, the network runs in training mode (dropout keyed by fold_in(key, 1))."""
  t = config.training
  loss = losses.get_multi_level_loss(t.loss)
  kwargs = dict(reduce_mean=t.reduce_mean)
  if t.loss == "continuous":
    kwargs.update(likelihood_weighting=t.likelihood_weighting,
                  importance_sampling=t.importance_sampling, eps=t.eps)

  def loss_fn(params, x0, key):
    rngs = {"dropout": jax.random.fold_in(key, 1)}
    apply_fn = lambda p, x, c: model.apply(p, x, c, train=train, rngs=rngs)
    return loss(build_score_fn(config, sde, model, params, apply_fn), sde, x0, key, **kwargs)

  return loss_fn


def build_sampler(config, sde, shape):
  s = config.sampling
  if s.method == "pc":
    return sampling.get_pc_sampler(sde, shape, s.predictor, s.corrector, s.snr, s.n_steps_each,
                                   s.probability_flow, s.noise_removal, s.eps)
  if s.method == "ode":
    return sampling.get_ode_sampler(sde, shape, config.eval.rtol, config.eval.atol,
                                    s.noise_removal, s.eps)
  if s.method in sampling.FEW_STEP_SAMPLERS:
    return sampling.FEW_STEP_SAMPLERS[s.method](sde, shape, num_steps=s.num_steps, eps=s.eps,
                                                denoise=s.noise_removal)
  raise RunError(f"unknown config.sampling.method={s.method!r}; valid choices: "
                 f"{['ode', 'pc'] + sorted(sampling.FEW_STEP_SAMPLERS)}")


def validate(config):
  """Fails fast, in one line, on any bad name or inconsistent setting in the config."""
  sde = build_sde(config)
  try:
    build_model(config)
    if not is_image_data(config):
      datasets.get_toy_distribution(config.data.dataset)
    losses.get_multi_level_loss(config.training.loss)
    mutils.get_score_fn(None, None, None, config.model.parameterization,
                        noise_conditioning=config.model.noise_conditioning)
    build_sampler(config, sde, (2, 2))
    likelihood.get_likelihood_fn(sde, config.eval.hutchinson_type)
  except ValueError as e:
    raise RunError(str(e)) from None
  t = config.training
  for name in ("log_freq", "snapshot_freq", "snapshot_freq_for_preemption", "n_iters"):
    if t[name] % t.n_jitted_steps:
      raise RunError(f"config.training.{name}={t[name]} must be a multiple of "
                     f"config.training.n_jitted_steps={t.n_jitted_steps}")
  n_proc, n_dev = jax.process_count(), jax.device_count()
  if t.batch_size % n_dev:
    raise RunError(f"config.training.batch_size={t.batch_size} must be divisible by the "
                   f"{n_dev} devices ({n_proc} processes)")


# --- Devices and data. -----------------------------------------------------------------

def is_image_data(config) -> bool:
  """Whether config.data.dataset names an image dataset (else a 2-D toy one)."""
  name = config.data.dataset
  image = (name in datasets.TFDS_DATASETS or name.startswith("lsun/")
           or name.startswith("tfrecords:"))
  if not image and name not in datasets.TOY_DISTRIBUTIONS:
    raise RunError(f"unknown config.data.dataset={name!r}; valid choices: "
                   f"{sorted(datasets.TOY_DISTRIBUTIONS) + sorted(datasets.TFDS_DATASETS)}, "
                   "'lsun/<category>', 'tfrecords:<folder>'")
  return image


def data_shape(config) -> tuple[int, ...]:
  """The shape of one example: (S, S, C) for images, (D,) for toy data."""
  if is_image_data(config):
    d = config.data
    return (d.image_size, d.image_size, d.num_channels)
  sample = datasets.get_toy_distribution(config.data.dataset).sample(jax.random.PRNGKey(0), 1)
  return tuple(sample.shape[1:])


def _image_dataset(config, split, batch_size, train, **kwargs):
  d = config.data
  try:
    return datasets.get_image_dataset(
        d.dataset, split, batch_size, d.image_size, data_dir=d.data_dir or None, train=train,
        random_flip=d.random_flip, uniform_dequantization=d.uniform_dequantization, **kwargs)
  except (FileNotFoundError, ValueError) as e:
    raise RunError(str(e).splitlines()[0]) from None


def train_batches(config, step, sharding):
  """Yields the global [n_jitted_steps, batch_size, ...] batches for the optimizer steps
  from `step` on; a pure function of (config, step), so a resumed run sees the same data."""
  t = config.training
  if not is_image_data(config):
    sample_fn = jax.jit(datasets.get_toy_distribution(config.data.dataset).sample,
                        static_argnums=1)
    data_key = jax.random.split(jax.random.PRNGKey(config.seed + 1))[1]
    while True:
      yield global_batch(sample_fn, data_key, step, t.n_jitted_steps, t.batch_size, sharding)
      step += t.n_jitted_steps
  local = t.batch_size // jax.process_count()
  scaler = datasets.get_data_scaler(config.data.centered)
  split = datasets.TFDS_DATASETS.get(config.data.dataset, (None, "train"))[1]
  stream = _image_dataset(config, split, t.n_jitted_steps * local, True, seed=config.seed,
                          shard=(jax.process_index(), jax.process_count()),
                          skip_batches=step // t.n_jitted_steps)
  for batch in stream:
    rows = scaler(batch["image"]).reshape(t.n_jitted_steps, local, *batch["image"].shape[1:])
    yield jax.make_array_from_process_local_data(sharding, rows,
                                                 (t.n_jitted_steps, t.batch_size, *rows.shape[2:]))


def held_out_data(config) -> np.ndarray:
  """config.data.num_eval held-out examples in the model's data range: fresh toy samples,
  or the first images of the evaluation split (all processes see the same ones)."""
  if not is_image_data(config):
    distribution = datasets.get_toy_distribution(config.data.dataset)
    return np.asarray(distribution.sample(jax.random.PRNGKey(config.seed + 10_000),
                                          config.data.num_eval))
  split = datasets.TFDS_DATASETS.get(config.data.dataset, (None, None, "train"))[2]
  images, count = [], 0
  for batch in _image_dataset(config, split, 500, False):
    images.append(batch["image"])
    count += len(batch["image"])
    if count >= config.data.num_eval:
      break
  return np.asarray(datasets.get_data_scaler(config.data.centered)(
      np.concatenate(images)[:config.data.num_eval]))


def make_mesh():
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def global_batch(sample_fn, data_key, step, n_steps, batch_size, sharding):
  """The [n_steps, batch_size, D] batch for optimizer steps step..step+n_steps-1: each
  process draws its own rows from fold_in(fold_in(data_key, step), process_index)."""
  local = batch_size // jax.process_count()
  key = jax.random.fold_in(jax.random.fold_in(data_key, step), jax.process_index())
  rows = np.asarray(sample_fn(key, n_steps * local)).reshape(n_steps, local, -1)
  return jax.make_array_from_process_local_data(sharding, rows, (n_steps, batch_size, rows.shape[-1]))


def init_state(config, model, optimizer, shape, sharding):
  """Initializes the train state directly into `sharding` (no single-device copy first);
  `shape` is the shape of one example."""
  def init(key):
    params = model.init(key, jnp.zeros((1, *shape)), jnp.zeros((1,)))
    return losses.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                             opt_state=optimizer.init(params), ema_params=params)

  abstract = jax.eval_shape(init, jax.random.PRNGKey(0))
  shardings = jax.tree_util.tree_map(lambda _: sharding, abstract)
  return jax.jit(init, out_shardings=shardings)(jax.random.PRNGKey(config.seed))


# --- Checkpoints. ----------------------------------------------------------------------

def checkpoint_manager(workdir, config):
  t = config.training
  options = ocp.CheckpointManagerOptions(max_to_keep=2, keep_period=t.snapshot_freq,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options)


def save_checkpoint(manager, state):
  step = int(state.step)
  if step not in manager.all_steps():
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)), force=True)


def restore_latest(manager, abstract_state, step=None):
  """Restores the newest readable checkpoint (or `step`); an unreadable one is reported
  and the previous one tried. Returns (state or None, step or None)."""
  steps = sorted(manager.all_steps(), reverse=True) if step is None else [step]
  for candidate in steps:
    try:
      restored = manager.restore(candidate, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state)))
      return restored.state, candidate
    except Exception as e:  # pylint: disable=broad-except  (any corruption)
      logging.warning("checkpoint at step %d in %s is unreadable (%s: %s); falling back to "
                      "the previous one", candidate, manager.directory, type(e).__name__,
                      str(e).splitlines()[0][:200] if str(e) else "")
  return None, None


def check_workdir(workdir):
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{jax.process_index()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise RunError(f"workdir {workdir!r} is not writable: {e.strerror}") from None


# --- Training. -------------------------------------------------------------------------

class _Preemption:
  """Records SIGTERM so the loop can save and stop between steps."""

  def __init__(self):
    self.requested = False
    signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True


def _eta(seconds):
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train(config, workdir):
  """Trains (resuming from the newest readable checkpoint) and returns the final state
  and the logged [(step, loss)] of this invocation."""
  validate(config)
  check_workdir(workdir)
  t = config.training
  sde, model, optimizer = build_sde(config), build_model(config), build_optimizer(config)

  mesh = make_mesh()
  replicated = jax.sharding.NamedSharding(mesh, P())
  batch_sharding = jax.sharding.NamedSharding(mesh, P(None, "data"))
  state = init_state(config, model, optimizer, data_shape(config), replicated)
  manager = checkpoint_manager(workdir, config)
  restored, restored_step = restore_latest(manager, state)
  if restored is not None:
    state = restored
    logging.info("resumed from step %d", restored_step)

  train_step = jax.jit(
      losses.get_train_step(build_loss_fn(config, sde, model), optimizer, config.model.ema_rate),
      in_shardings=(replicated, batch_sharding, replicated), out_shardings=(replicated, replicated),
      donate_argnums=(0,))
  writer = metric_writer.MetricWriter(workdir, to_disk=jax.process_index() == 0)
  train_key = jax.random.split(jax.random.PRNGKey(config.seed + 1))[0]
  preemption = _Preemption()
  history = []
  step = int(state.step)
  batches = train_batches(config, step, batch_sharding)
  start_step, start_time = step, time.time()
  while step < t.n_iters:
    state, metrics = train_step(state, next(batches), train_key)
    loss = float(metrics["loss"])     # blocks on each call (and keeps collectives in step)
    step += t.n_jitted_steps
    if not math.isfinite(loss):
      last = manager.latest_step()
      where = (f"{manager.directory}/{last}" if last is not None else "none (no checkpoint yet)")
      raise RunError(f"non-finite loss {loss} at step {step}; last good checkpoint: {where}")
    history.append((step, loss))
    if step % t.log_freq == 0 or step == t.n_iters:
      rate = (step - start_step) / max(time.time() - start_time, 1e-9)
      writer.write_scalars(step, {"loss": loss, "steps_per_sec": rate})
      logging.info("step %d/%d  loss %.5f  %.1f steps/s  ETA %s", step, t.n_iters, loss, rate,
                   _eta((t.n_iters - step) / max(rate, 1e-9)))
    if (step % t.snapshot_freq_for_preemption == 0 or step % t.snapshot_freq == 0
        or step == t.n_iters or preemption.requested):
      save_checkpoint(manager, state)
    if preemption.requested:
      logging.warning("SIGTERM: saved the checkpoint of step %d in %s; stopping", step,
                      manager.directory)
      break
  writer.close()
  manager.wait_until_finished()
  return state, history


# --- Evaluation and sampling. ----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EvalSetup:
  sde: sde_lib.SDE
  model: Any
  held_out: np.ndarray                                  # [num_eval, ...], model data range
  distribution: Optional[datasets.ToyDistribution]      # None for images


def eval_setup(config) -> EvalSetup:
  distribution = None if is_image_data(config) else datasets.get_toy_distribution(
      config.data.dataset)
  return EvalSetup(build_sde(config), build_model(config), held_out_data(config), distribution)


def generate(config, setup, params, num_samples, key):
  sampler = build_sampler(config, setup.sde, (num_samples, *setup.held_out.shape[1:]))
  score_fn = build_score_fn(config, setup.sde, setup.model, params)
  x, nfe = jax.jit(lambda key: sampler(key, score_fn))(key)
  return np.asarray(x), int(nfe)


def log_likelihood(config, setup, params, x, key=None):
  e = config.eval
  loglik_fn = likelihood.get_likelihood_fn(setup.sde, e.hutchinson_type, e.rtol, e.atol,
                                           e.likelihood_eps)
  score_fn = build_score_fn(config, setup.sde, setup.model, params)
  key = jax.random.PRNGKey(0) if key is None else key
  logp, _, _ = jax.jit(lambda key, x: loglik_fn(key, score_fn, x))(key, x)
  return np.asarray(logp)


def _in_batches(fn, x, batch_size):
  return np.concatenate([fn(i, x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def image_bits_per_dim(config, setup, params, images):
  """Bits/dim [N] of images (model data range) under the probability-flow ODE, on
  uniformly dequantized pixels (likelihood.bits_per_dim states each term)."""
  inverse, scaler = (datasets.get_data_inverse_scaler(config.data.centered),
                     datasets.get_data_scaler(config.data.centered))
  pixels = np.round(np.asarray(inverse(images)) * 255.0)
  dim = int(np.prod(images.shape[1:]))
  log_det = dim * math.log(2.0) if config.data.centered else 0.0
  key = jax.random.PRNGKey(config.seed + 50_000)

  def bpd(i, batch):
    k_deq, k_div = jax.random.split(jax.random.fold_in(key, i))
    x = scaler(likelihood.dequantize(k_deq, jnp.asarray(batch)))
    return np.asarray(likelihood.bits_per_dim(log_likelihood(config, setup, params, x, k_div),
                                              dim, log_det))

  return _in_batches(bpd, pixels, config.eval.batch_size)


def evaluate_params(config, setup, params, step):
  """Held-out loss, NLL (nats; bits/dim for images) and sample metrics of one set of
  parameters."""
  e, metrics = config.eval, {"step": step}
  held_out = setup.held_out
  if e.enable_loss:
    loss_fn = jax.jit(build_loss_fn(config, setup.sde, setup.model, train=False))
    key = jax.random.PRNGKey(config.seed + 20_000)
    batch = min(e.batch_size, len(held_out))
    metrics["eval_loss"] = float(np.mean([
        loss_fn(params, held_out[(i * batch) % len(held_out):][:batch], jax.random.fold_in(key, i))
        for i in range(e.num_loss_batches)]))
  if e.enable_likelihood and setup.distribution is None:
    bpd = image_bits_per_dim(config, setup, params, held_out[:e.likelihood_points])
    metrics["bits_per_dim"] = float(bpd.mean())
    metrics["bits_per_dim_se"] = float(bpd.std(ddof=1) / math.sqrt(bpd.size))
  elif e.enable_likelihood:
    points = held_out[:e.likelihood_points]
    nll = -log_likelihood(config, setup, params, points)
    metrics["nll"] = float(nll.mean())
    metrics["nll_se"] = float(nll.std(ddof=1) / math.sqrt(nll.size))
    if setup.distribution.log_prob is not None:
      true_nll = -np.asarray(setup.distribution.log_prob(points))
      metrics["true_nll"] = float(true_nll.mean())
      gap = nll - true_nll      # paired: E gap = KL(p || model) >= 0
      metrics["nll_gap"] = float(gap.mean())
      metrics["nll_gap_se"] = float(gap.std(ddof=1) / math.sqrt(gap.size))
  if e.enable_sampling:
    n = min(config.sampling.num_samples, held_out.shape[0])
    x, nfe = generate(config, setup, params, n, jax.random.PRNGKey(config.seed + 30_000))
    metrics["nfe"] = nfe
    flat_x, flat_ref = jnp.asarray(x.reshape(n, -1)), jnp.asarray(held_out[:n].reshape(n, -1))
    metrics["sliced_wasserstein"] = float(evaluation.sliced_wasserstein(
        jax.random.PRNGKey(0), flat_x, flat_ref))
    if setup.distribution is None:
      metrics["sample_mean_abs_error"] = float(np.abs(x.mean(0) - held_out[:n].mean(0)).mean())
    else:
      metrics["mmd2"] = float(evaluation.mmd2_unbiased(flat_x, flat_ref))
    if setup.distribution is not None and setup.distribution.mixture is not None:
      means = np.asarray(setup.distribution.mixture.means)
      nearest = np.argmin(((x[:, None] - means[None]) ** 2).sum(-1), axis=1)
      metrics["weights"] = np.bincount(nearest, minlength=len(means)).astype(float) / n
      metrics["weights"] = [round(w, 4) for w in metrics["weights"].tolist()]
      metrics["true_weights"] = [round(w, 4) for w in
                                 np.asarray(setup.distribution.mixture.weights).tolist()]
  return metrics


def _abstract_state(config, setup):
  optimizer = build_optimizer(config)
  replicated = jax.sharding.NamedSharding(make_mesh(), P())
  return jax.eval_shape(lambda: init_state(config, setup.model, optimizer,
                                           setup.held_out.shape[1:], replicated))


def _restore_for_eval(config, workdir, setup, step=None):
  manager = checkpoint_manager(workdir, config)
  abstract = jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                     sharding=jax.sharding.NamedSharding(make_mesh(), P())),
      _abstract_state(config, setup))
  state, restored_step = restore_latest(manager, abstract, step)
  if state is None:
    raise RunError(f"no readable checkpoint in {manager.directory}"
                   + (f" at step {step}" if step is not None else "") + "; train first")
  return state, restored_step, manager


def evaluate(config, workdir):
  """Evaluates every kept snapshot not evaluated yet; appends to <workdir>/eval/metrics.jsonl."""
  validate(config)
  check_workdir(workdir)
  setup = eval_setup(config)
  manager = checkpoint_manager(workdir, config)
  path = os.path.join(workdir, "eval", "metrics.jsonl")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  done = set()
  if os.path.exists(path):
    with open(path) as f:
      done = {json.loads(line)["step"] for line in f if line.strip()}
  writer = metric_writer.MetricWriter(os.path.join(workdir, "eval"),
                                     to_disk=jax.process_index() == 0)
  results = []
  for step in sorted(manager.all_steps()):
    if step in done or (step % config.training.snapshot_freq and step != manager.latest_step()):
      continue
    state, _, _ = _restore_for_eval(config, workdir, setup, step)
    metrics = evaluate_params(config, setup, state.ema_params, step)
    logging.info("eval step %d: %s", step, metrics)
    writer.write_scalars(step, {k: v for k, v in metrics.items() if isinstance(v, float)})
    if jax.process_index() == 0:
      with open(path, "a") as f:
        f.write(json.dumps(metrics) + "\n")
    results.append(metrics)
  writer.close()
  return results


def image_grid(images: np.ndarray) -> np.ndarray:
  """[N, H, W, C] in [0, 1] -> one [rows H, cols W, C] image (cols = ceil(sqrt N)), 1 px
  white borders between tiles."""
  n, h, w, c = images.shape
  cols = math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  grid = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1, c), np.float32)
  for i, image in enumerate(np.clip(images, 0.0, 1.0)):
    r, col = divmod(i, cols)
    grid[r * (h + 1):r * (h + 1) + h, col * (w + 1):col * (w + 1) + w] = image
  return grid


def _save_samples_figure(config, x, title, path):
  if x.ndim == 4:
    grid = image_grid(np.asarray(datasets.get_data_inverse_scaler(config.data.centered)(x[:64])))
    plt.imsave(path, grid[..., 0] if grid.shape[-1] == 1 else grid,
               cmap="gray" if grid.shape[-1] == 1 else None, vmin=0.0, vmax=1.0)
    return
  fig, ax = plt.subplots(figsize=(5, 5))
  ax.scatter(*x[:, :2].T, s=1, alpha=0.5)
  ax.set_title(title)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)


def sample(config, workdir):
  """Writes config.sampling.num_samples samples of a checkpoint to <workdir>/samples/
  (.npz, and a .png: a scatter plot, or a grid of the first 64 images)."""
  validate(config)
  check_workdir(workdir)
  setup = eval_setup(config)
  step = None if config.eval.checkpoint_step < 0 else config.eval.checkpoint_step
  state, step, _ = _restore_for_eval(config, workdir, setup, step)
  x, nfe = generate(config, setup, state.ema_params, config.sampling.num_samples,
                    jax.random.PRNGKey(config.seed + 40_000))
  out = os.path.join(workdir, "samples")
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, f"samples_{step}.npz")
  if jax.process_index() == 0:
    np.savez(path, samples=x, nfe=nfe, step=step)
    _save_samples_figure(config, x, f"{config.sampling.method} samples, step {step}, NFE {nfe}",
                         os.path.join(out, f"samples_{step}.png"))
  logging.info("wrote %d samples (NFE %d) to %s", x.shape[0], nfe, path)
  return path


def report(config, workdir, state):
  """The train_eval outputs: <workdir>/metrics.json and <workdir>/report.png (2-D data:
  held-out data, samples, learned and true density; images: a grid of 64 samples)."""
  setup = eval_setup(config)
  params = state.ema_params
  metrics = evaluate_params(config, setup, params, int(state.step))
  if setup.distribution is None:
    x, _ = generate(config, setup, params, 64, jax.random.PRNGKey(config.seed + 30_000))
    if jax.process_index() == 0:
      _save_samples_figure(config, x, "", os.path.join(workdir, "report.png"))
  else:
    _toy_report_figure(config, setup, params, workdir)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
      json.dump(metrics, f, indent=2)
  logging.info("metrics: %s", json.dumps(metrics))
  return metrics


def _toy_report_figure(config, setup, params, workdir):
  x, _ = generate(config, setup, params, min(config.sampling.num_samples, 4000),
                  jax.random.PRNGKey(config.seed + 30_000))
  lim = float(np.abs(setup.held_out).max()) * 1.15
  axis = np.linspace(-lim, lim, 64)
  grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2).astype(np.float32)
  learned = log_likelihood(config, setup, params, jnp.asarray(grid)).reshape(64, 64)
  panels = [("held-out data", setup.held_out), ("samples", x), ("learned density", learned)]
  if setup.distribution.log_prob is not None:
    panels.append(("true density", np.asarray(setup.distribution.log_prob(jnp.asarray(grid))).reshape(64, 64)))
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
  for ax, (title, values) in zip(axes, panels):
    if values.ndim == 2 and values.shape[1] == 2:
      ax.scatter(*np.asarray(values[:4000]).T, s=1, alpha=0.4)
      ax.set_xlim(-lim, lim)
      ax.set_ylim(-lim, lim)
    else:
      ax.imshow(np.exp(values), origin="lower", extent=(-lim, lim, -lim, lim), cmap="viridis")
    ax.set_title(title)
  if jax.process_index() == 0:
    fig.savefig(os.path.join(workdir, "report.png"), dpi=110, bbox_inches="tight")
  plt.close(fig)
