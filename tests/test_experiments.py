"""Every experiment runs end to end at a tiny size and writes its table and figure."""
import importlib
import os
import re

import jax
import numpy as np
import pytest

from experiments import common
from experiments import run_all


# Compile-bound smoke runs: all but the quickest in the slow tier (`make test-slow`).
FAST = {"r1_annealed_langevin", "r3_hyvarinen_consistency", "inpainting_bias"}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[] if name in FAST else pytest.mark.slow) for name in run_all.EXPERIMENTS])
def test_experiment_runs_at_tiny_size(name, tmp_path, request):
  flags = common.FLAGS
  if not flags.is_parsed():
    flags(["experiments"])
  module = importlib.import_module(f"experiments.{name}")        # defines its flags
  flags.quick, flags.outdir = True, str(tmp_path)
  if name == "fashion_mnist_table":      # trains its runs: the dataset and a feature net
    flags.data_dir = _data_dir_with_random_feature_net(request.getfixturevalue(
        "fashion_mnist_dir"), tmp_path)
    flags.runs_root = str(tmp_path / "runs")
  module.main(None)
  text = (tmp_path / f"{name}.md").read_text()
  assert (tmp_path / f"{name}.png").stat().st_size > 1000
  table_rows = [line for line in text.splitlines() if line.startswith("| ") and re.search(r"\d", line)]
  assert len(table_rows) >= 1 and "nan" not in text.lower()


def _data_dir_with_random_feature_net(fashion_mnist_dir, tmp_path) -> str:
  """The prepared dataset beside a random-weight feature net: the wiring is under test."""
  import feature_nets
  from models import classifier
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  os.symlink(os.path.join(fashion_mnist_dir, "fashion_mnist"), data_dir / "fashion_mnist")
  params = classifier.SmallCNN().init(jax.random.PRNGKey(0), np.zeros((1, 28, 28, 1)))["params"]
  feature_nets.save("fashion_mnist_cnn", str(data_dir), params, {"random": True})
  return str(data_dir)


def test_fashion_mnist_table_ranks_only_what_its_standard_errors_resolve():
  """Per sampler, the lowest-FID process is called resolved only if every gap exceeds twice
  the unpaired SE over training seeds; per process, the best sampler only if every paired
  per-network gap exceeds twice its SE. Hand-made cells: 3 networks, 2 sampling seeds."""
  from experiments import fashion_mnist_table as table
  def runs(fids):        # fids {sampler: [3 networks] of per-network FIDs}
    return [{(m, "fid"): [f[i] - 0.1, f[i] + 0.1] for m, f in fids.items()} for i in range(3)]
  results = {"vp": runs({"ddim": [30, 31, 32], "pc": [20, 21, 22]}),      # pc: paired gap 10 ± 0
             "rf": runs({"ddim": [26, 30, 34], "pc": [25, 29, 27]}),      # ddim: 30 ± 2.3
             "ve": runs({"ddim": [50, 51, 52], "pc": [40, 41, 42]})}
  fid = {p: {m: table.cell(r, m, "fid") for m in ("ddim", "pc")} for p, r in results.items()}
  np.testing.assert_allclose(fid["rf"]["ddim"]["se_train"], 4 / np.sqrt(3))
  np.testing.assert_allclose(fid["vp"]["ddim"]["se_sample"], np.sqrt(0.02 / 2))
  lines = table.conclusions(fid)
  # DDIM: rf 30 ± 2.31 against vp 31 ± 0.58 (gap SE hypot = 2.38) and ve 51.
  assert lines[0] == "DDIM eta 1: lowest FID rf; not resolved against vp (1.00 ± 2.38)."
  # PC: vp 21 against rf 27 ± 1.15 (gap 6 > 2 x 1.29) and ve 41.
  assert lines[1] == ("PC (reverse diffusion + Langevin): lowest FID vp; resolved: every gap "
                      "exceeds twice its SE.")
  assert lines[2] == ("vp: lowest FID with pc; resolved against every other sampler "
                      "(paired over training seeds).")
  # rf: ddim - pc per network = 1, 1, 7: 3 ± 2 (unpaired, 3 ± 2.31 would say the same).
  assert lines[3] == ("rf: lowest FID with pc; not resolved against ddim (3.00 ± 2.00) "
                      "(paired over training seeds).")
  assert lines[4].startswith("ve: lowest FID with pc; resolved")
  # The table's shape: the yardstick drawn with 3 sampling seeds, the other networks with
  # 1, and an unranked process with one training seed.
  results["vp"][0][("ddim", "fid")] = [29.0, 30.0, 31.0]
  for run in results["vp"][1:] + results["rf"]:
    run["ddim", "fid"] = run["ddim", "fid"][:1]
  results["ve"] = [{("ddim", "fid"): [30.5]}]
  ddim = {p: table.cell(r, "ddim", "fid") for p, r in results.items()}
  np.testing.assert_allclose(ddim["vp"]["se_sample"], np.sqrt(1.0 / 3.0))   # the yardstick's
  np.testing.assert_allclose(ddim["vp"]["mean"], (30.0 + 30.9 + 31.9) / 3)
  assert np.isnan(ddim["rf"]["se_sample"]) and np.isnan(ddim["ve"]["se_train"])
  assert table.conclusions({p: {"ddim": c} for p, c in ddim.items()}) == [
      "DDIM eta 1: lowest FID rf; not resolved against vp (1.03 ± 2.37). Not ranked (one "
      "training seed): ve."]
  ddim["ve"] = table.cell([{("ddim", "fid"): [20.0]}], "ddim", "fid")   # lowest, unranked
  assert table.conclusions({p: {"ddim": c} for p, c in ddim.items()})[0].startswith(
      "DDIM eta 1: lowest FID rf; not resolved against vp")


