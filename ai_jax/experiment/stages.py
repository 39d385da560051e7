"""An experiment as an ordered list of stages: what each one runs and owns, and the
driver that every experiment shares (stage names checked, --overwrite's deletions, the
resolved config written, each stage's wall time summed into stages.json across resumed
runs)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from typing import Any, Callable, Iterable

from ai_jax.experiment.plan import fail
from ai_jax.store.atomic import read_json, write_json_atomic


@dataclasses.dataclass(frozen=True)
class Stage:
  """One step of an experiment: its function of the plan and the outputs it owns (what
  --overwrite deletes), as a function of the run's folders."""
  name: str
  run: Callable[[Any], object]
  owns: Callable[[Any], tuple[str, ...]]


def check_stage_names(selected: Iterable[str], stages: tuple[Stage, ...]) -> None:
  """Refuses (ExperimentConfigError) a selected name that is not a stage."""
  names = [s.name for s in stages]
  unknown = [s for s in selected if s not in names]
  if unknown:
    fail(f"unknown stages {unknown}; stages are {', '.join(names)}")


def remove_outputs(paths: Iterable[str]) -> None:
  """Deletes files and folders (what --overwrite starts over from)."""
  for path in paths:
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)


def run_stages(stages: tuple[Stage, ...], selected: Iterable[str], plan: Any,
               seconds_path: str) -> object:
  """Runs the selected stages in order; returns the last one's result. Each stage's wall
  time is added to seconds_path as soon as it ends: summed over every run of the
  experiment, resumed ones included."""
  selected = set(selected)
  seconds = read_json(seconds_path, {})
  result: object = {}
  for stage in stages:
    if stage.name not in selected:
      continue
    t0 = time.time()
    result = stage.run(plan)
    seconds[stage.name] = round(seconds.get(stage.name, 0.0) + time.time() - t0, 2)
    write_json_atomic(seconds_path, seconds)
  return result


def run_experiment(stages: tuple[Stage, ...], selected: tuple[str, ...], plan: Any,
                   config_dict: dict, overwrite: bool,
                   may_remove: Callable[[str], bool] = lambda path: True,
                   also_owned: tuple[str, ...] = (),
                   before: Callable[[Any], object] | None = None) -> object:
  """Runs (or resumes) the selected stages of a planned experiment (plan.dirs is its
  folder layout): --overwrite first deletes what the stages own (and also_owned, and
  stages.json) where may_remove allows; the resolved config is written; `before` runs
  first. Returns summary.json's contents (or, without a report stage, the last stage's
  result)."""
  dirs = plan.dirs
  if overwrite:
    owned = (*also_owned, dirs.stage_seconds, *(p for s in stages for p in s.owns(dirs)))
    remove_outputs(filter(may_remove, owned))
  os.makedirs(dirs.root, exist_ok=True)
  write_json_atomic(dirs.config, config_dict)
  if before is not None:
    before(plan)
  result = run_stages(stages, selected, plan, dirs.stage_seconds)
  return read_json(dirs.summary) if "report" in selected else result
