r"""DDPM U-Net train step: this Flax model against PyTorch `diffusers.UNet2DModel`, same
architecture, same run, alternating the two.

Both are the CIFAR-10 DDPM (Ho et al., 2020): channels nf x (1, 2, 2, 2), 2 residual
blocks per level, single-head attention at 16 x 16, GroupNorm(32), SiLU, positional time
embedding, dropout 0. Their parameter counts are checked equal (35,746,307 at nf = 128,
8,952,067 at nf = 64) before anything is timed. One train step = epsilon-prediction MSE
at random timesteps, backward, Adam update (Flax: plus the EMA of the train state).

On the CPU each framework runs in a worker process of its own (--isolate), still alternated
step by step: in one process each slowed the other (benchmarks/README.md). The torch peer
runs in channels-last memory format, its faster CPU layout.

Reported per width: images/s of each framework, the median of the per-pair ratios
(JAX / torch), achieved GFLOP/s (model FLOPs from XLA's cost analysis of the Flax step,
the same count credited to torch), that as a fraction of a float32 matmul peak measured
in the same run, compile time, and XLA's memory estimate (on a GPU, the device's peak).

  python -m benchmarks.unet                          # CPU, both widths
  python -m benchmarks.unet --host_devices 2         # the CPU cores as 2 sharded devices
  python -m benchmarks.unet --project_kernels        # XLA:CPU kernels as main.py chooses them
  python -m benchmarks.unet --mode sample --steps 10 # DDIM sampling vs diffusers' DDIMScheduler
  python -m benchmarks.unet --mode memory            # peak resident memory of each train step
  python -m benchmarks.unet --dtype bfloat16 --remat --batch_full 128 --batch_half 256  # GPU
  python -m benchmarks.unet --mode sample --dtype bfloat16 --torch_autocast_bf16  # both bf16
  python -m benchmarks.unet --torch_device cuda ...  # the peer on the GPU (accelerator.sh)

torch and diffusers are benchmark-only dependencies: pip install -r benchmarks/requirements.txt
"""
import json
import os
import resource
import subprocess
import sys

from infra import xla_cpu   # this benchmark keeps jax's default kernels unless --project_kernels


def _set_xla_flags():
  """--host_devices N and --project_kernels must reach XLA before jax is imported."""
  for i, arg in enumerate(sys.argv):
    value = arg.split("=", 1)[1] if arg.startswith("--host_devices=") else (
        sys.argv[i + 1] if arg == "--host_devices" and i + 1 < len(sys.argv) else None)
    if value and int(value) > 1:
      os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                 + f" --xla_force_host_platform_device_count={value}")
    if arg in ("--project_kernels", "--project_kernels=true"):
      xla_cpu.choose_cpu_kernels()


_set_xla_flags()

import time  # pylint: disable=g-import-not-at-top,wrong-import-position

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import optax  # pylint: disable=g-import-not-at-top,wrong-import-position

import ema  # pylint: disable=g-import-not-at-top,wrong-import-position
import losses  # pylint: disable=g-import-not-at-top,wrong-import-position
import models  # pylint: disable=g-import-not-at-top,wrong-import-position
import sampling  # pylint: disable=g-import-not-at-top,wrong-import-position
import sde_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from models import ddpm  # pylint: disable=g-import-not-at-top,wrong-import-position
from models import parameterizations  # pylint: disable=g-import-not-at-top,wrong-import-position
from tools import torch_peers  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_integer("host_devices", 1, "CPU only: split the host into N XLA devices "
                     "(data-parallel over a ('data',) mesh).")
flags.DEFINE_bool("project_kernels", False, "CPU only: XLA:CPU kernels as main.py chooses "
                  "them (infra/xla_cpu.py: " + xla_cpu.CPU_KERNELS + ") instead of jax's default.")
flags.DEFINE_enum("mode", "train", ["train", "sample", "memory"], "train: one train step; "
                  "sample: DDIM sampling (--steps network calls) against diffusers' "
                  "DDIMScheduler loop; memory: peak resident memory of each framework's train "
                  "step, each in a fresh process.")
