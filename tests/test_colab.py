"""colab/active_inheritance.ipynb: committed clean, and runs top to bottom on the smoke config.

The notebook is executed in a fresh Jupyter kernel (nbclient), as a user would run it in a
checkout: its setup cell must skip the clone and pip install. Its run cell calls the
experiment on the work directory of the suite's one smoke run (conftest.smoke_experiment):
every stage runs and finds its work done (the resume path; the CLI run that made the
folder is the test of the computation), so the notebook costs seconds, not another run.
"""

import importlib
import json
import os

import pytest

from conftest import requires_embedded, subprocess_env

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO_ROOT, "colab", "active_inheritance.ipynb")
ARMS = ("base", "random", "first", "longest")


def _require(module: str):
  # A missing test dependency fails, never skips: a skipped notebook test would pass silently.
  try:
    return importlib.import_module(module)
  except ImportError as e:
    pytest.fail(f"{module} is not importable ({e}); the notebook test needs nbclient, nbformat "
                "and ipykernel: pip install -e .[test]", pytrace=False)


def _read_notebook():
  nbformat = _require("nbformat")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  return nb


def test_committed_notebook_is_clean():
  nb = _read_notebook()
  assert nb.nbformat == 4
  assert nb.metadata["kernelspec"]["name"] == "python3"
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert code and nb.cells[0].cell_type == "markdown"
  for cell in code:
    assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
  source = "\n".join(c.source for c in code)
  # Runs under a plain kernel too: no shell magics.
  assert not any(line.lstrip().startswith(("!", "%")) for line in source.splitlines())
  assert "AI_JAX_NOTEBOOK_SKIP_INSTALL" in source and "AI_JAX_NOTEBOOK_WORKDIR" in source


def _outputs(nb):
  return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


@requires_embedded
def test_notebook_runs_smoke(smoke_experiment, monkeypatch):
  nbclient = _require("nbclient")
  exceptions = _require("nbclient.exceptions")
  _require("ipykernel")
  nb = _read_notebook()

  # The kernel is a subprocess: it inherits this environment.
  workdir = smoke_experiment
  monkeypatch.setenv("AI_JAX_NOTEBOOK_SKIP_INSTALL", "1")
  monkeypatch.setenv("AI_JAX_NOTEBOOK_WORKDIR", str(workdir))
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  # conftest.py fakes 8 CPU devices for the sharding tests; a notebook user has one.
  monkeypatch.setenv("XLA_FLAGS", subprocess_env()["XLA_FLAGS"])

  client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                   resources={"metadata": {"path": REPO_ROOT}})
  try:
    client.execute()
  except exceptions.CellExecutionError as e:
    pytest.fail(f"a notebook cell failed:\n{str(e)[-4000:]}", pytrace=False)

  outputs = _outputs(nb)
  errors = [o for o in outputs if o.output_type == "error"]
  assert not errors, errors
  stdout = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  assert "Setup skipped" in stdout, stdout[-2000:]

  # The run wrote its report and summary into the work directory the environment named.
  report = (workdir / "report.md").read_text(encoding="utf-8")
  for arm in ARMS:
    assert f"| {arm} |" in report, arm
  summary = json.loads((workdir / "summary.json").read_text(encoding="utf-8"))
  assert set(summary["arms"]) == set(ARMS)
  metric = summary["targeted_metrics"][0]

  # Figures: every plot of the run and the ablation, as inline PNGs.
  data = [o.get("data", {}) for o in outputs if o.output_type in ("display_data",
                                                                     "execute_result")]
  pngs = [d["image/png"] for d in data if "image/png" in d]
  expected = [f for f in os.listdir(workdir / "plots") if f.endswith(".png")]
  assert len(expected) >= 4  # metrics_{greedy,sampled,toxicity}, shift_<metric>
  assert len(pngs) == len(expected) + 1, (len(pngs), expected)
  markdown = [d["text/markdown"] for d in data if "text/markdown" in d]
  shown = "\n".join(markdown)
  assert "plots/metrics_greedy.png" in shown and "ablation_" in shown

  # The report itself, and the compact table of the targeted metric in greedy mode.
  assert any(m.startswith("# Active inheritance") for m in markdown)
  tables = [m for m in markdown if f"| arm | {metric} [" in m]
  assert len(tables) == 1, markdown
  rows = {r.split("|")[1].strip(): r for r in tables[0].splitlines() if r.startswith("| ")}
  assert list(rows)[1:] == list(summary["arms"])  # after the header, one row per arm
  estimate = summary["evaluations"]["greedy"]["metrics"][metric]["arms"]["longest"]["estimate"]
  assert estimate["value"] is not None
  assert rows["longest"].count("[") == 2 and "%" in rows["longest"]  # value and vs base, CIs
