"""Every experiment runs end to end at a tiny size and writes its table and figure."""
import importlib
import re

import pytest

from experiments import common
from experiments import run_all


# Compile-bound smoke runs: all but the quickest in the slow tier (`make test-slow`).
FAST = {"r1_annealed_langevin", "r3_hyvarinen_consistency", "inpainting_bias"}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[] if name in FAST else pytest.mark.slow) for name in run_all.EXPERIMENTS])
def test_experiment_runs_at_tiny_size(name, tmp_path):
  flags = common.FLAGS
  if not flags.is_parsed():
    flags(["experiments"])
  flags.quick, flags.outdir = True, str(tmp_path)
  importlib.import_module(f"experiments.{name}").main(None)
  text = (tmp_path / f"{name}.md").read_text()
  assert (tmp_path / f"{name}.png").stat().st_size > 1000
  table_rows = [line for line in text.splitlines() if line.startswith("| ") and re.search(r"\d", line)]
  assert len(table_rows) >= 1 and "nan" not in text.lower()
