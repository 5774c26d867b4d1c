"""Feature networks for sample-quality metrics, and the commands that make their weights.

  python -m feature_nets train --dataset fashion_mnist --data_dir data/tfds
  python -m feature_nets convert_inception --pth pt_inception-2015-12-05-6726825d.pth \
      --data_dir data/tfds

`train` fits the small CNN of models/classifier.py on a 28 x 28 dataset's training split
(a few minutes on 2 CPU cores) and states its test accuracy; `convert_inception` turns
pytorch-fid's Inception weights file into ours (it needs torch installed; nothing is
downloaded). Weights go to <data_dir>/feature_nets/<name>.msgpack, with a .json beside
(data_dir "": TFDS's default directory).
A network maps images [N, H, W, C] in [0, 1] to (features [N, D], logits [N, C]).
"""
import argparse
import dataclasses
import functools
import json
import os
import shlex
from typing import Callable, Optional

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

import datasets
from infra import files
from models import classifier
from models import inception

# name -> (the dataset it was trained on or None, its module)
FEATURE_NETS = {
    "fashion_mnist_cnn": ("fashion_mnist", classifier.SmallCNN()),
    "mnist_cnn": ("mnist", classifier.SmallCNN()),
    "inception": (None, inception.InceptionV3()),
}
DEFAULT_FOR_DATASET = {"fashion_mnist": "fashion_mnist_cnn", "mnist": "mnist_cnn"}
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"


def default_name(dataset: str) -> str:
  """The feature network of a dataset: its own classifier if it has one, else Inception."""
  return DEFAULT_FOR_DATASET.get(dataset, "inception")


def directory(data_dir: str) -> str:
  """<data_dir>/feature_nets, where weights and reference features live; data_dir "" is
  TFDS's default, as for the data ($TFDS_DATA_DIR, else ~/tensorflow_datasets)."""
  tfds_default = os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
  return os.path.join(data_dir or os.path.expanduser(tfds_default), "feature_nets")


def weights_path(name: str, data_dir: str) -> str:
  return os.path.join(directory(data_dir), f"{name}.msgpack")


def how_to_make(name: str, data_dir: str) -> str:
  if name == "inception":
    return (f"python -m feature_nets convert_inception --pth <path to {INCEPTION_FILE}> "
            f"--data_dir {shlex.quote(data_dir)}")
  return (f"python -m feature_nets train --dataset {FEATURE_NETS[name][0]} "
          f"--data_dir {shlex.quote(data_dir)}")


def check_available(name: str, data_dir: str):
  """Raises ValueError / FileNotFoundError (one line, naming the fix) unless `name` can load."""
  if name not in FEATURE_NETS:
    raise ValueError(f"unknown feature network {name!r}; valid choices: {sorted(FEATURE_NETS)}")
  path = weights_path(name, data_dir)
  if not os.path.exists(path):
    raise FileNotFoundError(f"feature network weights {path} not found; make them with: "
                            + how_to_make(name, data_dir))


