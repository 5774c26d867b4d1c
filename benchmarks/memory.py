r"""Per-device memory of the big configs' train step, replicated vs sharded along 'model'.

For each config and model_axis_size m in (1, 2, 4, 8), on 8 fake CPU devices: the
Experiment's jitted train step is lowered and compiled against its abstract state (no
array is allocated, nothing runs), and XLA's memory analysis of the compiled per-device
program is read. (Compiled without LLVM's backend optimizations: they shape the machine
code, not XLA's buffer assignment, and take most of the 5 minutes a compile takes.) The batch is one example per 'data' shard (8 / m in all), so every
device's activations are those of one example whatever m. Columns, per device:

  state    params + Adam moments + EMA, from the train state's shardings (exact)
  args     the program's arguments (state, batch, key) as XLA lays them out
  temp     XLA's temporaries (activations, gradients, gathered weights)
  total    args + temp + outputs - outputs aliased to donated arguments

  python -m benchmarks.memory          # 12 compiles, ~30 min on 2 cores (deep CIFAR-10: ~5 each)
  python -m benchmarks.memory --configs configs/vp/cifar10_ddpmpp_deep_continuous.py
"""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8")

import importlib  # pylint: disable=g-import-not-at-top,wrong-import-position
import math  # pylint: disable=g-import-not-at-top,wrong-import-position
import time  # pylint: disable=g-import-not-at-top,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

from run import build  # pylint: disable=g-import-not-at-top,wrong-import-position

CONFIGS = ("configs/ve/celebahq_256_ncsnpp_continuous.py",
           "configs/ve/ffhq_256_ncsnpp_continuous.py",
           "configs/vp/cifar10_ddpmpp_deep_continuous.py")
flags.DEFINE_list("configs", list(CONFIGS), "config files")
flags.DEFINE_list("model_axis_sizes", ["1", "2", "4", "8"], "model_axis_size values")
FLAGS = flags.FLAGS

MIB = 2**20


def _config(path: str, model_axis_size: int):
  config = importlib.import_module(path[:-3].replace("/", ".")).get_config()
  t = config.training
  t.model_axis_size, t.n_jitted_steps, t.accumulation_steps = model_axis_size, 1, 1
  t.batch_size = jax.device_count() // model_axis_size        # one example per 'data' shard
  config.sampling.batch_size = config.eval.batch_size = t.batch_size
  t.log_freq = t.snapshot_freq = t.snapshot_freq_for_preemption = t.n_iters = 1
  t.eval_freq = 0
  config.eval.feature_net = ""
  return config


def _state_bytes_per_device(abstract_state) -> int:
  return sum(math.prod(s.sharding.shard_shape(s.shape)) * s.dtype.itemsize
             for s in jax.tree_util.tree_leaves(abstract_state))


def row(path: str, model_axis_size: int) -> dict:
  exp = build.build(_config(path, model_axis_size))
  batch = jax.ShapeDtypeStruct((1, exp.train.batch_size, *exp.data.example_shape), "float32",
                               sharding=exp.sharding(None, "data"))
  start = time.time()
  compiled = exp.train_step.lower(exp.abstract_state, batch, jax.random.PRNGKey(0), None).compile(
      compiler_options={"xla_backend_optimization_level": 0})    # LLVM's codegen: not memory
  m = compiled.memory_analysis()
  total = (m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes
           - m.alias_size_in_bytes)
  n_params = sum(x.size for x in jax.tree_util.tree_leaves(exp.abstract_state.params))
  return dict(config=os.path.basename(path)[:-3], m=model_axis_size, params=n_params,
              state=_state_bytes_per_device(exp.abstract_state) / MIB,
              args=m.argument_size_in_bytes / MIB, temp=m.temp_size_in_bytes / MIB,
              total=total / MIB, compile_s=time.time() - start)


def main(_):
  print("| config | params | model_axis_size | state MiB | args MiB | temp MiB | total MiB "
        "| state vs m=1 | compile s |", flush=True)
  print("|---|---|---|---|---|---|---|---|---|", flush=True)
  for path in FLAGS.configs:
    base = None
    for m in map(int, FLAGS.model_axis_sizes):
      r = row(path, m)
      base = base or r["state"]
      print(f"| {r['config']} | {r['params'] / 1e6:.1f}M | {m} | {r['state']:.0f} | "
            f"{r['args']:.0f} | {r['temp']:.0f} | {r['total']:.0f} | "
            f"{r['state'] / base:.3f} | {r['compile_s']:.0f} |", flush=True)


if __name__ == "__main__":
  app.run(main)
