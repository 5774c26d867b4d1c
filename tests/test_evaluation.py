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


def _sqrt_psd(a):
  w, v = np.linalg.eigh(a)
  return (v * np.sqrt(np.maximum(w, 0.0))) @ v.T


def _random_covariance(rng, d):
  a = rng.normal(size=(d, d))
  return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_is_the_closed_form_for_non_commuting_covariances():
  # tr((S1 S2)^(1/2)) = tr((S1^(1/2) S2 S1^(1/2))^(1/2)); a product of separate square
  # roots, tr(S1^(1/2) S2^(1/2)), differs when S1 and S2 do not commute.
  rng = np.random.default_rng(0)
  d = 6
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = _random_covariance(rng, d), _random_covariance(rng, d)
  root1 = _sqrt_psd(s1)
  exact = (np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
           - 2 * np.trace(_sqrt_psd(root1 @ s2 @ root1)))
  np.testing.assert_allclose(evaluation.frechet_distance(mu1, s1, mu2, s2), exact, rtol=1e-9)
  wrong = exact + 2 * np.trace(_sqrt_psd(root1 @ s2 @ root1)) - 2 * np.trace(root1 @ _sqrt_psd(s2))
  assert abs(wrong - exact) > 1e-3 * exact     # the test would see that mistake
  # Diagonal covariances: sum of (sqrt a - sqrt b)^2.
  a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
  np.testing.assert_allclose(evaluation.frechet_distance(np.zeros(3), np.diag(a), np.ones(3),
                                                         np.diag(b)), 3.0 + 2.0, rtol=1e-12)


def test_frechet_distance_of_a_singular_covariance_to_itself_is_zero():
  rng = np.random.default_rng(1)
  features = rng.normal(size=(10, 50))       # rank 9 covariance in 50 dimensions
  mu, sigma = evaluation.feature_statistics(features)
  np.testing.assert_allclose(mu, features.mean(0))
  np.testing.assert_allclose(sigma, np.cov(features.T))
  fd = evaluation.frechet_distance(mu, sigma, mu, sigma)
  assert np.isfinite(fd) and abs(fd) < 1e-4 * np.trace(sigma)


def _cubic_kernel_mean(a, b):
  """E (u v + 1)^3 for independent u ~ N(a, 1), v ~ N(b, 1) (1-D features)."""
  return (a**3 + 3 * a) * (b**3 + 3 * b) + 3 * (1 + a**2) * (1 + b**2) + 3 * a * b + 1


def test_kernel_distance_is_unbiased_for_the_population_mmd():
  # 1-D Gaussian features, where MMD^2 with the kernel (uv + 1)^3 is known exactly.
  # 20 independent data sets give the mean estimate and its standard error.
  rng = np.random.default_rng(2)
  n = 500
  for shift in (0.0, 0.5):
    exact = (_cubic_kernel_mean(0, 0) + _cubic_kernel_mean(shift, shift)
             - 2 * _cubic_kernel_mean(0, shift))
    estimates = [evaluation.kernel_distance(rng.normal(size=(n, 1)),
                                            shift + rng.normal(size=(n, 1)),
                                            num_subsets=1, subset_size=n)[0]
                 for _ in range(20)]
    se = np.std(estimates, ddof=1) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates) - exact) < 4 * se, (shift, np.mean(estimates), exact, se)
  # The shift is resolved: exact MMD^2 at 0.5 is many standard errors from 0.
  assert exact > 8 * se, (exact, se)


def test_kernel_distance_subsets():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(300, 4))
  mean, std = evaluation.kernel_distance(x, x + 2.0, num_subsets=10, subset_size=100)
  assert mean > 0 and std > 0
  # Subsets larger than the sets use every row: one subset is then exact and repeatable.
  assert evaluation.kernel_distance(x, x, num_subsets=3, subset_size=10_000)[1] < 1e-12


def test_inception_score_exact_values():
  np.testing.assert_allclose(evaluation.inception_score(np.zeros((100, 10)), splits=4), (1.0, 0.0))
  confident = 50.0 * np.eye(10)[np.arange(200) % 10]
  np.testing.assert_allclose(evaluation.inception_score(confident, splits=4), (10.0, 0.0),
                             rtol=1e-9, atol=1e-9)
  # Half confident in class 0, half undecided between two classes: p(y) = (3/4, 1/4),
  # E KL = (log(4/3) + (log(2/3) + log 2) / 2) / 2.
  logits = np.concatenate([np.tile([50.0, 0.0], (50, 1)), np.zeros((50, 2))])
  exact = np.exp((np.log(4 / 3) + 0.5 * (np.log(2 / 3) + np.log(2.0))) / 2)
  np.testing.assert_allclose(evaluation.inception_score(logits, splits=1)[0], exact, rtol=1e-9)


def test_precision_recall_on_separated_clusters():
  rng = np.random.default_rng(4)
  cluster_a = rng.normal(size=(100, 3))
  cluster_b = 100.0 + rng.normal(size=(100, 3))
  real = np.concatenate([cluster_a, cluster_b])
  # Fake samples that cover only cluster A: all precise, half the real data recalled.
  assert evaluation.precision_recall(real, cluster_a, k=3) == (1.0, 0.5)
  # Real data plus 50 points far from everything: precision 200 / 250, full recall.
  outliers = -100.0 + rng.normal(size=(50, 3))
  assert evaluation.precision_recall(real, np.concatenate([real, outliers]), k=3) == (0.8, 1.0)
