"""Shared base of the image experiments, at the published CIFAR-10 settings (Song et al.,
2021, score_sde `configs/default_cifar10_configs.py`), and the architecture presets that
the files under configs/ve, configs/vp and configs/subvp apply.

Mapping from the published configs: `training.continuous=True` is loss "continuous";
discrete training is "smld" (VE) or "ddpm" on the DDPM chain (VP: sde "ddpm_chain");
`model.scale_by_sigma` and the VP epsilon output are parameterization "noise"; Fourier
features see log sigma, positional embeddings see the timestep 999 t ("time", whatever
N). The published networks map [0, 1] data to [-1, 1] inside the model when
`data.centered` is False; here the input is given as is.

Typos of the published set, fixed here: ve/ncsnv2/bedroom set `training.continuouse`
(ignored; the run was discrete anyway), ve/ncsn/celeba set `training.loss = 'vesde'` for
`training.sde`, ve/celeba_ncsnpp set `model.sigma_begin` for `model.sigma_max`, and the
ve/ncsn files lacked the `model.num_classes` their normalization reads.
"""
import ml_collections

from configs import default_toy


def get_default_configs():
  config = default_toy.get_default_configs()
  config.seed = 42

  data = config.data
  data.dataset = "cifar10"          # datasets.TFDS_DATASETS, "lsun/<category>", "tfrecords:<dir>"
  data.data_dir = ""                # TFDS data_dir ("" = TFDS's default)
  data.image_size = 32
  data.num_channels = 3
  data.centered = False             # True: [-1, 1]; False: [0, 1]
  data.random_flip = True
  data.uniform_dequantization = False
  data.num_eval = 10_000            # evaluation-split images held in memory for eval

  sde = config.sde
  sde.name = "vesde"
  sde.sigma_min = 0.01
  sde.sigma_max = 50.0
  sde.beta_min = 0.1
  sde.beta_max = 20.0
  sde.num_scales = 1000

  training = config.training
  training.loss = "continuous"
  training.reduce_mean = False
  training.batch_size = 128
  training.n_iters = 1_300_000
  training.n_jitted_steps = 5
  training.log_freq = 50
  training.snapshot_freq = 50_000
  training.snapshot_freq_for_preemption = 10_000

  config.model = model = ml_collections.ConfigDict()
  model.name = "ncsnpp"
  model.parameterization = "noise"
  model.scale_input = False
  model.noise_conditioning = "log_sigma"
  model.sigma_data = 0.5            # parameterization "edm" (Karras et al.: 0.5 for [-1, 1])
  model.ema_rate = 0.999
  model.ema_warmup = True
  model.ema_sigma_rel = 0.0         # > 0: EDM2's power EMA of that width (ema.py)
  model.dropout = 0.1
  model.remat = False
  model.dtype = "float32"           # compute dtype; "bfloat16" keeps float32 parameters

  optim = config.optim
  optim.lr = 2e-4
  optim.warmup = 5000
  optim.grad_clip = 1.0

  sampling = config.sampling
  sampling.method = "pc"
  _set(sampling.pc, predictor="reverse_diffusion", corrector="langevin", snr=0.16)
  sampling.batch_size = 64
  sampling.num_samples = 64

  evaluate = config.eval
  evaluate.batch_size = 128
  evaluate.num_loss_batches = 10
  evaluate.enable_likelihood = False   # bits/dim on the evaluation split
  evaluate.likelihood_points = 1000
  evaluate.likelihood.hutchinson_type = "rademacher"
  evaluate.enable_sampling = False
  evaluate.feature_net = "inception"   # FID / KID / IS with the published network (README)
  return config


# --- Architecture presets (the published CIFAR-10 networks). -------------------------

def _set(config_dict, **values):
  for key, value in values.items():
    config_dict[key] = value


def ncsnpp(config, *, fourier=True, deep=False):
  """NCSN++: BigGAN blocks, FIR, residual input pyramid, Fourier features of log sigma
  (or DDPM's positional embedding of the timestep); 4 blocks per level (8 if deep)."""
  _set(config.model, name="ncsnpp", nf=128, ch_mult=(1, 2, 2, 2),
       num_res_blocks=8 if deep else 4, attn_resolutions=(16,), resamp_with_conv=True,
       fir=True, fir_kernel=(1, 3, 3, 1), skip_rescale=True, resblock_type="biggan",
       progressive="none", progressive_input="residual", progressive_combine="sum",
       embedding_type="fourier" if fourier else "positional", fourier_scale=16.0,
       init_scale=0.0, nonlinearity="swish")
  config.model.noise_conditioning = "log_sigma" if fourier else "time"
  if deep:
    config.training.n_iters = 950_000