def _processes_results(gaps, mmd2=0.5e-3, **cells):
  """results[process, seed] for processes_gmm.conclusions: gaps {process: (seed 0, seed 1)},
  every MMD^2 `mmd2` except cells {"sampler/process/seed": value}."""
  from experiments import processes_gmm as pg
  results = {(p, s): {"nll_gap": gaps[p][s], "nll_gap_se": 0.003,
                      **{f"{m}/mmd2": mmd2 for m in pg.SAMPLERS}}
             for p in pg.PROCESSES for s in (0, 1)}
  for key, value in cells.items():
    sampler, process, seed = key.split("/")
    results[process, int(seed)][f"{sampler}/mmd2"] = value
  return results


def test_processes_gmm_conclusions_follow_the_numbers():
  """The page's findings are computed by their stated rules: VE's ODE at 5.39e-3 against
  exact samples' 1.02e-3 ± 0.77e-3 (5.7 sd) departs, and a process whose seeds both beat
  every other's is named better, one with the lowest mean but overlapping seeds is not; a
  typed paragraph would say the same whatever the numbers."""
  from experiments import processes_gmm as pg
  exact = {0: (0.11e-3, 0.44e-3), 1: (1.02e-3, 0.77e-3)}
  tied = {p: (0.010, 0.012) for p in pg.PROCESSES}
  text = pg.conclusions(_processes_results(tied, **{"ode/ve/1": 5.39e-3}), exact, (0, 1))
  assert "none is, at this budget" in text
  assert "49 of 50 cells agree" in text and "ode on ve, seed 1 (5.7 sd)" in text
  assert "Far departures" not in text.replace("No far departures", "")
  best = dict(tied, edm=(0.004, 0.005))
  text = pg.conclusions(_processes_results(best, **{"pc/subvp/0": 0.1, "pc/subvp/1": 0.1}),
                        exact, (0, 1))
  assert "edm is by that rule" in text and "50 of 50" not in text
  assert "Far departures (2)" in text and "PC's far departures on sub-VP" in text
  overlapping = dict(tied, edm=(0.004, 0.011))     # the lowest mean, not both seeds lower
  text = pg.conclusions(_processes_results(overlapping), exact, (0, 1))
  assert "none is, at this budget" in text, text


def test_q4_slopes_carry_the_paired_standard_error():
  """Per-draw values delta^2 u with the same draws u in every row: the slope is 2 with SE 0
  (an unpaired SE would add the rows' own ~7% SEs, ~0.07 here); a first row with a 26% SE
  gives the slope an SE of 0.26 / ln(delta ratio)."""
  from experiments import q4_score_accuracy as q4
  u = np.random.default_rng(0).exponential(size=200)
  assert q4.log_log_slopes([0.1, 1.0], [0.01 * u, u]) == ["-", "2.00 ± 0.00"]
  z = np.random.default_rng(1).normal(size=4000)
  noisy = 1.0 + 0.26 * np.sqrt(4000) * (z - z.mean()) / z.std(ddof=1)    # mean 1, SE 0.26
  slope, se = q4.log_log_slopes([0.03, 0.1], [noisy, np.full(4000, 10.0)])[1].split(" ± ")
  assert float(slope) == pytest.approx(np.log(10.0) / np.log(0.1 / 0.03), abs=0.01)
  assert float(se) == pytest.approx(0.26 / np.log(0.1 / 0.03), abs=0.01)


