"""Learning-rate schedules: a linear warmup from 0 to the peak rate over `warmup` steps,
then one of SCHEDULES. Each is a pure function of the optimizer step (optax's count), so a
resumed run continues on the same curve, and the rate comes from the config at every
start, never from a checkpoint.

After the warmup (s = the optimizer step, w = max(warmup, 1), lr = the peak rate):
  constant:      lr
  cosine:        lr (1 + cos(pi min(s - w, decay_steps) / decay_steps)) / 2, 0 from
                 w + decay_steps on (Loshchilov & Hutter, 2017, without restarts)
  inverse_sqrt:  lr / sqrt(max(s / t_ref, 1)) (EDM2, Karras et al., 2024, eq. 17 with
                 t_ref in optimizer steps: its t_ref images / the batch size)

`get_optimizer` is the optimizer of config.optim: Adam(W) with clipping at that rate.
"""
import jax.numpy as jnp
import optax

import ema


def _constant(lr, warmup, decay_steps, t_ref):
  del warmup, decay_steps, t_ref
  return optax.constant_schedule(lr)


def _cosine(lr, warmup, decay_steps, t_ref):
  del warmup, t_ref
  return optax.cosine_decay_schedule(lr, decay_steps)


def _inverse_sqrt(lr, warmup, decay_steps, t_ref):
  del decay_steps
  # optax.join_schedules hands the second schedule the steps since the warmup.
  return lambda since_warmup: lr / jnp.sqrt(jnp.maximum((since_warmup + warmup) / t_ref, 1.0))


SCHEDULES = {"constant": _constant, "cosine": _cosine, "inverse_sqrt": _inverse_sqrt}


def learning_rate(lr: float, warmup: int, schedule: str = "constant", decay_steps: int = 1,
                  t_ref: float = 1.0) -> optax.Schedule:
  """step -> learning rate: linear warmup to `lr` over max(warmup, 1) steps, then
  SCHEDULES[schedule] (module docstring)."""
  if schedule not in SCHEDULES:
    raise ValueError(f"unknown optim.schedule {schedule!r}; valid choices: {sorted(SCHEDULES)}")
  warmup = max(warmup, 1)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup),
       SCHEDULES[schedule](lr, warmup, decay_steps, t_ref)], [warmup])


def get_optimizer(lr: float, warmup: int, schedule: str, decay_steps: int, t_ref: float,
                  beta1: float, adam_eps: float, weight_decay: float, grad_clip: float,
                  posthoc_sigma_rels=()) -> optax.GradientTransformation:
  """Adam(W) with global-norm clipping (grad_clip > 0) at the rate of `learning_rate`,
  then the power EMAs of post-hoc EMA (ema.track_power_emas) if posthoc_sigma_rels."""
  optimizer = optax.adamw(learning_rate(lr, warmup, schedule, decay_steps, t_ref), b1=beta1,
                          eps=adam_eps, weight_decay=weight_decay)
  if grad_clip > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(grad_clip), optimizer)
  if posthoc_sigma_rels:
    optimizer = optax.chain(optimizer, ema.track_power_emas(
        tuple(ema.gamma_of_sigma_rel(s) for s in posthoc_sigma_rels)))
  return optimizer
