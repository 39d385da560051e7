"""The profile stage: a model's bias, calibration and accuracy suites (configs/profile.py).

  run(config, workdir)   one model (python -m ai_jax.profile): DIR/suites/<suite>.json,
                         DIR/profile_summary.json, DIR/profile.md, DIR/plots/
  profile_model(...)     the same scoring for one model into a given ProfileDir, which the
                         experiment's profile stage calls once per student

Everything cheap is checked before weights load: suite names, each suite's data (a missing
package names its install command), the options. A suite whose scored file matches the
current settings is reused, so a rerun after an interruption scores only what is missing.
"""

from __future__ import annotations

import os
import shutil

from ai_jax.profiling import profile_report, suite_run
from ai_jax.profiling import suites as suites_lib
from ai_jax.profiling.suites import base
from ai_jax.run import layout
from ai_jax.store.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic


def check_data(options: suite_run.ProfileOptions) -> None:
  """Every enabled suite's data is there (before any model loads)."""
  for run in options.suites:
    suite = suites_lib.get(run.name)
    if not (run.path or suite.default_path):
      raise ValueError(f"profile suite {run.name!r} has no data of its own: {suite.install}")
    base.resolve(run.path or suite.default_path, suite.install)


def profile_model(model_path: str, config, out: layout.ProfileDir,
                  options: suite_run.ProfileOptions, mesh=None) -> dict[str, dict]:
  """Scores (or finds scored) every configured suite for the model at model_path."""
  from ai_jax import loading
  resolved = loading.resolve_model_path(model_path or None)

  def get_model():
    if mesh is not None:
      return loading.load_model(resolved, dtype=config.model.dtype, mesh=mesh)
    return loading.load_model(resolved, dtype=config.model.dtype,
                              mesh_shape=tuple(config.mesh_shape))

  return suite_run.run_suites(get_model, options, out, loading.model_identity(resolved))


def write_outputs(out: layout.ProfileDir, profile: dict, models: list[str],
                  base_model: str | None, confidence: float, title: str) -> None:
  lines = [f"# {title}", ""] + profile_report.table_lines(profile, models, base_model,
                                                          confidence)
  for name, png in profile_report.reliability_plots(profile).items():
    path = out.reliability_plot(name)
    write_bytes_atomic(path, png)
    lines += [f"![{name} reliability]({os.path.relpath(path, out.root)})", ""]
  write_text_atomic(out.report, "\n".join(lines))


def run(config, workdir: str, overwrite: bool = False) -> dict:
  """Profiles config.model into workdir; returns the summary."""
  options = suite_run.ProfileOptions.from_config(config)
  check_data(options)
  out = layout.ProfileDir(workdir)
  if overwrite:
    for p in (os.path.dirname(out.suite("x")), os.path.dirname(out.reliability_plot("x"))):
      shutil.rmtree(p, ignore_errors=True)
  write_json_atomic(out.config, config.to_dict())
  scored = profile_model(config.model.path, config, out, options)
  label = config.model.path or "smollm2_135m"
  profile = profile_report.summarize({label: scored}, options)
  summary = {"model": label, "suites": profile,
             "seconds": {name: s.get("seconds") for name, s in scored.items()}}
  write_json_atomic(out.summary, summary)
  write_outputs(out, profile, [label], None, options.confidence, f"Profile of {label}")
  return summary
