"""Test-wide settings: main.py's XLA:CPU kernels (infra/xla_cpu.py); surface silent
broadcasting bugs; the real Fashion-MNIST, prepared once per test worker from the Debian
package (the tests that use it share one xdist group)."""
import os

from infra import xla_cpu

xla_cpu.choose_cpu_kernels()   # as main.py does, before JAX starts its backend

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