flags.DEFINE_enum("memory_of", None, ["flax", "torch"], "Internal (--mode memory): measure "
                  "this framework's train step in this process.")
flags.DEFINE_enum("worker", None, ["flax", "torch"], "Internal (--isolate): build this "
                  "framework's step or sampler here and run it on each line read from stdin.")
flags.DEFINE_bool("isolate", True, "CPU: each framework in its own worker process, still "
                  "alternated step by step. In one process each slowed the other: torch's "
                  "train step ran 14 % and Flax's 6 % slower there than alone.")
flags.DEFINE_bool("torch_channels_last", True, "Run the torch peer in channels-last memory "
                  "format (its faster CPU layout: the half-width forward at batch 64 in 1241 vs "
                  "1466 ms).")
flags.DEFINE_integer("steps", 10, "Sampling steps (network evaluations) in --mode sample.")
flags.DEFINE_integer("batch_sample", 64, "Batch of --mode sample (both widths).")
flags.DEFINE_integer("batch_full", 8, "Batch of the full-width (nf 128) model.")
flags.DEFINE_integer("batch_half", 32, "Batch of the half-width (nf 64) model.")
flags.DEFINE_integer("pairs", 5, "Timed (JAX, torch) pairs per width; the median is reported.")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Flax compute dtype.")
flags.DEFINE_bool("remat", False, "Flax: rematerialize each residual block.")
flags.DEFINE_bool("torch", True, "Time the diffusers peer (needs torch and diffusers).")
flags.DEFINE_enum("torch_device", "cpu", ["cpu", "cuda"], "Where the torch peer runs "
                  "(cuda: the GPU that jax uses too; benchmarks/accelerator.sh).")
flags.DEFINE_bool("torch_autocast_bf16", False, "Run the torch peer under torch.autocast "
                  "with bfloat16 (float32 parameters): the precision of --dtype bfloat16.")
flags.DEFINE_list("widths", ["64", "128"], "Model widths nf to run (64: half, 128: full).")
FLAGS = flags.FLAGS

CHANNEL_MULT = (1, 2, 2, 2)
EXPECTED_PARAMS = {128: 35_746_307, 64: 8_952_067}


def matmul_peak_gflops(n=2048, repeats=5):
  """Achieved float32 GFLOP/s of an n x n matmul on the default device (best of repeats)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  best = min(_wall(lambda: f(a).block_until_ready()) for _ in range(repeats))
  return 2 * n**3 / best / 1e9


def _wall(fn):
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


class FlaxStep:
  """The Flax DDPM train step, jitted with the batch split over all devices."""

  def __init__(self, nf, batch):
    self.model = ddpm.DDPM(ddpm.DDPMConfig(nf=nf, ch_mult=CHANNEL_MULT, dropout=0.0,
                                           remat=FLAGS.remat, dtype=FLAGS.dtype))
    shape = (batch, 32, 32, 3)
    self.params_count = models.count_params(self.model, (1, 32, 32, 3))
    sde = sde_lib.VPSDE()
    optimizer = optax.adam(2e-4)

    def loss_fn(params, x0, key):
      score_fn = parameterizations.get_score_fn(self.model.apply, params, sde, "noise", False,
                                                "time")
      return losses.ddpm_loss(score_fn, sde, x0, key)

    mesh = jax.make_mesh((jax.device_count(),), ("data",),
                         axis_types=(jax.sharding.AxisType.Auto,))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "data"))
    params = jax.jit(lambda k: self.model.init(k, jnp.zeros((1, 32, 32, 3)), jnp.zeros((1,))),
                     out_shardings=replicated)(jax.random.PRNGKey(0))
    self.state = losses.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                   opt_state=optimizer.init(params),
                                   ema_params=jax.tree_util.tree_map(jnp.copy, params))
    self.batch = jax.device_put(jax.random.uniform(jax.random.PRNGKey(1), (1, *shape)) * 2 - 1,
                                batch_sharding)
    step = jax.jit(losses.get_train_step(loss_fn, optimizer, ema.decay_fn(0.9999)),
                   in_shardings=(replicated, batch_sharding, replicated),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))
    start = time.perf_counter()
    self.compiled = step.lower(self.state, self.batch, jax.random.PRNGKey(2)).compile()
    self.compile_seconds = time.perf_counter() - start
    cost = self.compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    self.flops = float(cost["flops"]) * jax.device_count()    # the cost of one device's part
    memory = self.compiled.memory_analysis()
    self.memory_bytes = (None if memory is None else memory.temp_size_in_bytes
                         + memory.argument_size_in_bytes + memory.output_size_in_bytes)
    self()   # warm-up

  def __call__(self):
    self.state, metrics = self.compiled(self.state, self.batch, jax.random.PRNGKey(2))
    return float(metrics["loss"])


def import_diffusers():
  """diffusers, after torchvision (tools.torch_peers.import_module: its fake kernels)."""
  return torch_peers.import_module("diffusers")


def diffusers_unet(diffusers, nf):
  """diffusers' UNet2DModel with the architecture of models/ddpm.py at width nf (seed 0)."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  return diffusers.UNet2DModel(
      sample_size=32, in_channels=3, out_channels=3,
      block_out_channels=tuple(nf * m for m in CHANNEL_MULT), layers_per_block=2,
      norm_num_groups=32, act_fn="silu", dropout=0.0, time_embedding_type="positional",
      attention_head_dim=None,
      down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
      up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))


