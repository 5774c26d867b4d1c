"""The noise-conditional classifier p_t(c | x_t) of classifier guidance (Song et al., 2021,
Appendix I.1; Dhariwal & Nichol, 2021), trained for the run's SDE and kept in its workdir:

  python main.py --config configs/fashion_mnist/vp_ddpm_cpu.py --workdir runs/fmnist \
      --mode train_classifier
  python main.py --config configs/fashion_mnist/vp_ddpm_cpu.py --workdir runs/fmnist \
      --mode sample --config.sampling.class_label=7 --config.sampling.classifier_scale=1

Training draws (x_0, c) from the training split, t ~ U(training.min_time, T) and x_t ~
p_t(x_t | x_0), and minimizes the cross-entropy of c (classifier.n_iters steps of
classifier.batch_size, Adam with a cosine decay from classifier.lr). The network sees
c_in(t) x_t, c_in = 1 / sqrt(alpha^2 sigma_data^2 + sigma^2), and the log-SNR
log(alpha / sigma). Weights: <workdir>/classifier/params.msgpack (written atomically at
the end), with info.json beside (held-out accuracy against t).
"""
import json
import os

import flax.serialization
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

import feature_nets
from models import classifier as classifier_lib
import run
from run import checkpoints
from run import tasks

ACCURACY_TIMES = (0.05, 0.2, 0.4, 0.6, 0.8, 1.0)   # fractions of T for info.json


def network(exp) -> classifier_lib.NoiseConditionalCNN:
  return classifier_lib.NoiseConditionalCNN(num_classes=exp.config.classifier.num_classes)


def log_prob_fn(exp, params):
  """class_log_prob_fn(x [B, ...], t [B]) -> log p_t(c | x) [B, num_classes]."""
  net, sigma_data = network(exp), exp.config.model.sigma_data

  def class_log_prob(x, t):
    alpha, sigma = exp.sde.marginal(t)
    c_in = jax.lax.rsqrt(alpha**2 * sigma_data**2 + sigma**2)
    logits = net.apply({"params": params}, x * c_in[:, None, None, None], exp.sde.log_snr(t))
    return jax.nn.log_softmax(logits)

  return class_log_prob


def path(workdir: str) -> str:
  return os.path.join(workdir, "classifier", "params.msgpack")


def load(exp, workdir: str):
  """The trained classifier's parameters; a RunError naming the command if there are none."""
  if not os.path.exists(path(workdir)):
    raise run.RunError(f"no noise-conditional classifier at {path(workdir)} for "
                       f"config.sampling.classifier_scale={exp.config.sampling.classifier_scale}; "
                       f"train one with --mode train_classifier --workdir {workdir}")
  with open(path(workdir), "rb") as f:
    return jax.tree.map(jnp.asarray, flax.serialization.msgpack_restore(f.read()))


def _noisy(exp, key, x0):
  """(x_t, t) with t ~ U(min_time, T) per example and x_t ~ p_t(x_t | x_0)."""
  t_key, z_key = jax.random.split(key)
  t = jax.random.uniform(t_key, x0.shape[:1], minval=exp.config.training.min_time,
                         maxval=exp.sde.T)
  mean, std = exp.sde.marginal_prob(x0, t)
  return mean + std[:, None, None, None] * jax.random.normal(z_key, x0.shape), t


def held_out_accuracy(exp, params, key, times=ACCURACY_TIMES, batch_size=500) -> dict:
  """{t / T: accuracy of argmax p_t(c | x_t) on the held-out images, each noised once}."""
  if not isinstance(exp.task, tasks.ImageTask):
    raise run.RunError("a classifier needs labelled image data")
  log_prob = jax.jit(log_prob_fn(exp, params))
  images, labels = exp.task.held_out, exp.task.held_out_labels
  accuracy = {}
  for fraction in times:
    correct = 0
    for start in range(0, len(images), batch_size):
      x0 = jnp.asarray(images[start:start + batch_size])
      t = jnp.full(x0.shape[:1], fraction * exp.sde.T)
      mean, std = exp.sde.marginal_prob(x0, t)
      x = mean + std[:, None, None, None] * jax.random.normal(jax.random.fold_in(key, start),
                                                              x0.shape)
      predicted = np.argmax(np.asarray(log_prob(x, t)), axis=1)
      correct += int(np.sum(predicted == labels[start:start + batch_size]))
    accuracy[f"{fraction:g}"] = correct / len(images)
  return accuracy


def train_classifier(exp, workdir: str) -> dict:
  """Trains the classifier (see the module doc); returns its info dict."""
  checkpoints.check_workdir(workdir)
  c, seed = exp.config.classifier, exp.config.seed
  if not isinstance(exp.task, tasks.ImageTask):
    raise run.RunError(f"--mode train_classifier needs labelled image data; "
                       f"config.data.dataset={exp.config.data.dataset!r} has no labels")
  net = network(exp)
  key = jax.random.PRNGKey(seed + 50_000)
  params = jax.jit(net.init)(key, jnp.zeros((1, *exp.task.example_shape)), jnp.zeros((1,)))
  params = params["params"]
  optimizer = optax.adam(optax.cosine_decay_schedule(c.lr, c.n_iters))
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, x0, labels, key):
    x, t = _noisy(exp, key, x0)

    def loss_fn(p):
      return -jnp.mean(jnp.take_along_axis(log_prob_fn(exp, p)(x, t), labels[:, None], 1))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  batches = exp.task.train_batches(0, 1, c.batch_size, exp.sharding(None, "data"), labels=True)
  for i in range(c.n_iters):
    x0, labels = next(batches)
    params, opt_state, loss = step(params, opt_state, x0[0], labels[0], jax.random.fold_in(key, i))
    if (i + 1) % exp.config.training.log_freq == 0 or i + 1 == c.n_iters:
      logging.info("classifier step %d/%d  cross-entropy %.4f", i + 1, c.n_iters, float(loss))
  accuracy = held_out_accuracy(exp, params, jax.random.PRNGKey(seed + 50_001))
  info = {"held_out_accuracy_at_t_over_T": accuracy, "held_out_images": len(exp.task.held_out),
          **c.to_dict()}
  if jax.process_index() == 0:
    feature_nets.write_atomically(
        path(workdir), flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, params)))
    feature_nets.write_atomically(os.path.join(workdir, "classifier", "info.json"),
                                  json.dumps(info, indent=2).encode())
  logging.info("classifier: held-out accuracy against t / T: %s; wrote %s", accuracy,
               path(workdir))
  return info
