"""The failures main.py reports in one line, each with its exit code (README, "When a run
stops"): 0 finished; 1 a bug (traceback); and the `exit_code` of each class below."""


class RunError(Exception):
  """A failure to report in one line. Exit code 2: bad input (a config value, a file)."""
  exit_code = 2
  label = "error"


class WorkdirMismatch(RunError):
  """The workdir's checkpoints hold another config's train state (exit code 3)."""
  exit_code = 3


class WorkdirLocked(RunError):
  """Another process writes to the workdir (exit code 4)."""
  exit_code = 4


class WriteFailed(RunError):
  """Writing to the workdir failed (disk full, permissions); the last good checkpoint
  stays loadable (exit code 5)."""
  exit_code = 5


class Diverged(RunError):
  """A non-finite training loss (exit code 6)."""
  exit_code = 6


class Preempted(RunError):
  """Stopped by SIGTERM after saving a checkpoint: rerun the command to resume (exit
  code 75, EX_TEMPFAIL: "try again")."""
  exit_code = 75
  label = "stopped"
