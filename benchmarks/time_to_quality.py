r"""Time to a good model on the same CPU: this codebase's Fashion-MNIST CPU recipe against
diffusers' own unconditional-training recipe, at equal wall-clock training budgets, both
scored by this codebase's feature network on its FID protocol (issue 34).

  python -m benchmarks.time_to_quality --data_dir data/tfds            # 10, 20, 40 min
  python -m benchmarks.time_to_quality --quick --data_dir /tmp/fmq/tfds --outdir /tmp/ttq

Needs the prepared dataset and the trained feature network (`make feature-net`), and
torch + diffusers (pip install -r benchmarks/requirements.txt). Writes
<outdir>/time_to_quality.{md,png} and prints the table. Everything is kept under
<outdir>: each side's EMA checkpoint at each budget (ours/, diffusers/), the samples as
uint8 (ADM's npz, arr_0 [n, 28, 28, 1]), the reference features. A rerun reuses a side's
checkpoints if all its budgets are there (training does not resume part-way: a side
with any budget missing is trained again from step 0) and every sample file found.

Training. Each side trains in a worker process of its own, started (imports done) before
either trains; the two are alternated budget by budget, the side that goes first
swapped each time (the machine's speed drifts). A side's clock runs only while it
trains: building its network, optimizer and data pipeline and compiling (ours) are on
it, imports are not. At each budget B its EMA parameters are saved as soon as its clock
reaches B (after the step under way). The machine must be quiet: the other worker waits
on its stdin and uses no CPU.

Ours: configs/fashion_mnist/<--ours_config>_ddpm_cpu.py unchanged (0.28M-parameter DDPM
U-Net, EDM preconditioning, batch 64, Adam lr 1e-3 after 500 warmup steps, EMA 0.999
with warmup), on the XLA:CPU kernels main.py uses (infra/xla_cpu.py).

The peer: diffusers' examples/unconditional_image_generation/train_unconditional.py
(huggingface/diffusers at 58eb52c0, 2026-08-23; its defaults are those of earlier
versions too, e.g. at 00769f61 and c2076599), run with diffusers 0.42.1. Its defaults:
  UNet2DModel(layers_per_block=2, block_out_channels=(128, 128, 256, 256, 512, 512),
      down_block_types=4 x DownBlock2D, AttnDownBlock2D, DownBlock2D; up_block_types=
      UpBlock2D, AttnUpBlock2D, 4 x UpBlock2D; the class's other defaults: norm_num_groups
      32, attention_head_dim 8, silu, positional time embedding, dropout 0),
  DDPMScheduler(num_train_timesteps=1000 (--ddpm_num_steps), beta_schedule="linear",
      prediction_type="epsilon"), loss F.mse_loss(model_output, noise),
  torch.optim.AdamW(lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8),
  get_scheduler("cosine", num_warmup_steps=500, num_training_steps=len(train_dataloader)
      * num_epochs), num_epochs 100, gradient clipping at norm 1.0,
  EMAModel(decay=0.9999 (--ema_max_decay), use_ema_warmup=True, inv_gamma=1.0,
      power=3/4), stepped after each optimizer step, its weights sampled,
  train_batch_size 16, dataloader shuffle, num_workers 0, images in [-1, 1]
      (Normalize([0.5], [0.5])), no flips (--random_flip off), fp32 (--mixed_precision no).
Changed, and only these (DIFFUSERS_RECIPE):
  - Width: block_out_channels = 6 x (1, 1, 2, 2, 4, 4) instead of 128 x: the common
    factor whose parameter count is nearest ours (254,725 against our 280,177: factor 6;
    7 gives ~0.35M, 5 ~0.18M; the channel pattern, depth and block types unchanged).
    norm_num_groups 3 instead of 32 (32 does not divide 6; 3 leaves 2 channels per
    group at the first level, as our config's 8 groups at nf 16 do).
  - Resolution 32 instead of 64, channels 1 instead of 3: the example's five halvings
    need a multiple of 32 (at 28 px the up path meets 7 px skips with 8 px maps and
    fails), and Fashion-MNIST is grayscale (the example's convert("RGB") would copy the
    channel thrice). The 28 px images are padded by 2 px of background (-1) instead of
    the example's bilinear Resize, and samples cropped back to the centre 28 x 28: both
    lossless, so our feature network sees the peer's samples unresampled.
  - The data: the same 60,000 training images as ours, held as one normalized tensor
    (the example transforms each image from PIL on every epoch: slower, not faster).
  - num_training_steps of the cosine: 3750 batches x 100 epochs = 375,000, as the
    example computes it for this dataset: the rate is ~1e-4 throughout our budgets.

Sampling and scoring. Each checkpoint samples --num_samples images per sampling seed
(--sampling_seeds) with each sampler named in --ours_samplers / --diffusers_samplers as
name@NFE (network evaluations per sample, checked against the sampler's own count).
Ours: "ddim" (the config's eta 1: ancestral) and "dpm_solver_2m", NFE - 1 steps then
Tweedie's formula. Theirs: diffusers' "ddpm" (DDPMScheduler, the example's own sampler;
ancestral), "ddim" (DDIMScheduler, eta 0) and "dpm_solver" (DPMSolverMultistepScheduler:
DPM-Solver++(2M)), each built with .from_config of the training scheduler, NFE steps.
Both sides' samples are exported as uint8 and scored alike: features of our Fashion-MNIST
network (feature_nets.py) against the training split's (the protocol of
experiments/fashion_mnist_table.py: evaluation.PROTOCOLS["uint8"]), FID and KID, mean
and SE over sampling seeds. The ratio ours / diffusers compares each side's best sampler
at each NFE (lowest mean FID, chosen after the fact), with the delta-method SE; the
target (issue 34) is <= 0.7 at every budget.

Related ratios for the same page (not run by this script; the exact commands):
  python -m benchmarks.unet --project_kernels --widths 64,128 --pairs 5      # train step
  python -m benchmarks.unet --project_kernels --mode sample --steps 10       # DDIM sampling
  python -m benchmarks.unet --project_kernels --mode sample --steps 10 --dtype bfloat16 \
      --torch_autocast_bf16                                                  # bf16 sampling
--quick: budgets 0.1 and 0.2 min, our network shrunk as experiments/fashion_mnist_table.py
--quick does (nf 8, two levels), NFE 4 / 3, 16 samples x 2 seeds,
1,000 reference images: checks that the script runs end to end, nothing more.
"""
import importlib
import io
import itertools
import json
import math
import os
import subprocess
import sys
import time

