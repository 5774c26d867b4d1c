"""config -> Experiment, once: with main.py, the one place that reads a ConfigDict.

`build(config)` checks the config (configs/schema.py: every key, every value with a
domain, every registry name), reads each value once into run/experiment.py's specs,
builds the SDE, the network, the optimizer and the data, resolves the score functions
and jits the functions every mode uses.
"""
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections

import consistency
import controllable_generation as cg
import data as data_lib
import ema
import likelihood
import losses
import models
import sampling
import schedules
import sde_lib
import run
from configs import schema
from infra import mesh as mesh_lib
from infra import xla_cpu
from models import classifier as classifier_lib
from models import parameterizations
from run import experiment

P = jax.sharding.PartitionSpec


def build_sde(c) -> sde_lib.SDE:
  cls = sde_lib.SDES[c.name.lower()]
  return cls(N=c.num_scales, **{k: c[k] for k in schema.sde_keys(cls)})


def _network(m, sde: sde_lib.SDE, consistency_eps: float):
  """(the network, its score_fn(params, train, key, labels)) of a config.model section."""
  model = models.get_model(m.name, **{k: v for k, v in m.items()
                                      if k not in schema.NETWORK_KEYS})
  return model, parameterizations.network_score_fn(
      model, sde, parameterization=m.parameterization, scale_input=m.scale_input,
      noise_conditioning=m.noise_conditioning, sigma_data=m.sigma_data,
      center_input=m.get("center_input", False), consistency_eps=consistency_eps)


def _init_state(model, optimizer, example_shape, key) -> losses.TrainState:
  params = model.init(key, jnp.zeros((1, *example_shape)), jnp.zeros((1,)))
  return losses.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                           opt_state=optimizer.init(params), ema_params=params)


def _as_config(record):
  """A recorded config (JSON values: tuples became lists) as a ConfigDict."""
  tuples = lambda v: (tuple(map(tuples, v)) if isinstance(v, list) else
                      {k: tuples(w) for k, w in v.items()} if isinstance(v, dict) else v)
  return ml_collections.ConfigDict(tuples(record))


def _other_network(key: str, workdir: str, step: int, config, sde, mesh, example_shape,
                   missing: str) -> experiment.OtherNetwork:
  """The network of another workdir (config.<key> names it) as its config.json records it:
  any network, trained under this config's SDE; `missing` ends the error if it has none."""
  where = f"config.{key}={workdir!r}"
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise run.RunError(f"{where} holds no {missing}")
  with open(path) as f:
    record = json.load(f)
  if record["sde"] != json.loads(json.dumps(config.sde.to_dict())):
    raise run.RunError(f"{where} learned another process: its config.sde {record['sde']} "
                       f"differs from this config's {config.sde.to_dict()}")
  other = _as_config(record)
  model, score_fn = _network(other.model, sde, other.training.get("consistency", {}).get(
      "eps", config.training.consistency.eps))
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, *example_shape)),
                          jnp.zeros((1,)))
  return experiment.OtherNetwork(workdir, step, where, mesh_lib.abstract(mesh, shapes),
                                 score_fn)


def _others(config, sde, mesh, example_shape, shapes) -> dict:
  """{"teacher": consistency distillation's, "weak": autoguidance's}: OtherNetworks or
  None. A student that starts from its teacher (`shapes`: its parameters') needs a teacher
  of its network."""
  c, a = config.training.consistency, config.sampling.autoguidance
  teacher = config.training.loss == "consistency_distillation" and _other_network(
      "training.consistency.teacher_workdir", c.teacher_workdir, c.teacher_checkpoint_step,
      config, sde, mesh, example_shape, "trained run (no config.json): train the teacher there "
      "first")
  if teacher and c.init_student and jax.tree_util.tree_map(
      lambda a: a.shape, teacher.abstract_params) != jax.tree_util.tree_map(
          lambda a: a.shape, shapes):
    raise run.RunError("config.training.consistency.init_student=True needs a teacher of the "
                       f"student's network; {teacher.where} holds another")
  weak = a.workdir and _other_network(
      "sampling.autoguidance.workdir", a.workdir, a.checkpoint_step, config, sde, mesh,
      example_shape, "weak model (no config.json): train one there first")
  return {"teacher": teacher or None, "weak": weak or None}


