"""The layers stay apart: the config stops at run/build.py (with main.py and the schema
that checks it, configs/schema.py, the only code that reads a ConfigDict), and the
Experiment it makes holds plain values."""
import ast
import dataclasses
import glob
import os

import ml_collections

from configs import default_toy
from run import build
from tests.test_training import ROOT, shrink

CONFIG_READERS = {os.path.join("run", "build.py")}
# The drivers, the data layer beside them and the infrastructure below them.
CHECKED = ("run/*.py", "data.py", "infra/*.py")


def _config_reads(path: str) -> list:
  """(line, what) of every use of a name or attribute called `config`, and of any
  ml_collections import, in the module at `path`."""
  reads = []
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Name) and node.id == "config":
      reads.append((node.lineno, "config"))
    elif isinstance(node, ast.Attribute) and node.attr == "config":
      reads.append((node.lineno, ".config"))
    elif isinstance(node, ast.arg) and node.arg == "config":
      reads.append((node.lineno, "argument config"))
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      names = [getattr(node, "module", None) or ""] + [a.name for a in node.names]
      if any("ml_collections" in n for n in names):
        reads.append((node.lineno, "imports ml_collections"))
  return reads


def test_no_driver_data_or_infra_module_but_build_reads_the_config():
  paths = [p for pattern in CHECKED for p in glob.glob(os.path.join(ROOT, pattern))
           if os.path.relpath(p, ROOT) not in CONFIG_READERS]
  assert len(paths) >= 12, paths
  reads = {os.path.relpath(p, ROOT): r for p in paths if (r := _config_reads(p))}
  assert not reads, reads


def test_the_config_reader_check_sees_a_config_read():
  """The check above is not vacuous: build.py itself is flagged."""
  assert _config_reads(os.path.join(ROOT, "run", "build.py"))


def _holds_a_config_dict(value, seen) -> bool:
  if id(value) in seen:
    return False
  seen.add(id(value))
  if isinstance(value, (ml_collections.ConfigDict, ml_collections.FrozenConfigDict)):
    return True
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return any(_holds_a_config_dict(getattr(value, f.name), seen)
               for f in dataclasses.fields(value))
  if isinstance(value, dict):
    return any(_holds_a_config_dict(v, seen) for v in value.values())
  if isinstance(value, (list, tuple)):
    return any(_holds_a_config_dict(v, seen) for v in value)
  return False


def test_the_experiment_holds_no_config_dict():
  exp = build.build(shrink(default_toy.get_default_configs()))
  assert not _holds_a_config_dict(exp, set())
  assert _holds_a_config_dict({"x": [ml_collections.ConfigDict()]}, set())