from infra import xla_cpu

xla_cpu.choose_cpu_kernels()      # before jax starts: our side on the kernels main.py uses

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import numpy as np

from infra import files
# pylint: enable=g-import-not-at-top,wrong-import-position

OUR_CONFIGS = ("vp", "ve", "subvp", "edm", "rf")     # configs/fashion_mnist/<name>_ddpm_cpu.py
OUR_SAMPLERS = {"ddim": "DDIM (eta 1)", "dpm_solver_2m": "DPM-Solver++(2M)"}
DIFFUSERS_SAMPLERS = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler (eta 0)",
                      "dpm_solver": "DPMSolverMultistepScheduler"}
SIDES = ("ours", "diffusers")
SAMPLING_SEED_OFFSET = 30_000
PAD = 2                           # 28 px data -> the peer's 32 px
QUICK_BUDGETS_MIN = (0.1, 0.2)

FLAGS = flags.FLAGS


class DiffusersRecipe:
  """train_unconditional.py's defaults (module docstring), with the changes listed there."""
  lr = 1e-4
  betas = (0.95, 0.999)
  weight_decay = 1e-6
  adam_eps = 1e-8
  lr_scheduler = "cosine"
  lr_warmup_steps = 500
  num_epochs = 100
  batch_size = 16
  grad_clip = 1.0
  ema_max_decay, ema_inv_gamma, ema_power = 0.9999, 1.0, 3 / 4
  num_train_timesteps, beta_schedule, prediction_type = 1000, "linear", "epsilon"
  layers_per_block = 2
  channel_mult = (1, 1, 2, 2, 4, 4)             # the example: 128 x these
  down_block_types = ("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D")
  up_block_types = ("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4
  width = 6                                     # changed: 128
  norm_num_groups = 3                           # changed: 32
  resolution = 28 + 2 * PAD                     # changed: 64
  channels = 1                                  # changed: 3


# --- The two sides, each run in its worker process. -----------------------------------

class OurSide:
  """This codebase's CPU config: trained to a wall-clock budget, sampled from checkpoints."""

  def __init__(self, data_dir: str, config_name: str, seed: int, tiny: bool = False):
    self.data_dir, self.config_name, self.seed, self.tiny = data_dir, config_name, seed, tiny
    for module in ("jax", "flax.serialization", "run.build"):   # imports: off the clock
      importlib.import_module(module)
    self.exp, self.state, self.seconds, self.steps, self.samplers = None, None, 0.0, 0, {}
    self.timings = {}     # setup_seconds (build, init, data), first_step_seconds (compile)
    self.loss = math.nan  # the last step's

  def _build(self):
    import jax  # pylint: disable=g-import-not-at-top
    from run import build  # pylint: disable=g-import-not-at-top
    module = importlib.import_module(f"configs.fashion_mnist.{self.config_name}_ddpm_cpu")
    config = module.get_config()
    config.seed, config.data.data_dir, config.eval.feature_net = self.seed, self.data_dir, ""
    if self.tiny:                             # --quick
      m = config.model
      m.nf, m.num_groups, m.ch_mult, m.attn_resolutions = 8, 4, (1, 2), (14,)
    self.exp = build.build(config)
    return jax

  def train_until(self, seconds: float, save: str) -> dict:
    """Trains until this side's clock reaches `seconds`, then saves the EMA parameters."""
    start = time.perf_counter()
    if self.state is None:                    # on the clock: build, init, data, compile
      jax = self._build()
      t = self.exp.train
      self.state = self.exp.init_state(jax.random.PRNGKey(self.seed))
      self.batches = self.exp.data.train_batches(0, t.n_jitted_steps, t.batch_size,
                                                 self.exp.sharding(None, "data"))
      self.key = jax.random.split(jax.random.PRNGKey(self.seed + 1))[0]   # as run/train.py
      self.timings["setup_seconds"] = time.perf_counter() - start
    while self.seconds + time.perf_counter() - start < seconds:
      step_start = time.perf_counter()
      self.state, metrics = self.exp.train_step(self.state, next(self.batches), self.key, None)
      self.loss = loss = float(metrics["loss"])           # blocks on the step
      self.timings.setdefault("first_step_seconds", time.perf_counter() - step_start)
      self.steps += self.exp.train.n_jitted_steps
      if not math.isfinite(loss):
        raise RuntimeError(f"ours: non-finite loss {loss} at step {self.steps}")
    self.seconds += time.perf_counter() - start
    import flax.serialization  # pylint: disable=g-import-not-at-top
    import jax  # pylint: disable=g-import-not-at-top
    files.write_atomically(save, flax.serialization.msgpack_serialize(
        jax.device_get(self.state.ema_params)))
    params = sum(x.size for x in jax.tree.leaves(self.state.params))
    return {"steps": self.steps, "images": self.steps * self.exp.train.batch_size,
            "train_seconds": self.seconds, "loss": self.loss, "params": params,
            **self.timings}

  def sample(self, checkpoint: str, sampler: str, nfe: int, seed: int, n: int,
             batch: int) -> np.ndarray:
    """uint8 [n, 28, 28, 1] from the EMA parameters in `checkpoint`."""
    import flax.serialization  # pylint: disable=g-import-not-at-top
    import jax  # pylint: disable=g-import-not-at-top
    if self.exp is None:
      self._build()
    with open(checkpoint, "rb") as f:
      params = jax.tree.map(jax.numpy.asarray, flax.serialization.msgpack_restore(f.read()))
    if (sampler, nfe, batch) not in self.samplers:
      draw = self.exp.make_sampler(sampler, (batch, *self.exp.data.example_shape),
                                   num_steps=nfe - 1, denoise=True)
      self.samplers[sampler, nfe, batch] = jax.jit(
          lambda p, k: draw(k, self.exp.sampling_score_fn(p)))
    rounds, key = [], jax.random.PRNGKey(SAMPLING_SEED_OFFSET + seed)
    for r in range(math.ceil(n / batch)):
      x, evaluations = self.samplers[sampler, nfe, batch](params, jax.random.fold_in(key, r))
      if int(evaluations) != nfe:
        raise RuntimeError(f"ours: {sampler} made {int(evaluations)} evaluations, not {nfe}")
      rounds.append(self.exp.data.export(np.asarray(x))[1])
    return np.concatenate(rounds)[:n]


def diffusers_unet(diffusers, recipe=DiffusersRecipe):
  """The example's UNet2DModel at the recipe's width, resolution and channels."""
  return diffusers.UNet2DModel(
      sample_size=recipe.resolution, in_channels=recipe.channels,
      out_channels=recipe.channels, layers_per_block=recipe.layers_per_block,
      block_out_channels=tuple(recipe.width * m for m in recipe.channel_mult),
      norm_num_groups=recipe.norm_num_groups, down_block_types=recipe.down_block_types,
      up_block_types=recipe.up_block_types)


class DiffusersSide:
  """diffusers' unconditional recipe (DiffusersRecipe) on the same training images."""

  def __init__(self, images_path: str, seed: int):
    import torch  # pylint: disable=g-import-not-at-top
    from tools import torch_peers  # pylint: disable=g-import-not-at-top
    self.torch, self.diffusers = torch, torch_peers.import_module("diffusers")
    for module in ("diffusers.optimization", "diffusers.training_utils"):   # off the clock
      importlib.import_module(module)
    for name in ("UNet2DModel", "DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler"):
      getattr(self.diffusers, name)             # diffusers imports these lazily
    self.images_path, self.seed = images_path, seed
    self.model, self.seconds, self.steps, self.timings = None, 0.0, 0, {}
    self.loss = math.nan  # the last step's

  def _build(self):
    torch, diffusers, r = self.torch, self.diffusers, DiffusersRecipe
    from diffusers.optimization import get_scheduler  # pylint: disable=g-import-not-at-top
    from diffusers.training_utils import EMAModel  # pylint: disable=g-import-not-at-top
    torch.manual_seed(self.seed)
    self.model = diffusers_unet(diffusers).train()
    self.noise_scheduler = diffusers.DDPMScheduler(
        num_train_timesteps=r.num_train_timesteps, beta_schedule=r.beta_schedule,
        prediction_type=r.prediction_type)
    self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=r.lr, betas=r.betas,
                                       weight_decay=r.weight_decay, eps=r.adam_eps)
    images = torch.from_numpy(np.load(self.images_path)).float()[:, None] / 255.0
    images = torch.nn.functional.pad((images - 0.5) / 0.5, (PAD,) * 4, value=-1.0)
    self.loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images),
                                              batch_size=r.batch_size, shuffle=True)
    self.lr_scheduler = get_scheduler(r.lr_scheduler, optimizer=self.optimizer,
                                      num_warmup_steps=r.lr_warmup_steps,
                                      num_training_steps=len(self.loader) * r.num_epochs)
    self.ema = EMAModel(self.model.parameters(), decay=r.ema_max_decay, use_ema_warmup=True,
                        inv_gamma=r.ema_inv_gamma, power=r.ema_power)
    self.batches = (batch for _ in itertools.count() for (batch,) in self.loader)  # epochs

  def _step(self) -> float:
    """One step of the example's loop body."""
    torch, model = self.torch, self.model
    clean = next(self.batches)
    noise = torch.randn(clean.shape)
    timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps,
                              (clean.shape[0],)).long()
    noisy = self.noise_scheduler.add_noise(clean, noise, timesteps)
    loss = torch.nn.functional.mse_loss(model(noisy, timesteps).sample.float(), noise.float())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), DiffusersRecipe.grad_clip)
    self.optimizer.step()
    self.lr_scheduler.step()
    self.optimizer.zero_grad()
    self.ema.step(model.parameters())
    return loss.item()

  def train_until(self, seconds: float, save: str) -> dict:
    start = time.perf_counter()
    if self.model is None:
      self._build()
      self.timings["setup_seconds"] = time.perf_counter() - start
    while self.seconds + time.perf_counter() - start < seconds:
      step_start = time.perf_counter()
      self.loss = loss = self._step()
      self.timings.setdefault("first_step_seconds", time.perf_counter() - step_start)
      self.steps += 1
      if not math.isfinite(loss):
        raise RuntimeError(f"diffusers: non-finite loss {loss} at step {self.steps}")
    self.seconds += time.perf_counter() - start
    params = list(self.model.parameters())
    self.ema.store(params)
    self.ema.copy_to(params)
    buffer = io.BytesIO()
    self.torch.save(self.model.state_dict(), buffer)
    self.ema.restore(params)
    files.write_atomically(save, buffer.getvalue())
    return {"steps": self.steps, "images": self.steps * DiffusersRecipe.batch_size,
            "train_seconds": self.seconds, "loss": self.loss,
            "params": sum(p.numel() for p in params), **self.timings}

  def sample(self, checkpoint: str, sampler: str, nfe: int, seed: int, n: int,
             batch: int) -> np.ndarray:
    """uint8 [n, 28, 28, 1]: the standard diffusers loop (scheduler.step on the UNet's
    output), then the centre 28 x 28 rounded as ours are (evaluation.to_uint8)."""
    torch, diffusers = self.torch, self.diffusers
    import evaluation  # pylint: disable=g-import-not-at-top
    model = diffusers_unet(diffusers).eval()
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    training = diffusers.DDPMScheduler(
        num_train_timesteps=DiffusersRecipe.num_train_timesteps,
        beta_schedule=DiffusersRecipe.beta_schedule,
        prediction_type=DiffusersRecipe.prediction_type)
    scheduler = {"ddpm": diffusers.DDPMScheduler, "ddim": diffusers.DDIMScheduler,
                 "dpm_solver": diffusers.DPMSolverMultistepScheduler}[sampler].from_config(
                     training.config)
    generator, rounds, size = torch.Generator().manual_seed(SAMPLING_SEED_OFFSET + seed), [], \
        DiffusersRecipe.resolution
    with torch.no_grad():
      for _ in range(math.ceil(n / batch)):
        scheduler.set_timesteps(nfe)
        x = torch.randn((batch, DiffusersRecipe.channels, size, size), generator=generator)
        x = x * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
          x = scheduler.step(model(x, t).sample, t, x, generator=generator).prev_sample
        if len(scheduler.timesteps) != nfe:
          raise RuntimeError(f"diffusers: {sampler} took {len(scheduler.timesteps)} steps, "
                             f"not {nfe}")
        crop = x[:, :, PAD:size - PAD, PAD:size - PAD].permute(0, 2, 3, 1).numpy()
        rounds.append(evaluation.to_uint8((crop + 1.0) / 2.0))
    return np.concatenate(rounds)[:n]


