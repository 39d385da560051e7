"""`import ai_jax`: the notebook calls, each docstring example run as written, in one
namespace and in the order the module docstring gives (load, export, sample, score,
select, config, train, experiment)."""

import doctest

import ai_jax
from ai_jax import buckets
from conftest import requires_embedded

ORDER = ("load_model", "export_hf", "sample", "score", "select", "load_config", "train",
         "run_experiment")


def test_public_names_are_the_functions():
  import importlib
  importlib.import_module("ai_jax.sample")  # the command module of the same name
  assert set(ORDER) == set(ai_jax.__all__)
  assert all(callable(getattr(ai_jax, name)) for name in ORDER)
  from ai_jax import sample
  assert sample is ai_jax.sample and sample.__module__ == "ai_jax"


def test_bucket_rule_example():
  assert doctest.testmod(buckets).failed == 0


@requires_embedded
def test_docstring_examples_run(tmp_path, smoke_experiment):
  globs = {"ai_jax": ai_jax, "tmp": str(tmp_path), "smoke_run": str(smoke_experiment)}
  parser = doctest.DocTestParser()
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  for name in ORDER:
    doc = getattr(ai_jax, name).__doc__
    test = parser.get_doctest(doc, globs, f"ai_jax.{name}", ai_jax.__file__, 0)
    test.globs = globs  # one namespace (DocTest copies it): `model` carries to the next call
    assert test.examples, f"ai_jax.{name} has no docstring example"
    runner.run(test, clear_globs=False)
  assert runner.failures == 0, f"{runner.failures} docstring examples failed (output above)"
