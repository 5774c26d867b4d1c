r"""Checks the port against score_sde's own code: converts the parameters of a reference
file written by tools/score_sde_reference.py and compares this codebase's score function
with score_sde's at the same noisy images and times.

  python -m tools.verify_score_sde --reference /tmp/ve_ncsnpp.npz

Prints the largest absolute difference of the scores, relative to their largest value.
"""
import json

from absl import app
from absl import flags
import jax
import numpy as np

from configs import score_sde as score_sde_config
from run import build
from tools import score_sde_port

FLAGS = flags.FLAGS


def compare(reference_path: str, config=None) -> dict:
  """{"config", "max_abs_diff", "max_abs_score", "relative"} of one reference file, with
  configs/score_sde.py's config of its network (or `config`, e.g. a wrong convention)."""
  with np.load(reference_path) as ref:
    info = json.loads(str(ref["info"]))
    theirs = score_sde_port.unflatten({k[len("param:"):]: ref[k] for k in ref.files
                                       if k.startswith("param:")})
    x, t, score = ref["x"], ref["t"], ref["score"]
  name = info["config"] + (",tiny" if info["tiny"] else "")
  exp = build.build(score_sde_config.get_config(name) if config is None else config)
  target = jax.tree_util.tree_map(lambda a: a.shape, exp.abstract_state.params)
  params = score_sde_port.convert(theirs, target)
  ours = np.asarray(jax.jit(exp.score_fn(params))(x, t))
  diff = float(np.abs(ours - score).max())
  scale = float(np.abs(score).max())
  return {"config": name, "max_abs_diff": diff, "max_abs_score": scale,
          "relative": diff / scale}


def main(_):
  result = compare(FLAGS.reference)
  print(json.dumps(result))


def define_flags():
  """The command's flags (defined only when it runs: importing this module defines none)."""
  flags.DEFINE_string("reference", None, "A .npz from tools/score_sde_reference.py.")
  flags.mark_flags_as_required(["reference"])


if __name__ == "__main__":
  define_flags()
  app.run(main)