def serve_worker(side: str):
  """--worker: builds the side, says READY, then runs each JSON command read from stdin
  ({"cmd": "train", ...} / {"cmd": "sample", ...}) and replies with one REPLY line."""
  if side == "ours":
    built = OurSide(FLAGS.data_dir, FLAGS.ours_config, FLAGS.seed, FLAGS.quick)
  else:
    built = DiffusersSide(os.path.join(FLAGS.outdir, "train_images_uint8.npy"), FLAGS.seed)
  print("READY", flush=True)
  for line in sys.stdin:
    command = json.loads(line)
    if command.pop("cmd") == "train":
      reply = built.train_until(command["seconds"], command["save"])
    else:
      started = time.perf_counter()
      out = command.pop("out")
      files.save_npz(out, arr_0=built.sample(**command))
      reply = {"sample_seconds": time.perf_counter() - started}
    print("REPLY " + json.dumps(reply), flush=True)


class Worker:
  """A side in a process of its own (this script with --worker), driven by JSON commands."""

  def __init__(self, side: str):
    self.side = side
    self.process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.time_to_quality", f"--worker={side}",
         f"--data_dir={FLAGS.data_dir}", f"--outdir={FLAGS.outdir}",
         f"--ours_config={FLAGS.ours_config}", f"--seed={FLAGS.seed}",
         f"--quick={FLAGS.quick}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

  def _reply(self, tag: str) -> str:
    for line in self.process.stdout:         # other output of the worker is skipped
      if line.startswith(tag):
        return line[len(tag):]
    raise RuntimeError(f"the {self.side} worker exited with {self.process.wait()} (its "
                       "stderr above)")

  def ready(self):
    self._reply("READY")

  def __call__(self, **command) -> dict:
    self.process.stdin.write(json.dumps(command) + "\n")
    self.process.stdin.flush()
    return json.loads(self._reply("REPLY "))

  def close(self):
    self.process.stdin.close()
    self.process.wait()