def _torch_format(torch):
  return torch.channels_last if FLAGS.torch_channels_last else torch.contiguous_format


def _torch_precision(torch):
  """The torch peer's autocast context (bfloat16 with --torch_autocast_bf16, else off)."""
  return torch.autocast(FLAGS.torch_device, dtype=torch.bfloat16,
                        enabled=FLAGS.torch_autocast_bf16)


def _torch_sync(torch):
  """Waits for the torch peer's device (CUDA runs asynchronously)."""
  if FLAGS.torch_device == "cuda":
    torch.cuda.synchronize()


class TorchStep:
  """diffusers.UNet2DModel with the same architecture, epsilon MSE, Adam."""

  def __init__(self, nf, batch):
    import torch  # pylint: disable=g-import-not-at-top
    diffusers = import_diffusers()
    self.torch = torch
    device = FLAGS.torch_device
    self.model = diffusers_unet(diffusers, nf).to(device, memory_format=_torch_format(torch))
    self.params_count = sum(p.numel() for p in self.model.parameters())
    self.optimizer = torch.optim.Adam(self.model.parameters(), lr=2e-4)
    self.x = (torch.rand(batch, 3, 32, 32, device=device) * 2 - 1).to(
        memory_format=_torch_format(torch))
    self.batch = batch
    self()   # warm-up

  def __call__(self):
    torch = self.torch
    t = torch.randint(0, 1000, (self.batch,), device=FLAGS.torch_device)
    noise = torch.randn_like(self.x)
    alpha_bar = torch.cos(t.float() / 1000 * torch.pi / 2)[:, None, None, None]   # any schedule
    x_t = alpha_bar.sqrt() * self.x + (1 - alpha_bar).sqrt() * noise
    with _torch_precision(torch):
      loss = torch.mean((self.model(x_t, t).sample.float() - noise) ** 2)
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self.optimizer.step()
    return float(loss)


