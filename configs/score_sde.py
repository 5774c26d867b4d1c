r"""A published score_sde config with score_sde's conventions, for imported checkpoints
(tools/import_score_sde.py):

  python main.py --config configs/score_sde.py:ve/cifar10_ncsnpp_continuous \
      --workdir <dir> --mode eval

loads configs/<name>.py (the same settings as score_sde's configs/<name>.py) and sets
* model.center_input = not data.centered: score_sde's networks map [0, 1] data to
  [-1, 1] themselves;
* model.attention_every_up_block = False for DDPM (score_sde's re-implementation attends
  once per up level);
* model.parameterization = "scaled_score" for VE networks (score_sde's scale_by_sigma:
  the output is sigma times the score; this codebase's own VE configs train "noise",
  its negative), "noise" for VP / sub-VP (the output is epsilon, as here).
Noise conditioning needs nothing: Fourier features see log sigma and positional embeddings
the label 999 t, in both. Discretely trained VP networks (vp/cifar10_ddpmpp,
vp/cifar10_ncsnpp, vp/ddpm/{cifar10,cifar10_unconditional,bedroom,church,celebahq}) live
on the DDPM chain (config.sde.name = "ddpm_chain", sde_lib.DDPMChain): they see the same
label t (N - 1) = 999 t ("time") and output epsilon ("noise"), which score_sde divides by
the chain's sqrt(1 - abar) at level floor(999 t) + 1, the chain's sigma(t) here.
Discretely trained VE networks (ve/cifar10_ncsnpp, ve/celeba_ncsnpp, ve/cifar10_ddpm) see
the index of the noise level, counting down (model.noise_conditioning = "level_index").
NCSNv2 (ve/ncsnv2/*, trained on N discrete levels) sees no noise level; score_sde divides
its output by sigma_i, i = round((1 - t) (N - 1)), here by sigma(t), which is the same at
the grid times t_i = 1 - i / (N - 1) its samplers use and the continuous interpolation
between them. "<name>,tiny" shrinks the network (nf 16, ch_mult (1, 2), one block, 16 px;
NCSNv2: nf 8) like tools/score_sde_reference.py --tiny, for tests.
"""
import importlib


def get_config(name: str):
  name, _, variant = name.partition(",")
  if variant not in ("", "tiny"):
    raise ValueError(f"unknown score_sde config variant {variant!r}; valid choices: ['tiny']")
  config = importlib.import_module("configs." + name.replace("/", ".")).get_config()
  ncsnv2 = config.model.name == "ncsnv2" and not config.model.conditional
  discrete_ve = config.training.loss == "smld" and config.model.name in ("ncsnpp", "ddpm")
  if not (ncsnv2 or discrete_ve or (config.training.loss in ("continuous", "ddpm")
                                    and config.model.name in ("ncsnpp", "ddpm"))):
    raise ValueError(f"score_sde config {name!r}: not ported (ported: the NCSN++ / DDPM++ / "
                     "DDPM networks, continuous or discrete, and NCSNv2; NCSN conditions on a "
                     "lookup table per level)")
  if discrete_ve:
    config.model.noise_conditioning = "level_index"
  if config.model.name == "ddpm":
    config.model.attention_every_up_block = False
  config.model.center_input = not config.data.centered
  config.model.parameterization = "scaled_score" if config.sde.name == "vesde" else "noise"
  if variant == "tiny" and ncsnv2:
    config.model.nf = 8
  elif variant == "tiny":
    ddpm = config.model.name == "ddpm"     # its GroupNorm has 32 groups
    config.model.nf = 32 if ddpm else 16
    config.model.ch_mult = (1, 1) if ddpm else (1, 2)
    config.model.num_res_blocks = 1
    config.data.image_size = 16
  return config