# --- The driver. ----------------------------------------------------------------------

def fail(message: str):
  """Stops the command with one line on stderr and exit status 1."""
  raise SystemExit(f"time_to_quality: {message}")


def parse_samplers(specs, valid: dict, flag: str) -> list:
  """["name@NFE", ...] -> [(name, NFE)]; a bad entry is a one-line error (fail)."""
  parsed = []
  for spec in specs:
    name, _, nfe = spec.partition("@")
    if name not in valid or not nfe.isdigit() or int(nfe) < 2:
      fail(f"--{flag} entry {spec!r}: expected name@NFE with NFE >= 2 and name one of "
           f"{sorted(valid)}")
    parsed.append((name, int(nfe)))
  return parsed


def parse_budgets(values) -> list:
  try:
    budgets = sorted(float(v) for v in values)
  except ValueError:
    budgets = []
  if not budgets or budgets[0] <= 0 or len(set(budgets)) < len(budgets):
    fail(f"--budgets_min {','.join(values)}: expected distinct positive minutes, e.g. "
         "10,20,40")
  return budgets


def claim_outdir(settings: dict):
  """<outdir>/settings.json records the training settings of the checkpoints there; other
  settings stop the run (one line) instead of reusing checkpoints they did not make."""
  path = os.path.join(FLAGS.outdir, "settings.json")
  if os.path.exists(path) and _read_json(path) != settings:
    fail(f"{FLAGS.outdir} holds a run with other settings ({_read_json(path)}, not "
         f"{settings}); pass another --outdir")
  files.write_atomically(path, json.dumps(settings).encode())