def _specs(config) -> dict:
  """The loop settings of every mode, read once."""
  t, e, s, c = config.training, config.eval, config.sampling, config.classifier
  general = {k: v for k, v in s.to_dict().items() if k not in sampling.SAMPLERS
             and k != "num_samples"}
  folder = s.method + (f"_class{s.class_label}" if s.class_label >= 0 else "")
  folder += (f"_w{s.guidance_scale:g}" if s.guidance_scale else "") + (
      f"_classifier{s.classifier_scale:g}" if s.classifier_scale else "")
  folder += f"_ema{e.posthoc_sigma_rel:g}" if e.posthoc_sigma_rel else ""
  folder += f"_autoguided{s.autoguidance.weight:g}" if s.autoguidance.workdir else ""
  return dict(
      train=experiment.TrainSpec(
          t.batch_size, t.n_iters, t.n_jitted_steps, t.log_freq, t.snapshot_freq,
          t.snapshot_freq_for_preemption, t.eval_freq, tuple(t.posthoc_ema.sigma_rels),
          t.posthoc_ema.snapshot_freq, t.consistency.init_student),
      eval=experiment.EvalSpec(
          e.enable_loss, e.enable_likelihood, e.enable_sampling, e.num_loss_batches,
          e.batch_size, e.likelihood_points, e.bpd_repeats,
          None if e.checkpoint_step < 0 else e.checkpoint_step, e.posthoc_sigma_rel,
          tuple(e.samplers) or (s.method,), bool(e.samplers)),
      sampling=experiment.SampleSpec(
          s.method, s.batch_size, s.num_samples, s.class_label, s.classifier_scale,
          experiment.AutoguidanceSpec(**s.autoguidance) if s.autoguidance.workdir else None,
          folder, {name: {**general, name: s[name].to_dict()} for name in sampling.SAMPLERS}),
      controllable=experiment.ControllableSpec(**config.controllable),
      classifier=experiment.ClassifierSpec(**c, min_time=t.min_time, log_freq=t.log_freq))


def _objects(config, mesh) -> tuple[dict, dict]:
  """(the Experiment's fields but the jitted functions: the SDE, network, data, specs,
  optimizer, score functions; the parts `_jitted` compiles: the samplers as
  sampler(key, score_fn), the loss, EMA decay and likelihood)."""
  m, s, t = config.model, config.sampling, config.training
  e, num_classes = config.eval, m.get("num_label_classes", 0)
  sde = build_sde(config.sde)
  model, score_fn = _network(m, sde, t.consistency.eps)
  data = data_lib.get_data(seed=config.seed, feature_net=e.feature_net, fid=dict(
      fid_protocol=e.fid_protocol, fid_reference=e.fid_reference,
      fid_reference_size=e.fid_reference_size), **config.data.to_dict())
  others = _others(config, sde, mesh, data.example_shape, jax.eval_shape(
      model.init, jax.random.PRNGKey(0), jnp.zeros((1, *data.example_shape)), jnp.zeros((1,))))
  teacher = others["teacher"]
  net = classifier_lib.NoiseConditionalCNN(num_classes=config.classifier.num_classes)
  class_log_prob_fn = lambda params: cg.noise_conditional_log_prob(
      lambda x, c: net.apply({"params": params}, x, c), sde, m.sigma_data)
  specs = _specs(config)
  sampler_kwargs = {name: s[name].to_dict() for name in sampling.SAMPLERS}
  shape = (s.batch_size, *data.example_shape)
  return dict(
      sde=sde, model=model, data=data, mesh=mesh, num_label_classes=num_classes, **specs,
      optimizer=schedules.get_optimizer(**config.optim,
                                        posthoc_sigma_rels=t.posthoc_ema.sigma_rels),
      **others,
      sampler_kwargs=sampler_kwargs, score_fn=score_fn, class_log_prob_fn=class_log_prob_fn,
      sampling_score_fn=cg.sampling_score_fn(
          score_fn, s.class_label, class_log_prob_fn, s.autoguidance.weight,
          others["weak"] and others["weak"].score_fn,
          null_label=num_classes, guidance_scale=s.guidance_scale,
          interval=tuple(s.guidance_interval) or None, classifier_scale=s.classifier_scale),
  ), dict(
      samplers={name: sampling.SAMPLERS[name](sde, shape, **sampler_kwargs[name])
                for name in dict.fromkeys((s.method, *specs["eval"].samplers))},
      loss_fn=_loss_fn(config, model, sde, score_fn, teacher),
      targeted=t.loss in consistency.LOSSES,
      ema_decay=(functools.partial(_scheduled_target_rate, total_steps=t.n_iters)
                 if t.loss == "consistency_training" and t.consistency.schedule else
                 ema.decay_fn(m.ema_rate, m.ema_warmup, m.ema_sigma_rel)),
      loglik_fn=likelihood.get_likelihood_fn(sde, **e.likelihood))


def _scheduled_target_rate(step, total_steps: int):
  """mu(k) of consistency training's schedule (consistency.training_schedule)."""
  return consistency.training_schedule(step, total_steps)[1]