@dataclasses.dataclass(frozen=True)
class FeatureNet:
  """A feature network with its weights; call it on images [N, H, W, C] in [0, 1]."""
  name: str
  apply: Callable        # jitted: (params, images [B, H, W, C]) -> (features, logits)
  params: dict
  batch_size: int = 100

  def __call__(self, images) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, D], logits [N, C]) as float64 numpy, in batches of batch_size (the
    last one padded, so one shape compiles)."""
    images = np.asarray(images, np.float32)
    features, logits = [], []
    for start in range(0, len(images), self.batch_size):
      batch = images[start:start + self.batch_size]
      padded = np.concatenate([batch, np.repeat(batch[-1:], self.batch_size - len(batch), 0)])
      f, l = self.apply(self.params, padded)
      features.append(np.asarray(f, np.float64)[:len(batch)])
      logits.append(np.asarray(l, np.float64)[:len(batch)])
    return np.concatenate(features), np.concatenate(logits)


def load(name: str, data_dir: str, batch_size: int = 100) -> FeatureNet:
  check_available(name, data_dir)
  module = FEATURE_NETS[name][1]
  with open(weights_path(name, data_dir), "rb") as f:
    params = flax.serialization.msgpack_restore(f.read())
  return FeatureNet(name, jax.jit(lambda p, x: module.apply({"params": p}, x)),
                    jax.tree.map(jnp.asarray, params), batch_size)


def save(name: str, data_dir: str, params, info: dict) -> str:
  path = weights_path(name, data_dir)
  weights = flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, params))
  files.write_atomically(path, weights)
  files.write_atomically(path[:-len(".msgpack")] + ".json", json.dumps(info, indent=2).encode())
  return path


def reference_features(net: FeatureNet, images_fn: Callable[[], np.ndarray], cache_path: str):
  """(features, logits) of a reference set (score_sde's `fid_stats`, with the features
  kept for KID and precision / recall): computed once by net(images_fn()), cached in
  cache_path (.npz, written atomically), read back afterwards."""
  if os.path.exists(cache_path):
    with np.load(cache_path) as cached:
      return cached["features"], cached["logits"]
  features, logits = net(images_fn())
  files.save_npz(cache_path, features=features, logits=logits)
  return features, logits


def train_classifier(dataset: str, data_dir: str, epochs: int = 4, batch_size: int = 128,
                     lr: float = 2e-3, seed: int = 0, log=print) -> dict:
  """Trains the SmallCNN feature network of `dataset` (28 x 28) with Adam and a cosine
  learning-rate decay, writes its weights, and returns {test_accuracy, ...}."""
  name = DEFAULT_FOR_DATASET.get(dataset)
  if name is None:
    raise ValueError(f"no feature network to train for dataset {dataset!r}; valid choices: "
                     f"{sorted(DEFAULT_FOR_DATASET)}")
  x_train, y_train = datasets.load_labelled(dataset, "train", 28, data_dir)
  x_test, y_test = datasets.load_labelled(dataset, "test", 28, data_dir)
  model = FEATURE_NETS[name][1]
  steps_per_epoch = len(x_train) // batch_size
  key = jax.random.PRNGKey(seed)

  def loss_fn(params, batch, key):
    x, y = batch
    logits = model.apply({"params": params}, x, train=True, rngs={"dropout": key})[1]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def batches():
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
      order = rng.permutation(len(x_train))
      for i in range(steps_per_epoch):
        rows = order[i * batch_size:(i + 1) * batch_size]
        yield x_train[rows], y_train[rows]

  params = classifier.fit(
      loss_fn, model.init(key, x_train[:1])["params"], batches(), epochs * steps_per_epoch, lr,
      key, steps_per_epoch,
      lambda step, loss: log(f"epoch {step // steps_per_epoch}/{epochs}: train loss {loss:.4f}"))
  net = FeatureNet(name, jax.jit(lambda p, x: model.apply({"params": p}, x)), params, 500)
  accuracy = float(np.mean(np.argmax(net(x_test)[1], 1) == y_test))
  info = {"dataset": dataset, "test_accuracy": accuracy, "test_images": len(y_test),
          "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}
  info["path"] = save(name, data_dir, params, info)
  log(f"{name}: test accuracy {accuracy:.4f} on {len(y_test)} images; wrote {info['path']}")
  return info


def inception_params_from_state_dict(state_dict: dict, bn_eps: float = 1e-3) -> dict:
  """pytorch-fid's Inception state dict (name -> numpy array) -> our parameter tree:
  conv kernels [O, I, kh, kw] -> [kh, kw, I, O], batch norm folded into scale / bias,
  fc transposed. Every tensor is used exactly once; a missing or leftover one raises."""
  state = {k: np.asarray(v, np.float32) for k, v in state_dict.items()
           if not k.endswith("num_batches_tracked")}
  abstract = jax.eval_shape(FEATURE_NETS["inception"][1].init, jax.random.PRNGKey(0),
                            jnp.zeros((1, 75, 75, 3)))["params"]
  used, params = set(), {}

  def take(key):
    if key not in state:
      raise KeyError(f"Inception weights lack {key!r}")
    used.add(key)
    return state[key]

  for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
    names = [p.key for p in path]
    prefix = ".".join(names[:-1])
    if names[-1] == "kernel" and names[-2] == "conv":
      value = take(prefix + ".weight").transpose(2, 3, 1, 0)
    elif names[-2] == "fc":
      value = take("fc.weight").T if names[-1] == "kernel" else take("fc.bias")
    else:
      bn = ".".join(names[:-1]) + ".bn."
      scale = take(bn + "weight") / np.sqrt(take(bn + "running_var") + bn_eps)
      value = scale if names[-1] == "scale" else take(bn + "bias") - take(bn + "running_mean") * scale
    if value.shape != leaf.shape:
      raise ValueError(f"{'.'.join(names)}: shape {value.shape}, expected {leaf.shape}")
    functools.reduce(lambda d, n: d.setdefault(n, {}), names[:-1], params)[names[-1]] = value
  leftover = sorted(set(state) - used)
  if leftover:
    raise ValueError(f"Inception weights have {len(leftover)} unused tensors, e.g. {leftover[0]!r}")
  return params


def convert_inception(pth: str, data_dir: str) -> str:
  if not os.path.exists(pth):
    raise FileNotFoundError(f"{pth} not found: pass pytorch-fid's {INCEPTION_FILE}")
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError("convert_inception reads a PyTorch file: pip install torch") from None
  loaded = torch.load(pth, map_location="cpu", weights_only=True)    # tensors only, no code
  state_dict = {k: v.numpy() for k, v in loaded.items()}
  return save("inception", data_dir, inception_params_from_state_dict(state_dict),
              {"source": os.path.basename(pth)})


def main(argv: Optional[list] = None):
  """The command line: train / convert_inception (see the module doc)."""
  parser = argparse.ArgumentParser(prog="python -m feature_nets")
  sub = parser.add_subparsers(dest="command", required=True)
  train = sub.add_parser("train", help="train a 28 x 28 dataset's classifier")
  train.add_argument("--dataset", required=True, choices=sorted(DEFAULT_FOR_DATASET))
  train.add_argument("--data_dir", required=True)
  train.add_argument("--epochs", type=int, default=4)
  train.add_argument("--seed", type=int, default=0)
  convert = sub.add_parser("convert_inception", help="convert pytorch-fid's Inception weights")
  convert.add_argument("--pth", required=True)
  convert.add_argument("--data_dir", required=True)
  args = parser.parse_args(argv)
  try:
    if args.command == "train":
      train_classifier(args.dataset, args.data_dir, args.epochs, seed=args.seed)
    else:
      print(f"wrote {convert_inception(args.pth, args.data_dir)}")
  except (FileNotFoundError, ValueError, KeyError, ImportError) as e:
    raise SystemExit(f"error: {str(e).splitlines()[0]}") from None


if __name__ == "__main__":
  main()
