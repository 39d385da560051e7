"""Validation of an active-inheritance config and the plan derived from it: arms, prompt
sets (evaluation prompts never among the training prompts) and the training step budget.

Everything here is cheap (no weights, no compiling), so a bad value (an unknown metric,
k=0, a missing prompt file, arm names that collide) stops a run before any compute, with
the setting's name in the message.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re

import ml_collections

BASELINE_ARMS = ("random", "first")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ExperimentConfigError(ValueError):
  pass


@dataclasses.dataclass
class Plan:
  """What validation derived from the config: arms, prompt sets and the step budget."""
  config: ml_collections.ConfigDict
  workdir: str
  arms: dict[str, dict]                 # name -> {"kind", "description", "strategy"}
  prompt_sets: dict[str, list[dict]]    # "train", "eval", or a mode's own set
  prompt_stats: dict[str, dict]
  train_steps: int
  modes: dict[str, dict]                # enabled evaluation modes, plain dicts

  def mode_prompts(self, mode: str) -> str:
    """The prompt set a mode answers: its own, or the shared evaluation set."""
    return mode if mode in self.prompt_sets else "eval"

  def path(self, *parts: str) -> str:
    """A path of this run's own outputs (selection, arms.json, report)."""
    return os.path.join(self.workdir, *parts)

  def shared(self, *parts: str) -> str:
    """A path of what runs can share (prompts, teacher samples and scores, students and
    their evaluations): config.shared_dir, which a sweep points at one folder for all its
    cells; by default the run's own folder."""
    return os.path.join(self.config.get("shared_dir", "") or self.workdir, *parts)

  def host_shared(self, *parts: str) -> str:
    """Shared, but one folder per host in a multi-host run (config.host): what a host
    trains and evaluates it writes alone (one writer per host)."""
    host = self.config.get("host", None)
    if host and int(host.get("num_hosts", 1)) > 1:
      return self.shared(f"host-{int(host['index']):03d}", *parts)
    return self.shared(*parts)

  @property
  def trained_arms(self) -> list[str]:
    return [a for a, v in self.arms.items() if v["kind"] != "base"]


# --------------------------------------------------------------------------- validation

def fail(message: str):
  raise ExperimentConfigError(message)


def _check_name(kind: str, name: str) -> None:
  if not _NAME.match(name):
    fail(f"{kind} name {name!r} must be letters, digits, '_', '-' or '.' (it names a folder)")


def _load_set(spec: dict, fraction: float, salt: str, what: str):
  from ai_jax.data import prompts as prompts_lib
  try:
    return prompts_lib.load_prompt_set(
        spec["path"], limit=spec.get("limit") or None, split=spec.get("split") or None,
        held_out_fraction=fraction, salt=salt, field=spec.get("field") or None)
  except (FileNotFoundError, ValueError) as e:
    fail(f"config.{what}: {e}")


def _arms(config) -> dict[str, dict]:
  from ai_jax.select import arms_from_config
  arms = {"base": {"kind": "base", "strategy": None,
                   "description": "the untuned student (no fine-tuning)"}}
  if not config.arms:
    fail("config.arms is empty: name at least one targeted arm, e.g. "
          "{'longest': {'name': 'best', 'metric': 'length_words', 'maximize': True}}")
  lowered = {}
  for name in config.arms:
    _check_name("arm", name)
    if name.lower() in ("base", *BASELINE_ARMS):
      fail(f"arm name {name!r} collides with the baseline arm {name.lower()!r} ('base', "
            "'random' and 'first' are reserved); rename it")
    if name.lower() in lowered:
      fail(f"arm names {name!r} and {lowered[name.lower()]!r} collide (arm names are "
            "folders, compared ignoring case); rename one")
    lowered[name.lower()] = name
  try:
    strategies = arms_from_config(select_config(config))
  except ValueError as e:
    fail(f"config.arms: {e}")
  for name, strategy in strategies.items():
    kind = "baseline" if name in BASELINE_ARMS else "targeted"
    from ai_jax.selection.strategies import to_config
    spec = to_config(strategy).to_dict()
    arms[name] = {"kind": kind, "strategy": spec, "description": _describe(name, spec)}
  return arms


