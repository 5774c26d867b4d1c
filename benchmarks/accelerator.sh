#!/usr/bin/env bash
# The accelerator check of issue 34, at most 8 minutes on one NVIDIA GPU: the Flax DDPM
# U-Net (models/ddpm.py) against diffusers' UNet2DModel on the same GPU, train step and
# DDIM sampling, both widths (nf 64, nf 128), float32 and bfloat16 (Flax --dtype
# bfloat16 against torch.autocast bfloat16), through benchmarks/unet.py. It prints each
# table with the command that made it, for benchmarks/README.md.
#
#   bash benchmarks/accelerator.sh              # from the repository root
#   PYTHON=/path/to/python bash benchmarks/accelerator.sh
#   WHEELS=/path/to/wheels bash benchmarks/accelerator.sh   # offline: pip --find-links
#
# Environment: $PYTHON (default python3) is used as it is if it has jax with a GPU
# backend and torch with CUDA (the lent GPU machines' image has both, not diffusers);
# otherwise a virtual environment ($VENV, default /tmp/accelerator_venv) gets jax[cuda12]
# and CUDA torch at requirements.txt's and benchmarks/requirements.txt's pins. diffusers,
# if missing, goes alone into $SITE (default /tmp/accelerator_site). With $WHEELS, pip
# reads only that folder (machines without network: carry the wheels there).
# Without a GPU it stops at once, with one line and exit status 1, installing nothing.
# Not yet here: the deep NCSN++ (cifar10_ddpmpp_deep_continuous) at batch 128 in bfloat16
# has no diffusers peer of equal architecture in benchmarks/unet.py; the script says so.
set -euo pipefail

if ! command -v nvidia-smi > /dev/null 2>&1 || ! nvidia-smi -L 2> /dev/null | grep -q '^GPU '; then
  echo "accelerator.sh: no NVIDIA GPU here (nvidia-smi lists none); run it on a GPU machine" >&2
  exit 1
fi

cd "$(dirname "$0")/.."
START=$SECONDS
PYTHON=${PYTHON:-python3}
FROM=()
[ -n "${WHEELS:-}" ] && FROM=(--no-index --find-links "$WHEELS")
DIFFUSERS=$(grep '^diffusers==' benchmarks/requirements.txt)
if ! "$PYTHON" -c "import jax, torch; assert jax.default_backend() == 'gpu' and torch.cuda.is_available()" > /dev/null 2>&1; then
  VENV=${VENV:-/tmp/accelerator_venv}      # no GPU jax + CUDA torch here yet: install them
  python3 -m venv "$VENV"
  JAX=$(grep '^jax==' requirements.txt | cut -d= -f3)
  TORCH=$(grep '^torch==' benchmarks/requirements.txt | cut -d= -f3)
  timeout 240 "$VENV/bin/pip" install --quiet "${FROM[@]}" "jax[cuda12]==$JAX" \
    $(grep -v -E '^(#|jax==|jaxlib==|tensorflow)' requirements.txt)
  TORCH_INDEX=(--index-url https://download.pytorch.org/whl/cu126)
  [ -n "${WHEELS:-}" ] && TORCH_INDEX=()
  timeout 120 "$VENV/bin/pip" install --quiet "${FROM[@]}" "${TORCH_INDEX[@]}" "torch==$TORCH"
  PYTHON=$VENV/bin/python
fi
if ! "$PYTHON" -c "import diffusers" > /dev/null 2>&1; then
  SITE=${SITE:-/tmp/accelerator_site}      # diffusers alone (its dependencies: the image's)
  timeout 60 "$PYTHON" -m pip install --quiet --no-deps --target "$SITE" "${FROM[@]}" "$DIFFUSERS"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PYTHON" -c "import jax, torch, diffusers; assert jax.default_backend() == 'gpu' and torch.cuda.is_available()" \
  || { echo "accelerator.sh: $PYTHON lacks GPU jax, CUDA torch or diffusers after installing" >&2; exit 1; }
echo "installed in $((SECONDS - START)) s; $(nvidia-smi -L | head -1)"
"$PYTHON" -c "import jax, torch, diffusers; print('jax', jax.__version__, jax.devices()[0].device_kind, '| torch', torch.__version__, '| diffusers', diffusers.__version__)"

run() {   # run <seconds> <benchmarks.unet flags...>: the command, then its table
  local limit=$1
  shift
  echo
  echo "### python -m benchmarks.unet --torch_device cuda $*"
  timeout "$limit" "$PYTHON" -m benchmarks.unet --torch_device cuda "$@" 2>&1 \
    | grep -E '^(\||backend)' || echo "(failed or over ${limit} s)"
}
run 75 --widths 64,128 --batch_half 256 --batch_full 128 --pairs 5
run 75 --widths 64,128 --batch_half 256 --batch_full 128 --pairs 5 --dtype bfloat16 --torch_autocast_bf16
run 60 --mode sample --widths 64,128 --batch_sample 256 --steps 20 --pairs 3
run 60 --mode sample --widths 64,128 --batch_sample 256 --steps 20 --pairs 3 --dtype bfloat16 --torch_autocast_bf16
echo
echo "### deep NCSN++ (cifar10_ddpmpp_deep_continuous), batch 128, bfloat16: not built yet (no diffusers peer of equal architecture in benchmarks/unet.py; issue 34)"
echo "total $((SECONDS - START)) s"