def checkpoint_path(side: str, budget: float) -> str:
  return os.path.join(FLAGS.outdir, side, f"budget_{budget:g}min"
                      + (".msgpack" if side == "ours" else ".pt"))


def train_both(workers: dict, budgets: list) -> dict:
  """{side: {budget: its record}}: each side trained to each budget in turn, alternating
  (the first side swapped at each budget); a side whose every checkpoint exists is reused."""
  records = {}
  for side in SIDES:
    paths = [checkpoint_path(side, b) + ".json" for b in budgets]
    if all(os.path.exists(p) for p in paths):
      records[side] = {b: _read_json(p) for b, p in zip(budgets, paths)}
  reused = set(records)
  for i, budget in enumerate(budgets):
    for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
      if side in reused:
        continue
      record = workers[side](cmd="train", seconds=60.0 * budget,
                             save=checkpoint_path(side, budget))
      files.write_atomically(checkpoint_path(side, budget) + ".json",
                             json.dumps(record).encode())
      records.setdefault(side, {})[budget] = record
      print(f"{side}: {budget:g} min, {record['steps']} steps, loss {record['loss']:.4f}",
            flush=True)
  return records


def _read_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def sample_path(side, budget, sampler, nfe, seed) -> str:
  return os.path.join(FLAGS.outdir, side, "samples",
                      f"budget_{budget:g}min_{sampler}@{nfe}_n{FLAGS.num_samples}_seed{seed}.npz")


