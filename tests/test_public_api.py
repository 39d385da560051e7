"""`import ai_jax`: the notebook calls, each docstring example run as written, in one
namespace and in the order the module docstring gives (load, export, sample, score,
select, config, train, experiment): tests/docstring_examples.py, in a fresh process."""

import doctest
import os
import subprocess
import sys

import ai_jax
from ai_jax import buckets
from conftest import REPO, requires_embedded, subprocess_env
from docstring_examples import ORDER


def test_public_names_are_the_functions():
  import importlib
  importlib.import_module("ai_jax.sample")  # the command module of the same name
  assert set(ORDER) == set(ai_jax.__all__)
  assert all(callable(getattr(ai_jax, name)) for name in ORDER)
  from ai_jax import sample
  assert sample is ai_jax.sample and sample.__module__ == "ai_jax"


def test_bucket_rule_example():
  assert doctest.testmod(buckets).failed == 0


def _run_examples(tmp_path, smoke_run: str, names) -> None:
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "tests", "docstring_examples.py"), str(tmp_path),
       smoke_run, *names], cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
      timeout=900)
  assert proc.returncode == 0, (proc.stdout[-6000:] + proc.stderr[-2000:])
  assert proc.stdout.rstrip().endswith(" examples, 0 failed"), proc.stdout[-2000:]


# The last example resumes the session's smoke run, so it waits for that run; the others
# do not, and run while it computes (as one test they ended the suite on one core).
SMOKE_EXAMPLES = ("run_experiment",)


@requires_embedded
def test_docstring_examples_run(tmp_path):
  _run_examples(tmp_path, "", [n for n in ORDER if n not in SMOKE_EXAMPLES])


@requires_embedded
def test_docstring_examples_on_the_smoke_run(tmp_path, smoke_experiment):
  _run_examples(tmp_path, str(smoke_experiment), SMOKE_EXAMPLES)
