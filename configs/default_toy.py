"""Shared base of the 2-D experiments: a residual MLP score network on a toy density.

Experiment files under configs/toy/ start from `get_default_configs()` and override
a few keys. Every key is checked by configs/schema.py (a misspelt one stops the run) and
read by run/build.py, which turns it into plain arguments.
"""
import inspect

import ml_collections
from ml_collections import config_dict

import sampling as sampling_lib


def get_default_configs():
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = data = ml_collections.ConfigDict()
  data.dataset = "gmm"            # datasets.TOY_DISTRIBUTIONS
  data.num_eval = 2000            # held-out points (drawn with a separate seed)

  config.sde = sde = ml_collections.ConfigDict()
  sde.name = "vpsde"              # sde_lib.SDES
  sde.beta_min = 0.1
  sde.beta_max = 20.0
  sde.sigma_min = 0.01
  sde.sigma_max = 10.0
  sde.num_scales = 1000           # N
  sde.T = 1.0

  config.training = _training()

  config.model = model = ml_collections.ConfigDict()
  model.name = "mlp"              # models.MODELS
  model.hidden = 128
  model.depth = 3
  model.embed_dim = 32
  model.parameterization = "noise"   # models.parameterizations.PARAMETERIZATIONS
  model.scale_input = True
  model.center_input = False      # True: the network sees 2 x - 1 (score_sde's [0, 1] models)
  model.noise_conditioning = "log_sigma"   # models.parameterizations.NOISE_CONDITIONINGS
  model.sigma_data = 1.0          # the data's std, for parameterization "edm"
  model.ema_rate = 0.995
  model.ema_warmup = True         # decay min(ema_rate, (1 + step) / (10 + step))
  model.ema_sigma_rel = 0.0       # > 0: a power EMA of that relative width instead (EDM2)

  config.optim = optim = ml_collections.ConfigDict()
  optim.lr = 2e-3
  optim.beta1 = 0.9
  optim.adam_eps = 1e-8
  optim.weight_decay = 0.0
  optim.warmup = 200
  optim.grad_clip = 1.0
  optim.schedule = "constant"     # after the warmup: schedules.SCHEDULES
  optim.decay_steps = 100_000     # "cosine": steps from the peak rate to 0
  optim.t_ref = 70_000            # "inverse_sqrt": lr / sqrt(max(step / t_ref, 1)) (EDM2)

  config.sampling = sampling = sampler_settings()
  sampling.method = "pc"          # a key of sampling.SAMPLERS; its settings: sampling.<method>
  sampling.batch_size = 4000      # samples per round (split over all devices)
  sampling.num_samples = 4000
  sampling.class_label = -1       # class-conditional networks: >= 0 samples that class
  sampling.guidance_scale = 0.0   # classifier-free guidance w: (1 + w) s(c) - w s(null)
  sampling.guidance_interval = () # (t_lo, t_hi): guide only there; () everywhere
  sampling.classifier_scale = 0.0 # classifier guidance: s + scale grad log p_t(c | x)
  # Autoguidance (Karras et al., 2024): s_weak + weight (s - s_weak), the weak model the EMA
  # parameters of another workdir's checkpoint (any network trained under this SDE: its
  # config.json says which).
  sampling.autoguidance = ml_collections.ConfigDict()
  sampling.autoguidance.workdir = ""          # the weak model's workdir; "" off
  sampling.autoguidance.checkpoint_step = -1  # its checkpoint; -1 the latest
  sampling.autoguidance.weight = 1.0          # w; 1 is the main model alone
  sampling.pc.snr = 0.05          # 2-D data: Langevin steps must stay small
  for name in ("ddim", "edm_heun", "dpm_solver_2m", "dpm_solver_2m_sde", "dpm_solver_3m"):
    sampling[name].num_steps = 50
  for name in sampling_lib.SAMPLERS:
    if "denoise" in sampling[name]:   # end with Tweedie's formula (PC: the noise-free mean)
      sampling[name].denoise = True

  _add_evaluation_sections(config)
  return config


def consistency_student(config, loss: str = "consistency_distillation"):
  """`config` turned into a consistency model's (Song et al., 2023) trained by `loss`: its
  network a consistency function, the target an EMA of rate mu = 0.95 (the paper's), one-
  step sampling; the held-out loss (a DSM-type loss's) and the likelihood off (the
  probability-flow ODE of a consistency function's score is not what it learns)."""
  config.model.parameterization = "consistency"
  config.model.ema_rate, config.model.ema_warmup = 0.95, False
  config.training.loss = loss
  config.eval.enable_loss = config.eval.enable_likelihood = False
  config.sampling.method = "consistency"
  return config


def sampler_settings() -> ml_collections.ConfigDict:
  """One sub-dict per sampler (sampling.SAMPLERS) with every keyword its factory takes,
  at the factory's defaults, so each is settable as --config.sampling.<sampler>.<name>."""
  settings = ml_collections.ConfigDict()
  for name, factory in sampling_lib.SAMPLERS.items():
    arguments = list(inspect.signature(factory).parameters.values())[2:]   # after (sde, shape)
    settings[name] = {a.name: config_dict.placeholder(int) if a.default is None else a.default
                      for a in arguments}
  return settings