def _describe(name: str, spec: dict) -> str:
  if name == "random":
    return "a uniformly random sample per prompt"
  if name == "first":
    return "the first sample per prompt (what k=1 sampling would give)"
  metric = spec.get("metric")
  if spec.get("name") in ("best", "worst") and metric:
    best = (spec["name"] == "best") == bool(spec.get("maximize", True))
    return f"the sample with the {'highest' if best else 'lowest'} {metric} per prompt"
  return f"selection {json.dumps(spec, sort_keys=True)}"


def select_config(config) -> ml_collections.ConfigDict:
  first = next(iter(config.arms.values()))
  return ml_collections.ConfigDict({
      "strategy": first.to_dict() if hasattr(first, "to_dict") else dict(first),
      "arms": config.arms.to_dict(), "exclude_cut": config.select.exclude_cut,
      "baselines": BASELINE_ARMS, "seed": config.seed, "prompts_path": "",
      "arm_name": "",
      "ablation": {"enabled": True, "metric": config.select.ablation_metric,
                   "num_bootstrap": config.select.num_bootstrap}})


def _check_metrics(config, arms) -> None:
  from ai_jax.metrics import registry
  for where, specs in [("score.metrics", config.score.metrics),
                       ("eval.metrics", config.eval.metrics)] + [
                           (f"eval.modes.{m}.metrics", v.metrics)
                           for m, v in config.eval.modes.items() if v.metrics]:
    try:
      registry.scorers_from_specs(list(specs))
    except (ValueError, KeyError, registry.MetricError) as e:
      fail(f"config.{where}: {e}")
  scored = set(registry.scorers_from_specs(list(config.score.metrics)))
  for name, arm in arms.items():
    spec = arm["strategy"] or {}
    needed = [m for m in _metrics_in(spec) if m not in scored]
    if needed:
      fail(f"arm {name!r} selects on {needed}, which config.score.metrics does not score "
            f"(scored: {sorted(scored)})")
  ablation = config.select.ablation_metric
  if ablation and ablation not in scored:
    fail(f"config.select.ablation_metric={ablation!r} is not in config.score.metrics")
  evaluated = set(registry.scorers_from_specs(list(config.eval.metrics)))
  unknown = [m for m in config.report.metrics if m not in evaluated]
  if unknown:
    fail(f"config.report.metrics {unknown} are not in config.eval.metrics")


def _metrics_in(spec: dict) -> list[str]:
  out = [spec["metric"]] if spec.get("metric") else []
  out += list(spec.get("weights", {}) or {}) + list(spec.get("metrics", []) or [])
  if spec.get("inner"):
    out += _metrics_in(spec["inner"])
  return out


def _check_sampling(config, modes) -> None:
  from ai_jax.sample import options_from_config
  if config.sample.sampling.k < 1:
    fail(f"config.sample.sampling.k must be >= 1, got {config.sample.sampling.k}")
  select_k = config.select.get("k", 0)
  if not 0 <= select_k <= config.sample.sampling.k:
    fail(f"config.select.k={select_k} must be in [1, sample.sampling.k="
          f"{config.sample.sampling.k}] (0 = all samples)")
  for name, mode in modes.items():
    if mode["k"] < 1 or mode["max_new_tokens"] < 1:
      fail(f"config.eval.modes.{name}: k and max_new_tokens must be >= 1, got "
            f"k={mode['k']}, max_new_tokens={mode['max_new_tokens']}")
    if mode["protocol"] not in ("mean", "toxicity"):
      fail(f"config.eval.modes.{name}.protocol must be 'mean' or 'toxicity', got "
            f"{mode['protocol']!r}")
  try:
    options_from_config(config.sample)
    for name in modes:
      options_from_config(eval_sample_config(config, name, modes[name], "", "x"))
  except ValueError as e:
    fail(f"config sampling settings: {e}")