def test_q4_compares_the_ode_kl_with_the_bound_by_its_standard_errors():
  """Q4's delta = 1 row: ODE KL 10.5 ± 0.05 against the bound 10.9 ± 0.04 is below it, while
  0.279 ± 0.02 against 0.109 ± 0.0004 is above and 2.01 ± 0.04 against 1.98 ± 0.04 within."""
  from experiments import q4_score_accuracy as q4
  verdicts = q4.compare_to_bound([0.0, 0.1, 0.3, 1.0], [1e-4, 0.279, 2.01, 10.5],
                                 [1e-4, 0.02, 0.04, 0.05], [4e-6, 0.109, 1.98, 10.9],
                                 [6e-6, 4e-4, 0.04, 0.04])
  assert verdicts == [(0.1, "above"), (0.3, "within"), (1.0, "below")]
  assert q4.describe_comparison(verdicts) == ("above it at delta = 0.1 and within 2 SE of it at "
                                              "delta = 0.3 and below it at delta = 1")


def test_log_log_slope_propagates_relative_standard_errors():
  """Two points: slope = log(y2 / y1) / log(x2 / x1), SE = sqrt(r1^2 + r2^2) / log(x2 / x1)
  with r = SE(y) / y, the SE of log y; a third point on the line leaves the slope."""
  slope, se = common.log_log_slope([100, 10_000], [0.2, 0.02], [0.02, 0.001])
  assert slope == pytest.approx(-0.5) and se == pytest.approx(np.hypot(0.1, 0.05) / np.log(100))
  slope, _ = common.log_log_slope([100, 1000, 10_000], [0.2, 0.2 / np.sqrt(10), 0.02], [1, 1, 1])
  assert slope == pytest.approx(-0.5)