def draw_samples(workers: dict, budgets: list, samplers: dict) -> dict:
  """Writes every missing sample file; returns {(side, sampler, nfe): sampling seconds per
  image} of the files drawn in this run."""
  rates = {}
  for side in SIDES:
    for budget in budgets:
      for sampler, nfe in samplers[side]:
        for seed in range(FLAGS.sampling_seeds):
          out = sample_path(side, budget, sampler, nfe, seed)
          if os.path.exists(out):
            continue
          reply = workers[side](cmd="sample", out=out, checkpoint=checkpoint_path(side, budget),
                                sampler=sampler, nfe=nfe, seed=seed, n=FLAGS.num_samples,
                                batch=min(FLAGS.sample_batch, FLAGS.num_samples))
          rates.setdefault((side, sampler, nfe), []).append(
              reply["sample_seconds"] / FLAGS.num_samples)
  return rates


def mean_se(values) -> tuple[float, float]:
  """(mean, its SE from the spread; nan with one value) of independent values."""
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan


def ratio_se(a: tuple, b: tuple) -> tuple[float, float]:
  """(a / b, its delta-method SE) of independent (mean, SE) pairs."""
  r = a[0] / b[0]
  return r, abs(r) * math.hypot(a[1] / a[0], b[1] / b[0])


def verdict(ratio: float, se: float, target: float = 0.7) -> str:
  """Whether ratio <= target, where sampling noise resolves it (two SEs)."""
  if not math.isfinite(se):
    return "met (no SE)" if ratio <= target else "not met (no SE)"
  if ratio + 2 * se <= target:
    return "met"
  if ratio - 2 * se > target:
    return "not met"
  return "unresolved (within 2 SE)"


def score_all(budgets: list, samplers: dict) -> dict:
  """({(side, budget, sampler, nfe): {"fid": (mean, SE), "kid": (mean, SE)}} over sampling
  seeds, the number of reference images): every sample file scored by our feature
  network on the uint8 protocol against the training split's features (cached in
  <outdir>/reference_features_<n>.npz)."""
  import evaluation  # pylint: disable=g-import-not-at-top
  import feature_nets  # pylint: disable=g-import-not-at-top
  net = feature_nets.load("fashion_mnist_cnn", FLAGS.data_dir, batch_size=500)
  images = np.load(os.path.join(FLAGS.outdir, "train_images_uint8.npy"))
  reference = images[:FLAGS.fid_reference_size or None, :, :, None]
  real = feature_nets.reference_features(
      net, lambda: evaluation.protocol_images(reference / 255.0, "uint8"),
      os.path.join(FLAGS.outdir, f"reference_features_{len(reference)}.npz"))[0]
  scores = {}
  for side in SIDES:
    for budget in budgets:
      for sampler, nfe in samplers[side]:
        per_seed = {"fid": [], "kid": []}
        for seed in range(FLAGS.sampling_seeds):
          with np.load(sample_path(side, budget, sampler, nfe, seed)) as f:
            fake = f["arr_0"]
          features, logits = net(evaluation.protocol_images(fake / 255.0, "uint8"))
          metrics = evaluation.quality_metrics(real, features, logits)
          per_seed["fid"].append(metrics["fid"])
          per_seed["kid"].append(metrics["kid"])
        scores[side, budget, sampler, nfe] = {k: mean_se(v) for k, v in per_seed.items()}
  return scores, len(real)


def best_by_nfe(scores: dict, side: str, budget: float, samplers: list) -> dict:
  """{nfe: (sampler, (FID mean, SE))}: the side's lowest-mean-FID sampler at each NFE."""
  best = {}
  for sampler, nfe in samplers:
    fid = scores[side, budget, sampler, nfe]["fid"]
    if nfe not in best or fid[0] < best[nfe][1][0]:
      best[nfe] = (sampler, fid)
  return best