def _check_models(config) -> None:
  from ai_jax import loading
  if not config.teachers:
    fail("config.teachers is empty: name at least one teacher ({'name': 'model path'})")
  for name, path in list(config.teachers.items()) + [("student", config.student.path)]:
    _check_name("teacher", name)
    try:
      loading.resolve_model_path(path or None)
    except (FileNotFoundError, ValueError) as e:
      fail(f"model {name!r}: {e}")


def plan(config, workdir: str) -> Plan:
  """Validates everything cheap (no weights, no compiling) and derives the run's plan."""
  from ai_jax.data.splits import normalise_text, prompt_text
  _check_models(config)
  arms = _arms(config)
  _check_metrics(config, arms)
  modes = {name: {"limit": 0, **m.to_dict()} for name, m in config.eval.modes.items()
           if m.enabled}
  _check_sampling(config, modes)
  tb = config.train.train
  if tb.batch_size < 1 or tb.batch_size % max(1, tb.grad_accum_steps):
    fail(f"config.train.train.batch_size={tb.batch_size} must be a positive multiple of "
          f"grad_accum_steps={tb.grad_accum_steps}")
  fraction, salt = config.prompts.held_out_fraction, config.prompts.split_salt
  sets = {"train": _load_set(config.prompts.train, fraction, salt, "prompts.train"),
          "eval": _load_set(config.prompts.eval, fraction, salt, "prompts.eval")}
  for name, mode in modes.items():
    if name in ("train", "eval"):
      fail(f"config.eval.modes.{name}: 'train' and 'eval' name prompt sets; rename the mode")
    if mode["prompts"] != "eval":
      sets[name] = _load_set({"path": mode["prompts"], "limit": mode.get("limit", 0)},
                             fraction, salt, f"eval.modes.{name}.prompts")
    elif mode.get("limit"):  # the first `limit` evaluation prompts
      from ai_jax.data.prompts import PromptSet
      sets[name] = PromptSet(sets["eval"][:int(mode["limit"])],
                             {"source": "prompts.eval", "limit": int(mode["limit"])})
  stats = {k: dict(getattr(v, "stats", {})) for k, v in sets.items()}
  # Evaluation prompts are never training prompts, whatever the files say.
  seen = {normalise_text(prompt_text(p["prompt"])) for p in sets["train"]}
  for name in [n for n in sets if n != "train"]:
    kept = [p for p in sets[name] if normalise_text(prompt_text(p["prompt"])) not in seen]
    stats[name]["dropped_as_training_prompts"] = len(sets[name]) - len(kept)
    sets[name] = kept
    if not kept:
      fail(f"evaluation prompt set {name!r} is empty after removing training prompts")
  steps = tb.steps or math.ceil(tb.epochs * len(sets["train"]) / tb.batch_size)
  return Plan(config, workdir, arms, sets, stats, int(steps), modes)


def copy_config(config) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(config.to_dict())


def eval_sample_config(config, mode_name: str, mode: dict, model_path: str, arm: str):
  c = copy_config(config.sample)
  c.model.path, c.model.name = model_path, arm
  c.prompts.path, c.prompts.limit, c.prompts.split, c.prompts.field = "", 0, "", ""
  s = c.sampling
  s.k, s.max_new_tokens = int(mode["k"]), int(mode["max_new_tokens"])
  s.temperature, s.top_p, s.top_k = float(mode["temperature"]), float(mode["top_p"]), 0
  # The evaluation's own seed, not the experiment's: students of different seeds (a sweep)
  # then answer with the same randomness, and the untuned student is evaluated once.
  s.seed, s.batch_size, s.too_long = config.eval.get("seed", 0), config.eval.batch_size, "skip"
  return c
