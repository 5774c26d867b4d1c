"""benchmarks/time_to_quality.py: its statistics against exact values, its one-line flag
errors, and (slow tier) its --quick run end to end with both frameworks."""
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import time_to_quality as ttq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ratio_se_and_verdict_follow_the_delta_method_and_two_standard_errors():
  ratio, se = ttq.ratio_se((1.4, 0.1), (2.0, 0.2))
  assert ratio == pytest.approx(0.7)
  assert se == pytest.approx(0.7 * math.sqrt((0.1 / 1.4) ** 2 + (0.2 / 2.0) ** 2))
  assert ttq.mean_se([1.0, 2.0, 6.0]) == pytest.approx((3.0, math.sqrt(7.0 / 3.0)))
  assert math.isnan(ttq.mean_se([4.0])[1])
  assert ttq.verdict(0.59, 0.05) == "met"                     # 0.59 + 0.10 <= 0.7
  assert ttq.verdict(0.61, 0.05) == "unresolved (within 2 SE)"
  assert ttq.verdict(0.81, 0.05) == "not met"                 # 0.81 - 0.10 > 0.7
  assert ttq.verdict(0.79, 0.05) == "unresolved (within 2 SE)"
  assert ttq.verdict(0.6, math.nan) == "met (no SE)"


@pytest.mark.parametrize("flag, named", [
    ("--ours_samplers=ddim@100,euler@20", "--ours_samplers entry 'euler@20'"),
    ("--diffusers_samplers=ddpm@1", "--diffusers_samplers entry 'ddpm@1'"),
    ("--budgets_min=10,0", "--budgets_min 10,0"),
])
def test_bad_flags_stop_with_one_line_naming_the_value_and_the_choices(flag, named):
  result = subprocess.run([sys.executable, "-m", "benchmarks.time_to_quality", flag],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("time_to_quality: " + named), last
  assert ("['ddim', 'dpm_solver_2m']" in last or "['ddim', 'ddpm', 'dpm_solver']" in last
          or "distinct positive minutes" in last), last


def _rows(text: str, first_header: str) -> list:
  """The data rows of the markdown table whose header starts with first_header."""
  lines = text.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith("| " + first_header))
  rows = []
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    rows.append([cell.strip() for cell in line.strip("|").split("|")])
  return rows


def _mean_se(cell: str) -> tuple:
  mean, _, se = cell.partition(" ± ")
  return float(mean), float(se)


@pytest.mark.slow
def test_quick_run_trains_both_sides_samples_and_scores_them(fashion_mnist_dir, tmp_path):
  """--quick end to end (0.1 and 0.2 min per side, both in their own processes): the
  table has a row per budget, side and sampler; steps grow with the budget (the peer's
  cheap steps make at least one; ours may spend 0.2 min compiling on a loaded machine,
  so its count is only checked for consistency); every FID / KID is finite and positive
  with a finite SE; each ratio is recomputed from the first table's FIDs; the samples are
  uint8 [16, 28, 28, 1]."""
  pytest.importorskip("diffusers", reason="pip install -r requirements-test.txt")
  from tests.test_experiments import _data_dir_with_random_feature_net
  data_dir = _data_dir_with_random_feature_net(fashion_mnist_dir, tmp_path)
  outdir = tmp_path / "out"
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.time_to_quality", "--quick", f"--data_dir={data_dir}",
       f"--outdir={outdir}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  text = (outdir / "time_to_quality.md").read_text()
  assert (outdir / "time_to_quality.png").stat().st_size > 1000
  rows = _rows(text, "train min | side")
  samplers = {"ours": [("DDIM (eta 1)", 4), ("DPM-Solver++(2M)", 3)],
              "diffusers": [("DDPMScheduler", 4), ("DDIMScheduler (eta 0)", 3),
                            ("DPMSolverMultistepScheduler", 3)]}
  expected = [(f"{b:g}", side, name, nfe) for b in ttq.QUICK_BUDGETS_MIN for side in ttq.SIDES
              for name, nfe in samplers[side]]
  assert [(r[0], r[1], r[5], int(r[6])) for r in rows] == expected
  steps = {side: [int(r[2]) for r in rows if r[1] == side and r[5] == samplers[side][0][0]]
           for side in ttq.SIDES}
  for side, batch in (("ours", 64), ("diffusers", 16)):
    assert steps[side] == sorted(steps[side]), steps
    assert all(int(r[3]) == int(r[2]) * batch for r in rows if r[1] == side)
  assert steps["diffusers"][-1] >= 1, steps
  fid = {}
  for r in rows:
    for cell in (r[7], r[8]):
      mean, se = _mean_se(cell)
      assert math.isfinite(mean) and mean > 0 and math.isfinite(se) and se >= 0, r
    fid[r[0], r[1], r[6]] = fid.get((r[0], r[1], r[6]), []) + [_mean_se(r[7])]
  ratios = _rows(text, "train min | NFE")
  assert [(r[0], int(r[1])) for r in ratios] == [
      (f"{b:g}", n) for b in ttq.QUICK_BUDGETS_MIN for n in (4, 3)]
  for r in ratios:
    ours, theirs = (min(fid[r[0], side, r[1]]) for side in ttq.SIDES)
    assert _mean_se(r[4])[0] == pytest.approx(ours[0] / theirs[0], abs=2e-3), r
    assert r[5] in ("met", "not met", "unresolved (within 2 SE)"), r
  samples = sorted((outdir / "diffusers" / "samples").glob("*.npz"))
  assert len(samples) == 2 * 3 * 2
  with np.load(samples[0]) as f:
    assert f["arr_0"].dtype == np.uint8 and f["arr_0"].shape == (16, 28, 28, 1)
  assert re.search(r"\(254,725; benchmarks", text), text[:600]
