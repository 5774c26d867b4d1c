"""The drivers: `build` turns a config into an Experiment once; `train`, `evaluate`
(`evaluate`, `sample`, `report`) loop over it. The only package that knows about
devices, hosts, files and the ConfigDict; everything below it receives plain arguments.
"""


class RunError(Exception):
  """A failure to report to the user in one line (bad input, non-finite loss, ...)."""