def ddpmpp(config, *, deep=False):
  """DDPM++: NCSN++ without FIR and input pyramid, positional embedding of the timestep."""
  ncsnpp(config, fourier=False, deep=deep)
  _set(config.model, fir=False, progressive_input="none")


def ddpm(config):
  """The DDPM U-Net of Ho et al. (2020), 35.7M parameters at CIFAR-10."""
  _set(config.model, name="ddpm", nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2,
       attn_resolutions=(16,), resamp_with_conv=True, nonlinearity="swish", num_groups=32,
       noise_conditioning="time")


def ncsnv2(config, *, levels="64", conditional=False):
  """The NCSN RefineNet: NCSNv2 (noise-unconditional, output / sigma) or, conditional,
  NCSN; ELU, InstanceNorm++, Adam at 1e-4 without warmup or clipping."""
  _set(config.model, name="ncsnv2", nf=128, levels=levels, conditional=conditional,
       nonlinearity="elu", interpolation="bilinear")
  config.model.parameterization = "score" if conditional else "noise"
  config.training.loss = "smld"
  _set(config.optim, lr=1e-4, warmup=0, grad_clip=0.0)
  _set(config.sampling.pc, predictor="none", corrector="ald")
  del config.model["dropout"], config.model["remat"]     # not NCSNv2Config fields


def ncsnpp_high_resolution(config, *, size=256):
  """NCSN++ at 256 px (7 levels, 2 blocks) or 1024 px (nf 16, 8 levels, 1 block, no
  dropout): output-skip and input-skip pyramids."""
  ncsnpp(config)
  _set(config.model, ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks=2, progressive="output_skip",
       progressive_input="input_skip")
  if size == 1024:
    _set(config.model, nf=16, ch_mult=(1, 2, 4, 8, 16, 32, 32, 32), num_res_blocks=1,
         dropout=0.0, ema_rate=0.9999)
    _set(config.sde, sigma_max=1348.0, num_scales=2000)
    _set(config.training, batch_size=8, n_iters=2_400_000, snapshot_freq_for_preemption=5000)
    _set(config.data, image_size=1024)
    config.sampling.pc.snr = 0.15


def ddpm_256(config):
  """DDPM at 256 px (Ho et al.: 114M parameters): discrete VP, N = 1000, lr 2e-5."""
  ddpm(config)
  config.model.ch_mult = (1, 1, 2, 2, 4, 4)
  vp(config, continuous=False)
  config.sde.num_scales = 1000
  config.optim.lr = 2e-5


def ncsn(config):
  """NCSN (Song & Ermon, 2019) as published: its RefineNet ("ncsn" levels) with one row of
  conditional InstanceNorm++ per noise level, looked up at the level's index; 10 levels
  from sigma 1 to 0.01, lr 1e-3, no EMA, ALD with 100 steps per level."""
  ncsnv2(config, levels="ncsn", conditional=True)
  _set(config.sde, sigma_max=1.0, num_scales=10)
  _set(config.model, noise_levels=10, noise_conditioning="level_index")
  config.optim.lr = 1e-3
  config.model.ema_rate = 0.0
  _set(config.sampling.pc, n_steps=100, snr=0.316)


def ncsnv2_techniques(config, *, sigma_max, num_scales, snr):
  """NCSN with techniques 1, 2 and 4 of NCSNv2 (Song & Ermon, 2020, its ablation): the
  dataset's initial noise scale `sigma_max` (the base's: 50 CIFAR-10, 90 CelebA),
  `num_scales` levels, and ALD with 5 steps per level at step size `snr`. The ablations
  with technique 5 set EMA 0.999 besides; technique 3 (no noise conditioning) is NCSNv2."""
  config.sde.sigma_max = sigma_max
  config.sde.num_scales = config.model.noise_levels = num_scales
  _set(config.sampling.pc, n_steps=5, snr=snr)


def vp(config, *, continuous=True):
  """VP SDE (beta 0.1 -> 20), centred data, mean-reduced loss, EMA 0.9999; not
  `continuous`: the DDPM chain of N levels (sde_lib.DDPMChain, score_sde's discrete VP)
  with DDPM's epsilon loss and ancestral sampling."""
  config.sde.name = "vpsde" if continuous else "ddpm_chain"
  config.data.centered = True
  config.training.reduce_mean = True
  config.training.loss = "continuous" if continuous else "ddpm"
  config.model.ema_rate = 0.9999
  _set(config.sampling.pc, predictor="euler_maruyama" if continuous else "ancestral_sampling",
       corrector="none")


def subvp(config):
  vp(config)
  config.sde.name = "subvpsde"
