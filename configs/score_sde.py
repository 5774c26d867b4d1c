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
the label 999 t, in both. "<name>,tiny" shrinks the network (nf 16, ch_mult (1, 2), one
block, 16 px) like tools/score_sde_reference.py --tiny, for tests.
"""
import importlib


def get_config(name: str):
  name, _, variant = name.partition(",")
  if variant not in ("", "tiny"):
    raise ValueError(f"unknown score_sde config variant {variant!r}; valid choices: ['tiny']")
  config = importlib.import_module("configs." + name.replace("/", ".")).get_config()
  if config.training.loss != "continuous" or config.model.name not in ("ncsnpp", "ddpm"):
    raise ValueError(f"score_sde config {name!r}: only the continuously trained NCSN++ / "
                     "DDPM++ / DDPM networks are ported (discrete ones take timestep labels, "
                     "and score_sde's NCSNv2 tree is not mapped yet)")
  if config.model.name == "ddpm":
    config.model.attention_every_up_block = False
  config.model.center_input = not config.data.centered
  config.model.parameterization = "scaled_score" if config.sde.name == "vesde" else "noise"
  if variant == "tiny":
    ddpm = config.model.name == "ddpm"     # its GroupNorm has 32 groups
    config.model.nf = 32 if ddpm else 16
    config.model.ch_mult = (1, 1) if ddpm else (1, 2)
    config.model.num_res_blocks = 1
    config.data.image_size = 16
  return config
