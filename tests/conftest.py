"""Test-wide settings: main.py's XLA:CPU kernels (infra/xla_cpu.py); a compilation cache
shared by the test workers and the main.py subprocesses they start; surface silent
broadcasting bugs; the real Fashion-MNIST, prepared once per test worker from the Debian
package (the tests that use it share one xdist group)."""
import os

from infra import xla_cpu

xla_cpu.choose_cpu_kernels()   # as main.py does, before JAX starts its backend
# Many tests compile the same programs (the toy configs, the tiny networks) in fresh
# closures or processes, which jax's in-memory cache does not share. Entries are keyed by
# the program, the compiler options, XLA_FLAGS and the jax version. JAX_COMPILATION_CACHE_DIR=
# (empty) turns it off.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

import datasets  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def fashion_mnist_dir(tmp_path_factory):
  if not os.path.exists(os.path.join(datasets.FASHION_MNIST_DEBIAN_DIR,
                                     "train-images-idx3-ubyte.gz")):
    pytest.skip("needs the Debian package: apt-get install -y dataset-fashion-mnist "
                "(.ci/run installs it)")
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  datasets.prepare_fashion_mnist(data_dir)
  return data_dir
