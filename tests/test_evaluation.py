"""Garbage detectors against exact answers."""
import numpy as np

import evaluation


def test_nearest_distance_is_exact():
  ref = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
  x = np.array([[0.0, 1.0], [3.0, 5.0]])
  np.testing.assert_allclose(evaluation.nearest_distance(x, ref), [1.0, 1.0], atol=1e-5)
  np.testing.assert_allclose(evaluation.nearest_distance(ref, ref, leave_one_out=True),
                             [5.0, 5.0, np.sqrt(65.0)], rtol=1e-6)


def test_near_data_fraction_separates_data_from_noise():
  rng = np.random.default_rng(0)
  centres = rng.uniform(-1, 1, size=(50, 16))
  ref = np.repeat(centres, 20, axis=0) + 0.01 * rng.normal(size=(1000, 16))
  data_like = centres[rng.integers(0, 50, 200)] + 0.01 * rng.normal(size=(200, 16))
  noise = rng.normal(size=(200, 16))
  # Fresh draws of the same distribution exceed the reference's 99th percentile with
  # probability ~1%; noise lies ~1 away from every cluster of radius ~0.04.
  assert evaluation.near_data_fraction(data_like, ref) > 0.9
  assert evaluation.near_data_fraction(noise, ref) == 0.0
  mixed = np.concatenate([data_like[:150], noise[:50]])
  assert 0.9 * 0.75 < evaluation.near_data_fraction(mixed, ref) <= 0.75


def test_in_range_fraction_counts_samples_with_every_coordinate_inside():
  x = np.array([[0.0, 0.5], [1.2, 0.0], [-1.0, 1.0], [0.0, -1.01]])
  assert evaluation.in_range_fraction(x, -1.0, 1.0) == 0.5
