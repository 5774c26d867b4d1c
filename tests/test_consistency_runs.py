"""Consistency models through main.py's path (config.training.loss "consistency_distillation"
/ "consistency_training"): the train step hands the loss the EMA target, the teacher's
parameters and the step; the built loss is consistency.get_loss_fn's on the teacher's
checkpoint; a distillation run resumes exactly; bad settings are one line; and the toy
mixture distilled from the VP run samples the mixture in one step (slow tier)."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import consistency
import losses
import run
from configs.toy import cd_vp_gmm
from configs.toy import ct_vp_gmm
from configs.toy import vp_gmm
from infra import weights
from infra import workdir as wd
from models import parameterizations
from run import build
from run import evaluate
from run import train as run_train
from tests import test_sampling
from tests.test_training import final_params, shrink, train


def test_the_targeted_train_step_gives_the_loss_the_ema_the_frozen_input_and_the_step():
  """loss = <params, target> + frozen * step: its gradient is the EMA parameters (not the
  online ones) and its value carries the frozen input and the step, exactly."""
  loss_fn = lambda p, x0, key, target, frozen, step: jnp.sum(p * target) + frozen * step
  step_fn = losses.get_train_step(loss_fn, optax.sgd(1.0), lambda s: 0.5, targeted=True)
  params, ema = jnp.array([1.0, 2.0]), jnp.array([3.0, -1.0])
  state = losses.TrainState(step=jnp.array(3), params=params, opt_state=optax.sgd(1.0).init(
      params), ema_params=ema)
  state, metrics = step_fn(state, jnp.zeros((1, 4, 1)), jax.random.PRNGKey(0), frozen=10.0)
  np.testing.assert_allclose(metrics["loss"], 1.0 * 3.0 + 2.0 * -1.0 + 10.0 * 3)
  np.testing.assert_allclose(state.params, params - ema)
  np.testing.assert_allclose(state.ema_params, 0.5 * ema + 0.5 * (params - ema))


def _teacher(path, n_iters=10, **changes):
  config = shrink(vp_gmm.get_config(), n_iters=n_iters)
  config.update_from_flattened_dict(changes)
  train(config, path)
  return build.build(config)


def _student(teacher_workdir="", step=10, **changes):
  config = shrink(cd_vp_gmm.get_config(), n_iters=20)
  c = config.training.consistency
  c.teacher_workdir, c.teacher_checkpoint_step, c.num_steps = str(teacher_workdir), step, 8
  config.update_from_flattened_dict(changes)
  return config


@pytest.mark.slow        # 26 s: keeps `make test` under 10 minutes
def test_distillation_loss_is_the_papers_on_the_teachers_checkpoint_and_resumes(tmp_path):
  """The train step's loss at step 10 (target EMA != online parameters) equals
  consistency.get_loss_fn's, example by example with the step's keys, on the teacher's
  EMA parameters of its checkpoint; a run stopped at step 10 and resumed ends bit-identical
  to an uninterrupted one."""
  teacher_exp = _teacher(tmp_path / "teacher")
  config = _student(tmp_path / "teacher")
  train(config, tmp_path / "straight")
  config.training.n_iters = 10
  train(config, tmp_path / "resumed")
  config.training.n_iters = 20
  train(config, tmp_path / "resumed")
  straight, resumed = (final_params(tmp_path / name, config)[1]
                       for name in ("straight", "resumed"))
  assert all(np.array_equal(a, b) for a, b in zip(straight, resumed))

  exp = build.build(config)
  state, _ = wd.load_state(exp, str(tmp_path / "straight"), 10)
  assert not np.allclose(*(np.asarray(jax.tree_util.tree_leaves(p)[-2])
                           for p in (state.params, state.ema_params)))
  teacher = wd.load_state(teacher_exp, str(tmp_path / "teacher"), 10)[0].ema_params
  x0 = jnp.asarray(np.random.default_rng(0).normal(size=(1, 8, 2)), jnp.float32)
  key = jax.random.PRNGKey(7)
  c, m = config.training.consistency, config.model
  loss_fn = consistency.get_loss_fn(
      "consistency_distillation", parameterizations.network_consistency_fn(
          exp.model, exp.sde, eps=c.eps, sigma_data=m.sigma_data), exp.sde,
      teacher_exp.score_fn, num_steps=c.num_steps, grid=c.grid, eps=c.eps)
  step_key = jax.random.fold_in(key, 10)
  expected = np.mean([loss_fn(state.params, x0[0, i:i + 1], jax.random.fold_in(step_key, i),
                              state.ema_params, teacher, 10) for i in range(8)])
  _, metrics = exp.train_step(state, x0, key, weights.teacher_params(exp))   # donates state
  np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-5)


def test_a_student_that_starts_from_its_teacher_starts_from_copies_of_its_ema(tmp_path):
  """init_student: the step-0 state holds the teacher's EMA parameters as online and target
  parameters, in buffers of their own (the step donates the state's while the teacher's
  stay in use: training on is the check). The teacher's optimizer state is not the
  student's (it tracks power EMAs): only its parameters are read."""
  teacher_exp = _teacher(tmp_path / "teacher", **{
      "training.posthoc_ema.sigma_rels": (0.1,), "training.posthoc_ema.snapshot_freq": 10})
  exp = build.build(_student(tmp_path / "teacher", **{
      "training.consistency.init_student": True, "training.n_iters": 10}))
  teacher = weights.teacher_params(exp)
  state = run_train._initial_state(exp, teacher)      # pylint: disable=protected-access
  expected = wd.load_state(teacher_exp, str(tmp_path / "teacher"), 10)[0].ema_params
  for tree in (state.params, state.ema_params):
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, tree, expected))
    assert all(a is not b for a, b in zip(*map(jax.tree_util.tree_leaves, (tree, teacher))))
  state, history = run_train.train(exp, str(tmp_path / "student"))
  assert int(state.step) == 10 and np.isfinite(history[-1][1])