class FlaxSampler:
  """DDIM (sampling.get_ddim_sampler, `steps` network calls, no final denoising step) with the
  Flax U-Net, jitted, the batch split over all devices; and one network call alone."""

  def __init__(self, nf, batch, steps):
    self.model = ddpm.DDPM(ddpm.DDPMConfig(nf=nf, ch_mult=CHANNEL_MULT, dropout=0.0,
                                           dtype=FLAGS.dtype))
    self.params_count = models.count_params(self.model, (1, 32, 32, 3))
    sde = sde_lib.VPSDE()
    mesh = jax.make_mesh((jax.device_count(),), ("data",),
                         axis_types=(jax.sharding.AxisType.Auto,))
    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    self.params = jax.jit(lambda k: self.model.init(k, jnp.zeros((1, 32, 32, 3)),
                                                    jnp.zeros((1,))))(jax.random.PRNGKey(0))
    ddim = sampling.get_ddim_sampler(sde, (batch, 32, 32, 3), num_steps=steps, denoise=False)

    def sample(params, key):
      network = lambda p, x, c: self.model.apply(
          p, jax.lax.with_sharding_constraint(x, split), c)
      score_fn = parameterizations.get_score_fn(network, params, sde, "noise", False, "time")
      return ddim(key, score_fn)[0]

    self.sample = jax.jit(sample).lower(self.params, jax.random.PRNGKey(1)).compile()
    self.x = jax.device_put(jnp.zeros((batch, 32, 32, 3)), split)
    self.t = jax.device_put(jnp.full((batch,), 500.0), split)
    self.forward = jax.jit(self.model.apply).lower(self.params, self.x, self.t).compile()
    self.call_forward()
    self()

  def __call__(self):
    return self.sample(self.params, jax.random.PRNGKey(1)).block_until_ready()

  def call_forward(self):
    return self.forward(self.params, self.x, self.t).block_until_ready()


class TorchSampler:
  """diffusers' DDIMScheduler loop (`steps` network calls) with UNet2DModel, no_grad; and
  one network call alone."""

  def __init__(self, nf, batch, steps):
    import torch  # pylint: disable=g-import-not-at-top
    diffusers = import_diffusers()
    self.torch = torch
    self.model = diffusers_unet(diffusers, nf).eval().to(FLAGS.torch_device,
                                                         memory_format=_torch_format(torch))
    self.params_count = sum(p.numel() for p in self.model.parameters())
    self.scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000)
    self.scheduler.set_timesteps(steps)
    self.batch = batch
    self.call_forward()
    self()

  def __call__(self):
    torch = self.torch
    with torch.no_grad(), _torch_precision(torch):
      x = torch.randn(self.batch, 3, 32, 32, device=FLAGS.torch_device).to(
          memory_format=_torch_format(torch))
      for t in self.scheduler.timesteps:
        x = self.scheduler.step(self.model(x, t).sample, t, x).prev_sample
    _torch_sync(torch)
    return x

  def call_forward(self):
    torch = self.torch
    with torch.no_grad(), _torch_precision(torch):
      x = torch.zeros(self.batch, 3, 32, 32, device=FLAGS.torch_device).to(
          memory_format=_torch_format(torch))
      out = self.model(x, 500).sample
    _torch_sync(torch)
    return out


class Worker:
  """A FlaxStep, TorchStep, FlaxSampler or TorchSampler in a process of its own (this
  script with --worker), driven by the same calls, each returning once the worker has run;
  its attributes (params_count, flops, ...) as the worker reported them."""

  def __init__(self, framework, nf):
    args = [a for a in sys.argv[1:] if not a.startswith(("--widths", "--worker"))]
    self.process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.unet", f"--worker={framework}", f"--widths={nf}",
         *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    self.__dict__.update(json.loads(self._reply("READY ")))

  def _reply(self, tag):
    for line in self.process.stdout:       # other output of the worker is skipped
      if line.startswith(tag):
        return line[len(tag):]
    raise RuntimeError(f"benchmark worker exited with {self.process.wait()} (its stderr above)")

  def _run(self, method):
    self.process.stdin.write(method + "\n")
    self.process.stdin.flush()
    self._reply("DONE")

  def __call__(self):
    self._run("__call__")

  def call_forward(self):
    self._run("call_forward")

  def close(self):
    self.process.stdin.close()
    self.process.wait()


def serve_worker(framework, nf, batches):
  """--worker: builds the step (--mode train) or sampler, reports its attributes, then runs
  the method named on each line of stdin."""
  if FLAGS.mode == "sample":
    built = {"flax": FlaxSampler, "torch": TorchSampler}[framework](
        nf, FLAGS.batch_sample, FLAGS.steps)
  else:
    built = {"flax": FlaxStep, "torch": TorchStep}[framework](nf, batches[nf])
  attributes = ("params_count", "flops", "compile_seconds", "memory_bytes")
  print("READY " + json.dumps({k: getattr(built, k) for k in attributes if hasattr(built, k)}),
        flush=True)
  for method in sys.stdin:
    getattr(built, method.strip())()
    print("DONE", flush=True)


