"""The drivers. `build` reads the ConfigDict once into an Experiment (plain values, small
frozen specs, jitted functions); `train`, `evaluate`, `controllable` and `classifier` loop
over it; infra/workdir.py owns a run's folder (lock, recorded config, checkpoints),
infra/weights.py reads the parameters a mode needs from workdirs, infra/resumable.py keeps
rounds and batches in files, and infra/mesh.py places arrays on devices. Only this package
(with those) knows about devices, hosts and the config; the modules below it receive plain
arguments. The errors main.py reports in one line are infra/errors.py's.
"""
from infra.errors import (Diverged, Preempted, RunError,  # noqa: F401  (re-exported)
                          WorkdirLocked, WorkdirMismatch, WriteFailed)