def _pm(value: tuple, fmt=".2f") -> str:
  mean, se = value
  return f"{mean:{fmt}} ± {se:{fmt}}" if math.isfinite(se) else f"{mean:{fmt}}"


def markdown_table(header, rows) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return "\n".join(lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows])


def tables(scores, records, budgets, samplers, rates) -> tuple[str, str]:
  """(the per-checkpoint table, the ratio table) in markdown."""
  names = {"ours": OUR_SAMPLERS, "diffusers": DIFFUSERS_SAMPLERS}
  rows = []
  for budget in budgets:
    for side in SIDES:
      record = records[side][budget]
      for sampler, nfe in samplers[side]:
        s = scores[side, budget, sampler, nfe]
        rate = rates.get((side, sampler, nfe))
        rows.append([f"{budget:g}", side, record["steps"], record["images"],
                     f"{record.get('setup_seconds', math.nan):.1f} + "
                     f"{record.get('first_step_seconds', math.nan):.1f}",
                     names[side][sampler], nfe, _pm(s["fid"]),
                     _pm(tuple(1e3 * v for v in s["kid"])),
                     f"{1 / np.mean(rate):.1f}" if rate else "-"])
  per_checkpoint = markdown_table(
      ["train min", "side", "steps", "images seen", "setup + first step s", "sampler",
       "NFE", "FID ± SE",
       "KID x 10^3 ± SE", "samples/s"], rows)
  rows = []
  for budget in budgets:
    ours = best_by_nfe(scores, "ours", budget, samplers["ours"])
    theirs = best_by_nfe(scores, "diffusers", budget, samplers["diffusers"])
    for nfe in sorted(set(ours) & set(theirs), reverse=True):
      ratio = ratio_se(ours[nfe][1], theirs[nfe][1])
      rows.append([f"{budget:g}", nfe, f"{ours[nfe][0]}: {_pm(ours[nfe][1])}",
                   f"{theirs[nfe][0]}: {_pm(theirs[nfe][1])}", _pm(ratio, ".3f"),
                   verdict(*ratio)])
  ratios = markdown_table(
      ["train min", "NFE", "ours: best sampler, FID", "diffusers: best sampler, FID",
       "FID ours / diffusers ± SE", "target <= 0.7"], rows)
  return per_checkpoint, ratios