def _build(framework, nf, make):
  """`make()` here, or the same object in a worker process (--isolate, CPU only)."""
  if FLAGS.isolate and jax.default_backend() == "cpu":
    return Worker(framework, nf)
  return make()


def _close(*built):
  for each in built:
    if isinstance(each, Worker):
      each.close()


def benchmark_sampling(nf, batch, steps):
  """images/s of the two samplers at equal network calls, alternated; each loop's wall
  time over (steps x one network call)."""
  flax_sampler = _build("flax", nf, lambda: FlaxSampler(nf, batch, steps))
  torch_sampler = _build("torch", nf, lambda: TorchSampler(nf, batch, steps))
  assert flax_sampler.params_count == torch_sampler.params_count == EXPECTED_PARAMS[nf]
  times = {"flax": [], "torch": [], "flax call": [], "torch call": []}
  for _ in range(FLAGS.pairs):
    times["flax"].append(_wall(flax_sampler))
    times["torch"].append(_wall(torch_sampler))
    times["flax call"].append(_wall(flax_sampler.call_forward))
    times["torch call"].append(_wall(torch_sampler.call_forward))
  _close(flax_sampler, torch_sampler)
  med = {k: float(np.median(v)) for k, v in times.items()}
  spread = lambda k: f"{batch / max(times[k]):.1f}-{batch / min(times[k]):.1f}"
  ratios = np.array(times["torch"]) / np.array(times["flax"])
  return {"width": f"nf {nf} ({flax_sampler.params_count:,} params)", "batch": batch,
          "NFE": steps, "flax img/s (min-max)": f"{batch / med['flax']:.1f} ({spread('flax')})",
          "torch img/s (min-max)": f"{batch / med['torch']:.1f} ({spread('torch')})",
          "flax / torch (median of pairs)": f"{np.median(ratios):.2f}",
          "flax loop / (NFE x call)": f"{med['flax'] / (steps * med['flax call']):.2f}",
          "torch loop / (NFE x call)": f"{med['torch'] / (steps * med['torch call']):.2f}"}


def _peak_rss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024    # Linux: KiB


def _status_mb(field):
  """VmRSS (resident now) or VmHWM (peak since start or the last reset) in MB (Linux)."""
  with open("/proc/self/status") as status:
    line = next(line for line in status if line.startswith(field + ":"))
  return float(line.split()[1]) / 1024


def measure_memory_here(framework, nf, batch):
  """Resident memory (MB) of `framework`'s train step in this process: after both frameworks
  are imported and the backend is up; the peak over building the step (compilation
  included) and 3 steps; resident after building it; and the peak while the 3 steps run
  (the kernel's high-water mark reset after building, so compilation is not in it)."""
  import_diffusers()
  jax.block_until_ready(jnp.zeros(()))
  before = _peak_rss_mb()
  step = FlaxStep(nf, batch) if framework == "flax" else TorchStep(nf, batch)
  built = _status_mb("VmRSS")
  with open("/proc/self/clear_refs", "w") as clear_refs:
    clear_refs.write("5")                       # resets VmHWM to the current RSS
  for _ in range(3):
    step()
  return before, _peak_rss_mb(), built, _status_mb("VmHWM")


def benchmark_memory(nf, batch):
  """Each framework's train step in a fresh process (resident memory is per process)."""
  row = {"width": f"nf {nf}", "batch": batch}
  for framework in ("flax", "torch"):
    args = [a for a in sys.argv[1:] if not a.startswith(("--mode", "--widths"))]
    out = subprocess.run([sys.executable, "-m", "benchmarks.unet", f"--memory_of={framework}",
                          f"--widths={nf}", *args], check=True, capture_output=True, text=True)
    before, peak, built, running = map(float, out.stdout.split("MEMORY ")[1].split())
    row[f"{framework} peak RSS MB"] = f"{peak:.0f}"
    row[f"{framework} step's own MB (peak - after imports)"] = f"{peak - before:.0f}"
    row[f"{framework} built (state, executable) MB"] = f"{built - before:.0f}"
    row[f"{framework} peak while stepping MB"] = f"{running - before:.0f}"
  return row