def _training():
  """config.training: the loss, steps, checkpoints and post-hoc EMA."""
  training = ml_collections.ConfigDict()
  training.loss = "continuous"    # losses.MULTI_LEVEL_LOSSES
  training.reduce_mean = False
  training.likelihood_weighting = False
  training.importance_sampling = False
  training.min_time = 1e-5        # smallest training time of the continuous loss
  # The per-noise-level term (losses.Objective), under the loss's time distribution and
  # weighting: "dsm" (denoising, needs the kernel; "dsm_cv" with its control variate), or
  # kernel-free "ism" / "ssm".
  training.objective = "dsm"      # losses.OBJECTIVES
  training.n_projections = 1      # "ssm": Gaussian projections per example (one JVP each)
  training.trace_estimator = "auto"   # "ism": "exact" (D JVPs), "hutchinson", "auto" (D <= 16)
  training.batch_size = 512       # global, split over all devices and processes
  training.n_iters = 6000
  training.n_jitted_steps = 10    # steps per device call (lax.scan)
  training.accumulation_steps = 1 # k: each step's gradient from k microbatches of batch_size / k
  training.model_axis_size = 1    # > 1: train state sharded over groups of this many devices
  training.log_freq = 500
  training.snapshot_freq = 2000   # kept for evaluation
  training.snapshot_freq_for_preemption = 500   # overwritten (keeps 2)
  training.eval_freq = 0          # > 0: held-out loss and a sample picture to TensorBoard
  training.label_dropout = 0.0    # class-conditional: P(label -> null), for guidance
  # Post-hoc EMA (ema.py, Karras et al. 2024): power EMAs of these relative widths are
  # tracked and stored every snapshot_freq steps in <workdir>/ema_snapshots/; any other
  # width is then rebuilt from them (eval.posthoc_sigma_rel). EDM2: (0.05, 0.10).
  training.posthoc_ema = dict(sigma_rels=(), snapshot_freq=0)
  # loss "weighted" (losses.weighted_loss, weightings.py): any weighting w(lambda) with
  # noise levels from any distribution; "edm" + "log_normal" is EDM's loss.
  training.weighted = dict(weighting="sigma2", noise_levels="uniform", p_mean=-1.2, p_std=1.2,
                           min_snr_gamma=5.0, sigmoid_bias=0.0)
  # loss "consistency_distillation" / "consistency_training" (consistency.get_loss_fn):
  # the network is a consistency function (model.parameterization "consistency"), its
  # target the EMA (model.ema_rate is the target's rate mu). Distillation takes one
  # `teacher` ODE step ("heun" or "ddim") on the `grid` of num_steps steps from T to eps
  # (eps: the consistency boundary, also the parameterization's) with the EMA parameters
  # of teacher_workdir's checkpoint teacher_checkpoint_step: a trained run of any network
  # under the same SDE, at a step it keeps (a resumed run has the same teacher). With
  # init_student the student starts from the teacher's parameters (the paper's
  # distillation; the teacher must have the student's network). Training has no teacher;
  # `schedule` True takes the paper's N(k) and mu(k) instead of num_steps and mu.
  training.consistency = dict(teacher_workdir="", teacher_checkpoint_step=-1, teacher="heun",
                              num_steps=18, grid="edm", eps=1e-3, schedule=False,
                              init_student=False)
  return training


def _add_evaluation_sections(config):
  """config.eval, config.controllable and config.classifier."""
  config.eval = evaluate = ml_collections.ConfigDict()
  evaluate.enable_loss = True
  evaluate.enable_likelihood = True
  evaluate.enable_sampling = True
  evaluate.num_loss_batches = 20
  evaluate.batch_size = 2000           # loss and likelihood batches
  evaluate.likelihood_points = 2000     # images: the first N of the evaluation split
  evaluate.bpd_repeats = 1             # images: dequantization draws per image
  evaluate.likelihood = dict(hutchinson_type="exact", rtol=1e-5, atol=1e-5, eps=1e-5,
                             max_steps=4096)   # likelihood.get_likelihood_fn; 2-D: exact trace
  evaluate.checkpoint_step = -1        # --mode sample: -1 = latest
  evaluate.posthoc_sigma_rel = 0.0     # > 0: evaluate / sample the post-hoc EMA of this width
  evaluate.samplers = ()               # samplers to evaluate; () = (sampling.method,)
  evaluate.feature_net = ""            # images: FID / KID / IS / PR features (feature_nets.py)
  evaluate.fid_protocol = "uint8"      # evaluation.PROTOCOLS: samples scored as saved (uint8)
  evaluate.fid_reference = "train"     # reference images: the "train" (convention) or "eval" split
  evaluate.fid_reference_size = 0      # its first N images; 0: all of them

  # --mode inpaint / colorize (run/controllable.py), with the PC sampler of sampling.pc.
  config.controllable = controllable = ml_collections.ConfigDict()
  controllable.mask = "half"           # "half", "box", "random"
  controllable.method = "replacement"  # or "repaint"
  controllable.resamplings = 10        # RePaint's repeats per step

  # --mode train_classifier (run/classifier.py): p_t(c | x_t) for classifier guidance.
  config.classifier = classifier = ml_collections.ConfigDict()
  classifier.num_classes = 10
  classifier.n_iters = 3000
  classifier.batch_size = 128
  classifier.lr = 2e-3
