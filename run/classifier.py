"""--mode train_classifier: the noise-conditional classifier p_t(c | x_t) of classifier
guidance (Song et al., 2021, Appendix I.1; Dhariwal & Nichol, 2021), trained for the
run's SDE and kept in its workdir (commands: README, "Conditional and controllable
generation"). Training draws (x_0, c) from the training split and minimizes
controllable_generation.classifier_loss (t ~ U(training.min_time, T); classifier.n_iters
steps of classifier.batch_size, Adam with a cosine decay from classifier.lr); the network
sees x_t as controllable_generation.noise_conditional_log_prob states. Weights:
<workdir>/classifier/params.msgpack (written atomically at the end), with info.json
beside (held-out accuracy against t).
"""
import dataclasses
import json
import os

from absl import logging
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

import controllable_generation as cg
import run
from infra import weights
from infra import workdir as wd
from models import classifier as classifier_lib

ACCURACY_TIMES = (0.05, 0.2, 0.4, 0.6, 0.8, 1.0)   # fractions of T for info.json


def train_classifier(exp, workdir: str) -> dict:
  """Trains the classifier (see the module doc); returns its info dict."""
  c = exp.classifier
  if not exp.data.labelled:
    raise run.RunError("--mode train_classifier needs labelled image data; this config's "
                       "2-D data has no labels")
  with wd.open_for_writing(workdir, exp.record):
    net = classifier_lib.NoiseConditionalCNN(num_classes=c.num_classes)
    key = jax.random.PRNGKey(exp.seed + 50_000)
    params = jax.jit(net.init)(key, jnp.zeros((1, *exp.data.example_shape)), jnp.zeros((1,)))
    params = params["params"]

    def loss_fn(params, batch, key):     # batch: ([1, B, ...], [1, B]) (one step a call)
      return cg.classifier_loss(exp.class_log_prob_fn(params), exp.sde, batch[0][0],
                                batch[1][0], key, c.min_time)

    batches = exp.data.train_batches(0, 1, c.batch_size, exp.sharding(None, "data"), labels=True)
    params = classifier_lib.fit(
        loss_fn, params, batches, c.n_iters, c.lr, key, c.log_freq,
        lambda step, loss: logging.info("classifier step %d/%d  cross-entropy %.4f", step,
                                        c.n_iters, loss))
    accuracy = cg.classifier_accuracy(
        exp.class_log_prob_fn(params), exp.sde, jax.random.PRNGKey(exp.seed + 50_001),
        exp.data.held_out, exp.data.held_out_labels, ACCURACY_TIMES)
    info = {"held_out_accuracy_at_t_over_T": accuracy, "held_out_images": len(exp.data.held_out),
            **{k: v for k, v in dataclasses.asdict(c).items() if k not in ("min_time", "log_freq")}}
    if jax.process_index() == 0:
      wd.write_or_fail(weights.classifier_path(workdir), flax.serialization.msgpack_serialize(
          jax.tree.map(np.asarray, params)))
      wd.write_or_fail(os.path.join(workdir, "classifier", "info.json"),
                       json.dumps(info, indent=2).encode())
  logging.info("classifier: held-out accuracy against t / T: %s; wrote %s", accuracy,
               weights.classifier_path(workdir))
  return info
