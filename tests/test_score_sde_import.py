"""Importing score_sde's checkpoints, offline: the data under tests/data/score_sde/ was
written by tools/score_sde_reference.py from score_sde's own code (its published parameter
trees, and tiny networks with their inputs and score_sde's scores)."""
import glob
import gzip
import json
import os

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import run
from configs import score_sde as score_sde_config
from infra import workdir as run_workdir
from run import build
from tools import import_score_sde
from tools import score_sde_port
from tools import verify_score_sde

DATA = os.path.join(os.path.dirname(__file__), "data", "score_sde")
REFERENCES = sorted(glob.glob(os.path.join(DATA, "*_tiny.npz")))
with gzip.open(os.path.join(DATA, "published_shapes.json.gz"), "rt") as f:
  PUBLISHED = json.load(f)


def _target(config):
  exp = build.build(config)
  return exp, jax.tree_util.tree_map(lambda a: a.shape, exp.abstract_state.params)


# One in the default tier; the other published configs in the slow tier.
DEFAULT_TIER = ("ve/cifar10_ncsnpp_continuous", "ve/ncsnv2/cifar10")


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in DEFAULT_TIER else
                                               pytest.mark.slow) for n in sorted(PUBLISHED)])
def test_every_published_tree_maps_leaf_for_leaf(name):
  """Each published ported config (continuous NCSN++ / DDPM++ / DDPM, discrete VE, NCSNv2):
  every score_sde leaf lands on one of ours with its shape, and none of ours is left empty
  (zero-stride stand-ins)."""
  _, target = _target(score_sde_config.get_config(name))
  theirs = score_sde_port.unflatten({k: np.broadcast_to(np.float32(0), v)
                                     for k, v in PUBLISHED[name].items()})
  converted = score_sde_port.flatten(score_sde_port.convert(theirs, target)["params"])
  assert len(converted) == len(PUBLISHED[name]) == len(score_sde_port.flatten(target["params"]))


# In the default tier: continuous VE NCSN++, NCSNv2, sub-VP DDPM, discrete VP DDPM; the
# others slow.
DEFAULT_REFERENCES = ("ve_cifar10_ncsnpp_continuous", "ve_ncsnv2_cifar10",
                      "subvp_cifar10_ddpm_continuous", "vp_ddpm_cifar10")
# The DDPM chain's networks: score_sde's float32 cumprod of 1 - beta_n is off by 9.6e-6
# (relative) in sqrt(1 - abar_10), the std at t = 0.01, which dominates the largest score
# (with score_sde's table the agreement is 6e-7-9e-7; docs/score_sde_port.md).
CHAIN_TOLERANCE = 3e-5


@pytest.mark.parametrize("reference", [
    pytest.param(r, marks=[] if os.path.basename(r)[:-len("_tiny.npz")] in DEFAULT_REFERENCES
                 else pytest.mark.slow) for r in REFERENCES], ids=os.path.basename)
def test_converted_networks_give_score_sdes_scores(reference):
  """score_sde's score function and ours on the converted parameters, at the same noisy
  images and times: VE NCSN++ (residual input pyramid), VP DDPM++, the 256 px VE NCSN++
  (input-skip and output-skip pyramids), sub-VP DDPM, NCSNv2, the discretely trained VE
  NCSN++ (at grid times; labels counting down) and the DDPM chain's DDPM / DDPM++ / DDPM
  without time embedding (std of level int(999 t) + 1), each shrunk."""
  result = verify_score_sde.compare(reference)
  chain = score_sde_config.get_config(result["config"]).sde.name == "ddpm_chain"
  assert result["max_abs_score"] > 1.0, result
  assert result["relative"] < (CHAIN_TOLERANCE if chain else 1e-5), result


@pytest.mark.slow
def test_the_chains_networks_need_the_chains_std():
  """The discrete VP DDPM divided by the VP SDE's sigma(t) instead of the chain's
  sqrt(1 - abar_n(t)) misses score_sde's scores by over 100 times the tolerance."""
  reference = os.path.join(DATA, "vp_ddpm_cifar10_tiny.npz")
  config = score_sde_config.get_config("vp/ddpm/cifar10,tiny")
  config.sde.name = "vpsde"
  result = verify_score_sde.compare(reference, config)
  assert result["relative"] > 100 * CHAIN_TOLERANCE, result


def _write_checkpoint(path, tree, step=7):
  state = {"step": step, "optimizer": {"target": tree, "state": {"step": step}},
           "lr": 2e-4, "model_state": {}, "ema_rate": 0.999, "params_ema": tree,
           "rng": np.zeros(2, np.uint32)}
  with open(path, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(state))