def benchmark_width(nf, batch, peak):
  flax_step = _build("flax", nf, lambda: FlaxStep(nf, batch))
  assert flax_step.params_count == EXPECTED_PARAMS[nf], flax_step.params_count
  torch_step = _build("torch", nf, lambda: TorchStep(nf, batch)) if FLAGS.torch else None
  if torch_step is not None:
    assert torch_step.params_count == flax_step.params_count, (
        torch_step.params_count, flax_step.params_count)
  flax_times, torch_times = [], []
  for _ in range(FLAGS.pairs):        # alternate: the machine's speed drifts
    flax_times.append(_wall(flax_step))
    if torch_step is not None:
      torch_times.append(_wall(torch_step))
  _close(flax_step, torch_step)
  flax_ips = batch / np.median(flax_times)
  row = {"width": f"nf {nf} ({flax_step.params_count:,} params)", "batch": batch,
         "flax img/s": f"{flax_ips:.1f}",
         "GFLOP/img (fwd+bwd)": f"{flax_step.flops / batch / 1e9:.1f}",
         "flax GFLOP/s": f"{flax_step.flops / np.median(flax_times) / 1e9:.0f}",
         "flax / peak": f"{flax_step.flops / np.median(flax_times) / 1e9 / peak:.2f}",
         "compile s": f"{flax_step.compile_seconds:.0f}",
         "XLA memory MB": ("-" if flax_step.memory_bytes is None
                           else f"{flax_step.memory_bytes / 2**20:.0f}")}
  if torch_step is not None:
    ratios = np.array(torch_times) / np.array(flax_times)      # flax speed / torch speed
    row.update({"torch img/s": f"{batch / np.median(torch_times):.1f}",
                "torch GFLOP/s": f"{flax_step.flops / np.median(torch_times) / 1e9:.0f}",
                "flax / torch (median of pairs)": f"{np.median(ratios):.2f}"})
  if jax.default_backend() == "gpu":
    stats = jax.local_devices()[0].memory_stats() or {}
    row["device peak MB"] = f"{stats.get('peak_bytes_in_use', 0) / 2**20:.0f}"
  return row


def _markdown(rows) -> str:
  keys = list(dict.fromkeys(k for row in rows for k in row))
  lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  return "\n".join(lines + ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |"
                            for row in rows])


def main(argv):
  del argv
  batches = {64: FLAGS.batch_half, 128: FLAGS.batch_full}
  if FLAGS.worker:
    serve_worker(FLAGS.worker, int(FLAGS.widths[0]), batches)
    return
  if FLAGS.memory_of:
    nf = int(FLAGS.widths[0])
    print("MEMORY %.1f %.1f %.1f %.1f" % measure_memory_here(FLAGS.memory_of, nf, batches[nf]))
    return
  if FLAGS.mode == "memory":
    rows = [benchmark_memory(int(nf), batches[int(nf)]) for nf in FLAGS.widths]
    print(_markdown(rows))
    return
  peak = matmul_peak_gflops()
  device = jax.devices()[0]
  print(f"backend {jax.default_backend()} x {jax.device_count()} ({device.device_kind}); "
        f"dtype {FLAGS.dtype}, remat {FLAGS.remat}; measured float32 matmul peak "
        f"{peak:.0f} GFLOP/s")
  if FLAGS.mode == "sample":
    rows = [benchmark_sampling(int(nf), FLAGS.batch_sample, FLAGS.steps) for nf in FLAGS.widths]
  else:
    rows = [benchmark_width(int(nf), batches[int(nf)], peak) for nf in FLAGS.widths]
  print(_markdown(rows))


if __name__ == "__main__":
  app.run(main)
