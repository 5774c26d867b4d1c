"""Monte-Carlo assertions: tolerances derived from the estimator's standard error."""
import numpy as np

Z = 4.0  # two-sided, p ~ 6e-5 per check: fixed seeds make each check deterministic


def standard_error(samples) -> float:
  samples = np.asarray(samples, np.float64)
  return float(np.std(samples, ddof=1) / np.sqrt(samples.shape[0]))


def assert_mean_close(samples, expected, z=Z, extra=0.0, what=""):
  """|mean(samples) - expected| <= z * SE + extra (extra: a stated deterministic bias bound)."""
  mean = float(np.mean(np.asarray(samples, np.float64)))
  se = standard_error(samples)
  assert abs(mean - expected) <= z * se + extra, (
      f"{what}: mean {mean:.6g} vs expected {expected:.6g} (SE {se:.3g}, z {z}, extra {extra})")
