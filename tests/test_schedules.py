"""optim.schedule: each learning-rate schedule against its formula, written here from the
papers, and through the optimizer build.py makes, schedules.get_optimizer (Adam's first
update at a given step, in closed form)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import schedules
from configs import default_toy

LR, WARMUP, DECAY_STEPS, T_REF = 3e-3, 100, 1000, 400
STEPS = [0, 1, 50, 99, 100, 101, 250, 399, 400, 401, 700, 1099, 1100, 1101, 5000, 10**6]


def expected_rate(schedule, step):
  """The rate of step `step` (the optimizer's count), from the formulas."""
  if step < WARMUP:
    return LR * step / WARMUP
  if schedule == "constant":
    return LR
  if schedule == "cosine":
    progress = min(step - WARMUP, DECAY_STEPS) / DECAY_STEPS
    return LR * 0.5 * (1.0 + math.cos(math.pi * progress))
  return LR / math.sqrt(max(step / T_REF, 1.0))    # inverse_sqrt: EDM2 eq. 17


@pytest.mark.parametrize("schedule", sorted(schedules.SCHEDULES))
def test_each_schedule_follows_its_formula(schedule):
  rate = schedules.learning_rate(LR, WARMUP, schedule, DECAY_STEPS, T_REF)
  got = [float(rate(jnp.asarray(s))) for s in STEPS]
  np.testing.assert_allclose(got, [expected_rate(schedule, s) for s in STEPS], rtol=1e-6,
                             atol=1e-6 * LR)   # float32 near the cosine's zero


@pytest.mark.parametrize("schedule", sorted(schedules.SCHEDULES))
def test_the_built_optimizer_steps_at_the_scheduled_rate(schedule):
  """Adam's update from zero moments at count s: -lr(s) m_hat / (sqrt(v_hat) + eps), with
  m_hat = (1 - b1) g / (1 - b1^(s+1)), v_hat = (1 - b2) g^2 / (1 - b2^(s+1)) (optax's
  b2 = 0.999). The count lives in the optimizer state, so a resumed run takes up the curve
  where it stopped."""
  config = default_toy.get_default_configs()
  o = config.optim
  o.lr, o.warmup, o.schedule, o.decay_steps, o.t_ref = LR, WARMUP, schedule, DECAY_STEPS, T_REF
  o.grad_clip = 0.0
  optimizer = schedules.get_optimizer(**o)
  params = {"w": jnp.zeros(3)}
  grads = {"w": jnp.array([0.5, -2.0, 1e-3])}
  for step in (0, 150, 700, 1100, 3000):
    state = optax.tree_utils.tree_set(optimizer.init(params), count=jnp.asarray(step))
    updates, _ = optimizer.update(grads, state, params)
    g, b1, b2 = np.asarray(grads["w"], np.float64), o.beta1, 0.999
    m_hat = (1 - b1) * g / (1 - b1 ** (step + 1))
    v_hat = (1 - b2) * g**2 / (1 - b2 ** (step + 1))
    np.testing.assert_allclose(updates["w"], -expected_rate(schedule, step) * m_hat
                               / (np.sqrt(v_hat) + o.adam_eps), rtol=2e-5, atol=1e-6 * LR)