def test_scheduled_consistency_training_moves_its_target_at_the_papers_rate():
  """consistency_training with `schedule`: step k's target EMA rate is mu(k) of
  consistency.training_schedule (0.9938 at k = 1 of 20), not model.ema_rate's 0.95. (Step
  0 moves nothing: the learning rate's warmup starts at 0.)"""
  config = shrink(ct_vp_gmm.get_config(), n_iters=20)
  config.training.consistency.schedule = True
  config.optim.warmup = 1           # the full rate from step 1
  exp = build.build(config)
  state = exp.init_state(jax.random.PRNGKey(0))
  x0 = jnp.asarray(np.random.default_rng(0).normal(size=(1, 64, 2)), jnp.float32)
  state, _ = exp.train_step(state, x0, jax.random.PRNGKey(1), None)
  copy = lambda tree: jax.tree_util.tree_map(lambda a: np.array(a, copy=True), tree)
  target = copy(state.ema_params)                       # the step donates the state
  state, metrics = exp.train_step(state, x0, jax.random.PRNGKey(1), None)
  assert np.isfinite(float(metrics["loss"]))
  mu = float(consistency.training_schedule(1, 20)[1])
  assert abs(mu - 0.95) > 0.04
  expected = jax.tree_util.tree_map(lambda a, b: mu * a + (1 - mu) * b, target,
                                    copy(state.params))
  moved = [float(np.abs(a - b).max()) for a, b in zip(*map(
      jax.tree_util.tree_leaves, (target, copy(state.params))))]
  assert max(moved) > 1e-4
  for a, b in zip(*map(jax.tree_util.tree_leaves, (state.ema_params, expected))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_bad_consistency_settings_are_one_line(tmp_path):
  teacher = tmp_path / "teacher"
  _teacher(teacher)
  cases = [
      (_student(), r"consistency_distillation' needs a teacher: set .*teacher_workdir"),
      (_student(teacher, step=-1), r"needs a teacher: .* got .* and -1"),
      (_student(teacher, **{"model.parameterization": "edm"}),
       r"needs config.model.parameterization='consistency', got 'edm'"),
      (_student(teacher, **{"eval.enable_loss": True}), r"needs config.eval.enable_loss=False"),
      (_student(teacher, **{"sampling.consistency.eps": 2e-3}),
       r"sampling.consistency.eps=0.002 must equal .*training.consistency.eps=0.001"),
      (_student(teacher, **{"training.consistency.teacher": "euler"}),
       r"unknown config.training.consistency.teacher='euler'; valid choices: \['ddim', 'heun'\]"),
      (_student(tmp_path / "nowhere"), r"teacher_workdir=.*nowhere.* holds no trained run"),
      (_student(teacher, **{"sde.beta_max": 10.0}),
       r"teacher_workdir=.* learned another process: its config.sde"),
      (_student(teacher, **{"model.hidden": 16, "training.consistency.init_student": True}),
       r"init_student=True needs a teacher of the student's network; .* holds another"),
  ]
  for config, message in cases:
    with pytest.raises(run.RunError, match=message):
      build.build(config)
  with pytest.raises(run.RunError, match=r"the teacher of config.training.consistency.teacher_"
                                         r"workdir=.*: no readable .* at step 7; it keeps \[10\]"):
    weights.teacher_params(build.build(_student(teacher, step=7)))
  assert not os.path.exists(tmp_path / "nowhere")


@pytest.mark.slow
def test_a_distilled_toy_run_samples_the_mixture_in_one_step(tmp_path):
  """configs/toy/cd_vp_gmm.py as shipped (6000 steps) from configs/toy/vp_gmm.py's run:
  its 4000 one-step samples have the mixture's weights and component means within 4 SE,
  and an MMD^2 to fresh mixture draws within 6 null SDs (the student's model error: 3.2
  measured here, 2.1 after 12000 steps; the teacher's ODE samples -0.5). A 600-step student
  is measured at about 1000 null SDs: the test fails for an undertrained or miswired one."""
  teacher = vp_gmm.get_config()
  train(teacher, tmp_path / "vp_gmm")
  config = cd_vp_gmm.get_config()
  config.training.consistency.teacher_workdir = str(tmp_path / "vp_gmm")
  exp = build.build(config)
  run_train.train(exp, str(tmp_path / "cd"))
  out_dir = evaluate.sample(exp, str(tmp_path / "cd"))
  with np.load(os.path.join(out_dir, "samples.npz")) as saved:
    x = saved["arr_0"]
  test_sampling.assert_reproduces_the_mixture(x, "one-step distilled", mmd_null_sds=6.0)