def figure(scores, budgets, samplers):
  """FID and KID against training minutes, each side's best sampler per NFE, ± 2 SE."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
  for side, marker in zip(SIDES, ("o", "s")):
    for nfe in sorted({n for _, n in samplers[side]}, reverse=True):
      for ax, metric, scale in zip(axes, ("fid", "kid"), (1.0, 1e3)):
        values = []
        for b in budgets:
          sampler = best_by_nfe(scores, side, b, samplers[side])[nfe][0]
          values.append(scores[side, b, sampler, nfe][metric])
        means = np.array([v[0] for v in values]) * scale
        errors = 2 * np.nan_to_num([v[1] for v in values]) * scale
        ax.errorbar(budgets, means, yerr=errors, marker=marker, capsize=2,
                    linestyle="-" if side == "ours" else "--", label=f"{side}, {nfe} NFE")
  for ax, label in zip(axes, ("FID (± 2 SE)", "KID x 10^3 (± 2 SE)")):
    ax.set_xlabel("training wall-clock minutes")
    ax.set_ylabel(label)
  axes[0].legend(fontsize=7)
  return fig


def main(_):
  if FLAGS.worker:
    serve_worker(FLAGS.worker)
    return
  if FLAGS.quick:
    FLAGS.budgets_min = [str(b) for b in QUICK_BUDGETS_MIN]
    FLAGS.ours_samplers = ["ddim@4", "dpm_solver_2m@3"]
    FLAGS.diffusers_samplers = ["ddpm@4", "ddim@3", "dpm_solver@3"]
    FLAGS.num_samples, FLAGS.sampling_seeds, FLAGS.fid_reference_size = 16, 2, 1000
  budgets = parse_budgets(FLAGS.budgets_min)
  samplers = {"ours": parse_samplers(FLAGS.ours_samplers, OUR_SAMPLERS, "ours_samplers"),
              "diffusers": parse_samplers(FLAGS.diffusers_samplers, DIFFUSERS_SAMPLERS,
                                          "diffusers_samplers")}
  if FLAGS.num_samples < 2 or FLAGS.sampling_seeds < 1 or FLAGS.sample_batch < 1:
    fail(f"--num_samples {FLAGS.num_samples} (valid: >= 2), --sampling_seeds "
         f"{FLAGS.sampling_seeds} (>= 1), --sample_batch {FLAGS.sample_batch} (>= 1)")
  import datasets  # pylint: disable=g-import-not-at-top
  import feature_nets  # pylint: disable=g-import-not-at-top
  try:
    feature_nets.check_available("fashion_mnist_cnn", FLAGS.data_dir)
  except (ValueError, FileNotFoundError) as e:
    fail(str(e).splitlines()[0])
  claim_outdir({"ours_config": FLAGS.ours_config, "seed": FLAGS.seed, "quick": FLAGS.quick})
  started = time.time()
  workers = {side: Worker(side) for side in SIDES}       # importing while the data loads
  try:
    images_path = os.path.join(FLAGS.outdir, "train_images_uint8.npy")   # the peer's data
    if not os.path.exists(images_path):
      train_images = datasets.load_labelled("fashion_mnist", "train", 28, FLAGS.data_dir)[0]
      buffer = io.BytesIO()
      np.save(buffer, np.rint(train_images[..., 0] * 255.0).astype(np.uint8))
      files.write_atomically(images_path, buffer.getvalue())
    for worker in workers.values():
      worker.ready()                # both imported before either trains
    records = train_both(workers, budgets)
    rates = draw_samples(workers, budgets, samplers)
  finally:
    for worker in workers.values():
      worker.close()
  scores, num_real = score_all(budgets, samplers)
  per_checkpoint, ratios = tables(scores, records, budgets, samplers, rates)
  setup = (f"Ours: configs/fashion_mnist/{FLAGS.ours_config}_ddpm_cpu.py "
           f"({records['ours'][budgets[0]]['params']:,} parameters); diffusers: "
           "train_unconditional.py's recipe at our parameter count "
           f"({records['diffusers'][budgets[0]]['params']:,}; benchmarks/"
           f"time_to_quality.py). Training seed {FLAGS.seed}; "
           f"{FLAGS.sampling_seeds} sampling seeds x {FLAGS.num_samples} samples per cell, "
           f"uint8 protocol, fashion_mnist_cnn features against {num_real} training images; "
           "± is the SE over sampling seeds. Ratio: each side's lowest-FID sampler at that "
           f"NFE, delta-method SE. Wall time of this run: {(time.time() - started) / 60:.1f} "
           "min." + (" --quick: the numbers mean nothing." if FLAGS.quick else ""))
  text = (f"## Time to quality: ours vs diffusers on Fashion-MNIST\n\n{setup}\n\n"
          f"{per_checkpoint}\n\n{ratios}\n\n![time_to_quality](time_to_quality.png)\n")
  fig = figure(scores, budgets, samplers)
  fig.savefig(os.path.join(FLAGS.outdir, "time_to_quality.png"), dpi=110, bbox_inches="tight")
  files.write_atomically(os.path.join(FLAGS.outdir, "time_to_quality.md"), text.encode())
  print(text)


def define_flags():
  """The command line (defined only when run as a script, so that importing this module
  defines no flags)."""
  flags.DEFINE_list("budgets_min", ["10", "20", "40"], "Training budgets, wall-clock minutes "
                    "per side; a checkpoint of each side is kept at each.")
  flags.DEFINE_enum("ours_config", "vp", OUR_CONFIGS, "Our side: configs/fashion_mnist/"
                    "<name>_ddpm_cpu.py.")
  flags.DEFINE_list("ours_samplers", ["ddim@100", "ddim@20", "dpm_solver_2m@20"],
                    f"Our samplers as name@NFE; names: {sorted(OUR_SAMPLERS)}.")
  flags.DEFINE_list("diffusers_samplers", ["ddpm@100", "ddim@20", "dpm_solver@20"],
                    f"diffusers' samplers as name@NFE; names: {sorted(DIFFUSERS_SAMPLERS)}.")
  flags.DEFINE_integer("num_samples", 2000, "Samples per checkpoint, sampler and seed.")
  flags.DEFINE_integer("sampling_seeds", 3, "Sampling seeds per checkpoint and sampler.")
  flags.DEFINE_integer("sample_batch", 200, "Samples per sampler call.")
  flags.DEFINE_integer("fid_reference_size", 0, "Reference images: the first N of the "
                       "training split; 0: all 60,000.")
  flags.DEFINE_integer("seed", 0, "Training seed of both sides.")
  flags.DEFINE_string("data_dir", "data/tfds", "The prepared dataset and feature network "
                      "(only read).")
  flags.DEFINE_string("outdir", "runs/time_to_quality", "Checkpoints, samples, the table.")
  flags.DEFINE_bool("quick", False, "Tiny budgets, NFE and sample counts: checks that the "
                    "script runs; the numbers mean nothing.")
  flags.DEFINE_enum("worker", None, SIDES, "Internal: serve this side's training and "
                    "sampling commands on stdin.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