def _loss_fn(config, model, sde, score_fn, teacher):
  """The train step's loss: a multi-level (DSM-type) loss_fn(params, batch, key, train),
  or a consistency loss_fn(params, x0, key, target, teacher params, step)."""
  t, m = config.training, config.model
  if t.loss in consistency.LOSSES:
    c = t.consistency
    return consistency.get_loss_fn(
        t.loss, parameterizations.network_consistency_fn(
            model, sde, eps=c.eps, sigma_data=m.sigma_data,
            noise_conditioning=m.noise_conditioning),
        sde, teacher and teacher.score_fn, num_steps=c.num_steps, grid=c.grid, eps=c.eps,
        teacher=c.teacher, schedule_steps=t.n_iters if c.schedule else 0)
  return losses.get_loss_fn(losses.get_multi_level_loss(
      t.loss, reduce_mean=t.reduce_mean, objective=losses.Objective(
          t.objective, t.n_projections, t.trace_estimator), eps=t.min_time,
      sigma_data=m.sigma_data, likelihood_weighting=t.likelihood_weighting,
      importance_sampling=t.importance_sampling, weighted=t.weighted.to_dict()),
      score_fn, sde, m.get("num_label_classes", 0), t.label_dropout)


def _jitted(o: dict, parts: dict, n_jitted_steps: int, accumulation_steps: int) -> dict:
  """The Experiment's jitted functions (run/experiment.py) of `_objects`'s results."""
  mesh, model, optimizer, score_fn = o["mesh"], o["model"], o["optimizer"], o["score_fn"]
  replicated, split = (jax.sharding.NamedSharding(mesh, spec) for spec in (P(), P("data")))

  init_state = functools.partial(_init_state, model, optimizer, o["data"].example_shape)
  shapes = jax.eval_shape(init_state, jax.random.PRNGKey(0))
  state_sharding = mesh_lib.shardings(mesh, shapes)
  params_sharding = state_sharding.params
  teacher, weak, targeted = o["teacher"], o["weak"], parts["targeted"]
  frozen_sharding = replicated if teacher is None else jax.tree_util.tree_map(
      lambda a: a.sharding, teacher.abstract_params)
  weak_sharding = weak and jax.tree_util.tree_map(lambda a: a.sharding, weak.abstract_params)
  options, unroll = xla_cpu.compile_settings(
      jax.default_backend(), [p.shape for p in jax.tree_util.tree_leaves(shapes.params)],
      n_jitted_steps > 1 or accumulation_steps > 1)

  def jit_sampler(sampler):
    # Called with 2 to 5 arguments, so no in_shardings (it must name every one passed):
    # the parameters are laid out like the train state's inside (the weak model's like
    # its own).
    def sample(params, key, classifier_params=None, labels=None, weak_params=None):
      params = jax.lax.with_sharding_constraint(params, params_sharding)
      if weak_params is not None:
        weak_params = jax.lax.with_sharding_constraint(weak_params, weak_sharding)
      return sampler(key, o["sampling_score_fn"](params, classifier_params, labels,
                                                 weak_params))
    return jax.jit(sample, out_shardings=(split, replicated))

  return dict(
      abstract_state=mesh_lib.abstract(mesh, shapes),
      init_state=jax.jit(init_state, out_shardings=state_sharding, compiler_options=options),
      train_step=jax.jit(
          losses.get_train_step(parts["loss_fn"], optimizer, parts["ema_decay"], unroll=unroll,
                                accumulation_steps=accumulation_steps, targeted=targeted),
          in_shardings=(state_sharding, jax.sharding.NamedSharding(mesh, P(None, "data")),
                        replicated, frozen_sharding),
          out_shardings=(state_sharding, replicated), donate_argnums=(0,)),
      samplers={name: jit_sampler(sampler) for name, sampler in parts["samplers"].items()},
      log_likelihood=jax.jit(lambda params, key, x: parts["loglik_fn"](key, score_fn(params), x)[0],
                             in_shardings=(params_sharding, replicated, split),
                             out_shardings=split),
      eval_loss=None if targeted else jax.jit(
          lambda params, x0, key: parts["loss_fn"](params, x0, key, train=False),
          in_shardings=(params_sharding, split, replicated), out_shardings=replicated))


def build(config) -> experiment.Experiment:
  """Checks the config, reads it once, builds every object and jits every function."""
  schema.check(config)
  t = config.training
  try:
    objects, parts = _objects(config, mesh_lib.make_mesh(t.model_axis_size))
  except ValueError as error:
    raise run.RunError(str(error).splitlines()[0]) from None
  return experiment.Experiment(
      record=json.loads(json.dumps(config.to_dict())), seed=config.seed, **objects,
      **_jitted(objects, parts, t.n_jitted_steps, t.accumulation_steps))