def _reference(name):
  with np.load(os.path.join(DATA, f"{name}_tiny.npz")) as ref:
    tree = score_sde_port.unflatten({k[len("param:"):]: ref[k] for k in ref.files
                                     if k.startswith("param:")})
    return tree, ref["x"], ref["t"], ref["score"]


@pytest.mark.parametrize("name, method, options", [
    pytest.param("ve/cifar10_ncsnpp_continuous", "ddim", dict(num_steps=3),
                 marks=pytest.mark.slow),     # ~30 s: keeps `make test` under 10 minutes
    pytest.param("vp/ddpm/cifar10", "pc", dict(num_steps=3), marks=pytest.mark.slow)])
def test_imported_checkpoint_restores_and_samples(tmp_path, name, method, options):
  """Import, restore, the scores of the reference, and the config's sampler (the discrete
  VP DDPM: ancestral steps on the DDPM chain, levels 1000, 500, 1 and the data)."""
  tree, x, t, score = _reference(name.replace("/", "_"))
  _write_checkpoint(tmp_path / "checkpoint_7", tree)
  config = score_sde_config.get_config(f"{name},tiny")
  workdir = str(tmp_path / "work")
  assert import_score_sde.import_checkpoint(str(tmp_path / "checkpoint_7"), config, workdir) == 7
  exp = build.build(config)
  state = run_workdir.load_state(exp, workdir)[0]
  assert int(state.step) == 7
  tolerance = CHAIN_TOLERANCE if config.sde.name == "ddpm_chain" else 1e-5
  np.testing.assert_allclose(exp.score_fn(state.ema_params)(x, t), score, rtol=1e-4,
                             atol=tolerance * np.abs(score).max())
  sampler = exp.make_sampler(method, (2, 16, 16, 3), **options)
  samples, nfe = jax.jit(sampler, static_argnums=1)(jax.random.PRNGKey(0),
                                                     exp.sampling_score_fn(state.ema_params))
  assert samples.shape == (2, 16, 16, 3) and bool(jnp.all(jnp.isfinite(samples))) and nfe > 0
  with open(os.path.join(workdir, "imported_from.json")) as f:
    assert json.load(f)["parameters"] == "params_ema"
  with pytest.raises(run.RunError, match="already has checkpoints"):
    import_score_sde.import_checkpoint(str(tmp_path / "checkpoint_7"), config, workdir)


def test_bad_checkpoints_are_one_line_errors(tmp_path):
  config = score_sde_config.get_config("vp/cifar10_ddpmpp_continuous,tiny")
  corrupt = tmp_path / "corrupt"
  corrupt.write_bytes(b"\x00not msgpack" * 10)
  not_score_sde = tmp_path / "other"
  not_score_sde.write_bytes(flax.serialization.msgpack_serialize({"weights": np.zeros(3)}))
  wrong_network = tmp_path / "ve_ncsnpp"
  _write_checkpoint(wrong_network, _reference("ve_cifar10_ncsnpp_continuous")[0])
  truncated_tree = _reference("vp_cifar10_ddpmpp_continuous")[0]
  del truncated_tree["Conv_0"]
  truncated = tmp_path / "truncated"
  _write_checkpoint(truncated, truncated_tree)
  for path, message in ((tmp_path / "missing", "no checkpoint file"),
                        (corrupt, "cannot read .* as a flax msgpack checkpoint"),
                        (not_score_sde, r"has no params_ema \(top-level keys: \['weights'\]\)"),
                        (wrong_network, "score_sde leaf .* target"),
                        (truncated, "no score_sde counterpart, e.g. 'Conv_0/")):
    with pytest.raises(run.RunError, match=message) as error:
      import_score_sde.import_checkpoint(str(path), config, str(tmp_path / "work"))
    assert "\n" not in str(error.value)
  assert not os.path.exists(tmp_path / "work" / "checkpoints") or not os.listdir(
      tmp_path / "work" / "checkpoints")


def test_unported_score_sde_configs_are_refused_by_name():
  for name in ("ve/ncsn/cifar10", "ve/ncsn/celeba_1245"):   # NCSN's lookup tables
    with pytest.raises(ValueError, match=f"'{name}': not ported"):
      score_sde_config.get_config(name)
  with pytest.raises(ValueError, match="variant 'huge'"):
    score_sde_config.get_config("ve/cifar10_ncsnpp_continuous,huge")
