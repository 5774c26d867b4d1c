"""Shared plumbing of the experiment scripts: flags, output files, markdown tables."""
import os

from absl import flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

flags.DEFINE_string("outdir", "results", "Where the table (.md) and figure (.png) go.")
flags.DEFINE_bool("quick", False, "Tiny sizes: checks that the script runs, numbers are not meaningful.")
FLAGS = flags.FLAGS


def markdown_table(header, rows, floatfmt=".3g"):
  """Rows of cells (str or number) -> a GitHub markdown table."""
  def cell(v):
    return format(v, floatfmt) if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def write_outputs(name, title, setup, table, figure):
  """Writes <outdir>/<name>.md (title, setup, table, figure link) and <name>.png; prints the table."""
  os.makedirs(FLAGS.outdir, exist_ok=True)
  figure_path = os.path.join(FLAGS.outdir, f"{name}.png")
  figure.savefig(figure_path, dpi=110, bbox_inches="tight")
  plt.close(figure)
  text = f"## {title}\n\n{setup}\n\n{table}\n\n![{name}]({name}.png)\n"
  with open(os.path.join(FLAGS.outdir, f"{name}.md"), "w") as f:
    f.write(text)
  print(text)
  return text
