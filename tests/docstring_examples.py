"""Runs the docstring examples of `import ai_jax` as written, in one namespace and in the
order of ORDER, as a notebook user on one CPU device would:

  python tests/docstring_examples.py TMP_DIR SMOKE_RUN_DIR [NAME ...]

NAMEs (default: all of ORDER) pick the functions whose examples run. Prints doctest's
report of any failure and exits 1 then (tests/test_public_api.py runs it in a fresh
process: this test process has 8 fake devices, a notebook one)."""

import doctest
import sys

import ai_jax

ORDER = ("load_model", "export_hf", "sample", "score", "select", "load_config", "train",
         "run_experiment")


def main(tmp: str, smoke_run: str, *names: str) -> int:
  unknown = sorted(set(names) - set(ORDER))
  if unknown:
    print(f"no such public function: {unknown}; public functions are {ORDER}")
    return 1
  globs = {"ai_jax": ai_jax, "tmp": tmp, "smoke_run": smoke_run}
  parser = doctest.DocTestParser()
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  for name in [n for n in ORDER if not names or n in names]:
    doc = getattr(ai_jax, name).__doc__
    test = parser.get_doctest(doc, globs, f"ai_jax.{name}", ai_jax.__file__, 0)
    test.globs = globs  # one namespace (DocTest copies it): `model` carries to the next call
    if not test.examples:
      print(f"ai_jax.{name} has no docstring example")
      return 1
    runner.run(test, clear_globs=False)
  print(f"{runner.tries} examples, {runner.failures} failed")
  return 1 if runner.failures else 0


if __name__ == "__main__":
  sys.exit(main(*sys.argv[1:]))