def test_q3_noise_scaling_says_how_constant_it_is():
  """Q3's D = 64 column, 0.00486-0.00876, is a 1.8-fold spread, reported as such."""
  from experiments import q3_dsm_noise
  column = dict(zip((0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
                    (0.00486, 0.00525, 0.00543, 0.00555, 0.00594, 0.00876)))
  text = q3_dsm_noise.noise_scaling({64: column})
  assert "x1.80 at D = 64 (0.00486-0.00876)" in text and "2500-fold" in text
  assert "x1.22 at D = 64 without sigma = 0.5" in text and "not constant" in text


def test_q3_conclusions_are_computed_from_the_numbers():
  """One D: plain DSM's error far above its bias and a flat control-variate error read as
  the page says; an error near the bias, or a control-variate error that grows with sigma,
  turns each verdict."""
  from experiments import q3_dsm_noise
  sigmas = (0.01, 0.05, 0.2, 0.5)
  bias = {(2, s): 0.25 * (s / 0.5) ** 4 for s in sigmas}
  noise = {(2, s, cv): (0.06 if cv else 0.14 * 2 / s**2) for s in sigmas for cv in (False, True)}
  error = {**{(2, s, False): e for s, e in zip(sigmas, (1.4, 0.51, 0.11, 0.29))},
           **{(2, s, True): e for s, e in zip(sigmas, (0.05, 0.06, 0.07, 0.30))}}
  text = q3_dsm_noise.conclusions(bias, error, noise, 0.05)
  assert "DSM's error is not its bias" in text and "best sigma is 0.2 " in text
  assert "the compromise disappears" in text and "0.05-0.07 for every sigma <= 0.2" in text
  near_bias = {**error, (2, 0.01, False): 5 * bias[(2, 0.01)]}
  assert "not clearly separated" in q3_dsm_noise.conclusions(bias, near_bias, noise, 0.05)
  growing = {**error, (2, 0.2, True): 0.2}
  assert "not flat in sigma" in q3_dsm_noise.conclusions(bias, growing, noise, 0.05)


def test_pc_corrector_failure_verdicts_follow_the_numbers():
  """A PC run 10 sd above its predictor, reproduced by the learned score below t = 0.1
  only, fails below 0.1; 2 sd above does not fail; a failure reproduced above 0.1 only is
  placed there."""
  from experiments import pc_corrector_failure as pc
  exact = {0: (0.1e-3, 0.5e-3)}
  def results(mmds):
    return {("VP, sigma^2", 0): ([0.1] * 4, 1.0, 0.05, [1e-3 * m for m in mmds])}
  text = pc.conclusions(results([5.0, 0.0, 0.3, 4.8]), exact)
  assert "PC fails on every seed" in text and "the failure lies below t = 0.1" in text
  assert "PC above it by 10.0 sd" in text
  assert "PC fails on no seed" in pc.conclusions(results([1.0, 0.0, 0.3, 4.8]), exact)
  assert "the failure lies above t = 0.1" in pc.conclusions(results([5.0, 0.0, 4.8, 0.3]), exact)


def test_q6_gap_is_resolved_only_outside_its_t_interval():
  """Three seeds whose gaps sit 3.5 SE from 0 are unresolved (the 95% t quantile with 2
  degrees of freedom is 4.3); 21 SE is resolved; one seed resolves nothing."""
  from experiments import q6_dae_vs_diffusion_energy as q6
  text = q6.gap_findings([0.6, 1.2], [[0.01, 0.02, 0.03], [0.011, 0.012, 0.013]])
  assert text == ("sigma 0.6: 0.02 ± 0.0058 nats, unresolved; "
                  "sigma 1.2: 0.012 ± 0.00058 nats, resolved")
  assert "unresolved" in q6.gap_findings([0.3], [[0.5]])


def test_autoguidance_reading_follows_the_numbers():
  """The autoguidance page's verdicts are computed: CFG 'shrinks the components' only when
  its variance ratio is more than 2 SE below 1, and one guidance 'comes closer to p' only
  when its best MMD^2 beats the other's by more than twice the SE of the difference."""
  from experiments import autoguidance as ag
  weights = (1.0, 2.0)

  def results(cfg_variance, ag_mmd2, cfg_mmd2):
    out = {}
    for main in ag.MAINS:
      for guidance in ag.GUIDANCES:
        for w in weights:
          out[main, guidance, w] = {"nll_gap": (0.0, 0.01), "entropy_gap": (0.0, 0.01),
                                    "variance_ratio": (1.0, 0.01), "weight_tv": (0.01, 0.005),
                                    "mmd2": (1e-3, 1e-4)}
    out["exact", "CFG", 2.0]["variance_ratio"] = cfg_variance
    out["imperfect", "autoguidance", 2.0]["mmd2"] = ag_mmd2
    out["imperfect", "CFG", 2.0]["mmd2"] = cfg_mmd2
    return out

  text = ag.reading(results((0.6, 0.01), (1e-4, 1e-4), (5e-4, 1e-4)), weights)
  assert "CFG shrinks the components too" in text
  assert "autoguidance comes closer to p" in text
  assert "at equal w autoguidance loses less variety" in text
  text = ag.reading(results((0.99, 0.01), (4e-4, 1e-4), (5e-4, 1e-4)), weights)
  assert "leaves the components' widths alone" in text
  assert "the two come equally close" in text
  text = ag.reading(results((0.99, 0.01), (9e-4, 1e-4), (2e-4, 1e-4)), weights)
  assert "CFG comes closer to p" in text
  # Quality at equal variety: CFG's entropy loss at w = 2 read off autoguidance's curve.
  equal = results((0.99, 0.01), (4e-4, 1e-4), (5e-4, 1e-4))
  equal["exact", "autoguidance", 2.0]["entropy_gap"] = (-1.0, 0.01)
  equal["exact", "autoguidance", 2.0]["nll_gap"] = (-1.0, 0.01)
  equal["exact", "CFG", 2.0]["entropy_gap"] = (-0.5, 0.01)
  equal["exact", "CFG", 2.0]["nll_gap"] = (0.2, 0.01)
  text = ag.reading(equal, weights)
  assert "NLL gap, interpolated along w, is -0.500 against CFG's +0.200" in text
  assert "autoguidance's samples sit higher under p" in text
  assert "at equal w autoguidance loses more variety" in text


def test_consistency_mixture_reading_follows_the_numbers():
  """The consistency page's mixture verdicts come from the numbers and their SEs."""
  from experiments import consistency_models as cm
  teacher = "teacher ODE (Heun, 40 steps)"
  means = {"exact draws": [(0.02, 0.01), (0.012, 0.002)], teacher: [(0.03, 0.01), (0.011, 0.002)],
           "student, 1 step": [(0.15, 0.01), (0.010, 0.002)],
           "student, 2 steps": [(0.04, 0.01), (0.030, 0.002)]}
  text = cm.mixture_reading(means)
  assert "not above exact draws' by more than twice the SE at 1 step(s): the weights kept" in text
  assert "lower under p than its teacher at 1 step(s)" in text
  means["student, 2 steps"] = [(0.04, 0.01), (0.002, 0.001)]     # below exact draws': kept
  assert "at 1 and 2 step(s): the weights kept" in cm.mixture_reading(means)
  means["student, 1 step"] = [(0.035, 0.01), (0.05, 0.002)]
  means["student, 2 steps"] = [(0.04, 0.01), (0.030, 0.002)]
  text = cm.mixture_reading(means)
  assert "more than twice the SE above exact draws' at both" in text
  assert "the students match their teacher within twice the SE" in text


def test_fashion_mnist_consistency_calls_only_gaps_beyond_twice_their_se():
  """Hand-made rows: a gap of 3 SE is called, one of 1.5 SE is not (a 1-SE rule would
  call it), and the direction is the sign of the gap."""
  from experiments import fashion_mnist_consistency as fc
  se_one = np.array([-1.0, 0.0, 1.0])               # SE of the mean: 1 / sqrt(3)
  rows = {name: {"fid": 50.0 + se_one} for name, *_ in fc.ROWS}
  se_gap = np.sqrt(2.0 / 3.0)
  rows["student, 1-step consistency"]["fid"] = 50.0 - 3.0 * se_gap + se_one
  rows["teacher, DDIM eta 1, 10 steps"]["fid"] = 50.0 - 4.5 * se_gap + se_one
  line = fc.conclusions(rows)[0]
  assert line.startswith("The 1-step student's FID is lower than (-2.45 ± 0.82) teacher's "
                         "denoiser, 1-step consistency sampler;"), line
  assert "not resolved from (+1.22 ± 0.82) teacher, DDIM eta 1, 10 steps" in line
  assert "lower than (-2.45 ± 0.82) teacher, DDIM eta 1, 20 steps" in line
  assert "not resolved from (+0.00" in fc.conclusions(rows)[1]


def test_fashion_mnist_autoguidance_verdicts_follow_the_numbers():
  """Hand-made rows (SE of each mean 1 / sqrt(3), of a gap 0.82): the best w's FID 3 SE
  below the unguided one is called lower, its recall 1.5 SE lower is not called (a 1-SE
  rule would call it a loss of variety), and the equal-NFE rival is compared too."""
  from experiments import fashion_mnist_autoguidance as fa
  se_one, gap_se = np.array([-1.0, 0.0, 1.0]), np.sqrt(2.0 / 3.0)

  def row(fid, recall):
    return {"fid": fid + se_one, "precision": 0.9 + 0.01 * se_one,
            "recall": recall + 0.01 * se_one}

  results = {("alone", 20): row(40.0, 0.60), ("alone", 40): row(40.0 - 4 * gap_se, 0.60),
             ("alone", 100): row(30.0, 0.70), ("weak at 800", 1.5): row(39.0, 0.60),
             ("weak at 800", 2.0): row(40.0 - 3 * gap_se, 0.60 - 0.015 * gap_se),
             ("weak at 800", 3.0): row(45.0, 0.50)}
  line = fa.conclusions(results)[0]
  assert "at w = 2 FID lower than (-2.45 ± 0.82), precision not resolved from" in line, line
  assert "recall not resolved from (-0.012 ± 0.008)" in line
  assert "at w = 3 FID higher than (+5.00 ± 0.82)" in line and "recall lower than" in line
  assert ("its lowest mean FID (w = 2) is lower than the main model's alone, with no "
          "resolved change of recall") in line
  assert "the w = 2 row's FID is not resolved from (+0.82 ± 0.82) it; against DDIM-100 " \
         "unguided it is higher than (+7.55 ± 0.82) it" in line
  results["weak at 800", 2.0] = row(40.0 - 3 * gap_se, 0.60 - 3 * 0.01 * gap_se)
  assert "and its recall is lower than the main model's" in fa.conclusions(results)[0]
  results["weak at 800", 2.0] = row(40.0 - 1.5 * gap_se, 0.60)
  assert "no w lowers FID below the main model's alone by more than twice the SE (best " \
         "mean at w = 2: not resolved from (-1.22 ± 0.82) it)" in fa.conclusions(results)[0]
