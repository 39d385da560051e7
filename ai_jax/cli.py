"""The shared command line of ai_jax's stages: --config, --workdir, --overwrite.

Flags are defined only when a stage runs as __main__, so any number of stage modules can
be imported together (by an experiment, a notebook or the tests) without absl's
duplicate-flag error.
"""

from __future__ import annotations

import json
import sys
from typing import Callable, Mapping


def check_overrides(argv: list[str], governed: Mapping[str, str] | None = None) -> None:
  """Exits with one line when a --config.KEY override names a key the config file does
  not declare (or one an experiment sets itself), before absl parses anything: absl would
  raise a long traceback ending in AttributeError: "'KEY'"."""
  from ai_jax import config_files
  keys = config_files.override_keys(argv)
  spec = config_files.config_spec(argv)
  if not keys or spec is None:
    return
  try:
    config = config_files.load(spec)
    for key in keys:
      config_files.check_key(config, key, governed)
  except (config_files.ConfigKeyError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")


def run_stage(run: Callable, example: str, *, help_config: str,
              hide: tuple[str, ...] = (), governed: Mapping[str, str] | None = None) -> None:
  """Parses the flags and prints run(config, workdir, overwrite)'s summary as JSON.
  `governed` ({key: the key that sets it}) names the keys an experiment sets itself."""
  from absl import app, flags
  from ml_collections import config_flags

  check_overrides(sys.argv[1:], governed)

  config = config_flags.DEFINE_config_file("config", None, help_config, lock_config=True)
  workdir = flags.DEFINE_string("workdir", None, "Run directory.")
  overwrite = flags.DEFINE_bool("overwrite", False,
                                "Replace this stage's existing outputs in --workdir.")

  def main(argv):
    from absl import logging
    logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if config.value is None or workdir.value is None:
      raise app.UsageError(f"--config and --workdir are required, e.g. {example}")
    summary = run(config.value, workdir.value, overwrite=overwrite.value)
    print(json.dumps({k: v for k, v in summary.items() if k not in hide}, indent=2))

  app.run(main)
