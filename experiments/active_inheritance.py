r"""Active inheritance end to end: sample -> score -> select -> train -> evaluate -> report.

  python -m experiments.active_inheritance --config configs/active_inheritance.py:smoke \
      --workdir /tmp/ai_smoke

Every stage is the stage CLI's library code (ai_jax.sample, ai_jax.score, ai_jax.select,
ai_jax.training.trainer) run on a folder of DIR, so each resumes by the same rules: a
rerun after an interruption redoes nothing that finished.

  DIR/prompts/            the prompt sets as this run read them (train, eval, toxicity)
  DIR/teacher/            samples/, scores/, selection/<arm>/train.jsonl, selection/ablation/
  DIR/arms/<arm>/         the student trained on that arm's selection (checkpoints, export/hf)
  DIR/eval/<mode>/        every arm's answers to the mode's prompts, scored (arm = "teacher")
  DIR/report.md, DIR/summary.json, DIR/plots/, DIR/stages.json (wall seconds per stage)

Arms: "base" (the untuned student), "random" and "first" (baselines) and the configured
targeted arms. Every trained arm starts from the same student and takes the same number of
optimizer steps with the same settings; only the chosen completions differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import time

import ml_collections

STAGES = ("sample", "score", "select", "train", "evaluate", "report")
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

  def path(self, *parts: str) -> str:
    return os.path.join(self.workdir, *parts)

  @property
  def trained_arms(self) -> list[str]:
    return [a for a, v in self.arms.items() if v["kind"] != "base"]


# --------------------------------------------------------------------------- validation

def _fail(message: str):
  raise ExperimentConfigError(message)


def _check_name(kind: str, name: str) -> None:
  if not _NAME.match(name):
    _fail(f"{kind} name {name!r} must be letters, digits, '_', '-' or '.' (it names a folder)")


def _load_set(spec: dict, fraction: float, salt: str, what: str):
  from ai_jax.data import prompts as prompts_lib
  try:
    return prompts_lib.load_prompt_set(
        spec["path"], limit=spec.get("limit") or None, split=spec.get("split") or None,
        held_out_fraction=fraction, salt=salt, field=spec.get("field") or None)
  except (FileNotFoundError, ValueError) as e:
    _fail(f"config.{what}: {e}")


def _arms(config) -> dict[str, dict]:
  from ai_jax.select import arms_from_config
  arms = {"base": {"kind": "base", "strategy": None,
                   "description": "the untuned student (no fine-tuning)"}}
  if not config.arms:
    _fail("config.arms is empty: name at least one targeted arm, e.g. "
          "{'longest': {'name': 'best', 'metric': 'length_words', 'maximize': True}}")
  lowered = {}
  for name in list(config.arms) + ["base", *BASELINE_ARMS]:
    _check_name("arm", name)
    if name.lower() in lowered and name in config.arms:
      _fail(f"arm names {name!r} and {lowered[name.lower()]!r} collide (arm names are "
            "folders; 'base', 'random' and 'first' are reserved for the baselines)")
    lowered[name.lower()] = name
  try:
    strategies = arms_from_config(_select_config(config))
  except ValueError as e:
    _fail(f"config.arms: {e}")
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


def _select_config(config) -> ml_collections.ConfigDict:
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
      _fail(f"config.{where}: {e}")
  scored = set(registry.scorers_from_specs(list(config.score.metrics)))
  for name, arm in arms.items():
    spec = arm["strategy"] or {}
    needed = [m for m in _metrics_in(spec) if m not in scored]
    if needed:
      _fail(f"arm {name!r} selects on {needed}, which config.score.metrics does not score "
            f"(scored: {sorted(scored)})")
  ablation = config.select.ablation_metric
  if ablation and ablation not in scored:
    _fail(f"config.select.ablation_metric={ablation!r} is not in config.score.metrics")
  evaluated = set(registry.scorers_from_specs(list(config.eval.metrics)))
  unknown = [m for m in config.report.metrics if m not in evaluated]
  if unknown:
    _fail(f"config.report.metrics {unknown} are not in config.eval.metrics")


def _metrics_in(spec: dict) -> list[str]:
  out = [spec["metric"]] if spec.get("metric") else []
  out += list(spec.get("weights", {}) or {}) + list(spec.get("metrics", []) or [])
  if spec.get("inner"):
    out += _metrics_in(spec["inner"])
  return out


def _check_sampling(config, modes) -> None:
  from ai_jax.sample import options_from_config
  if config.sample.sampling.k < 1:
    _fail(f"config.sample.sampling.k must be >= 1, got {config.sample.sampling.k}")
  for name, mode in modes.items():
    if mode["k"] < 1 or mode["max_new_tokens"] < 1:
      _fail(f"config.eval.modes.{name}: k and max_new_tokens must be >= 1, got "
            f"k={mode['k']}, max_new_tokens={mode['max_new_tokens']}")
    if mode["protocol"] not in ("mean", "toxicity"):
      _fail(f"config.eval.modes.{name}.protocol must be 'mean' or 'toxicity', got "
            f"{mode['protocol']!r}")
  try:
    options_from_config(config.sample)
    for name in modes:
      options_from_config(_eval_sample_config(config, name, modes[name], "", "x"))
  except ValueError as e:
    _fail(f"config sampling settings: {e}")


def _check_models(config) -> None:
  from ai_jax import loading
  if not config.teachers:
    _fail("config.teachers is empty: name at least one teacher ({'name': 'model path'})")
  for name, path in list(config.teachers.items()) + [("student", config.student.path)]:
    _check_name("teacher", name)
    try:
      loading.resolve_model_path(path or None)
    except (FileNotFoundError, ValueError) as e:
      _fail(f"model {name!r}: {e}")


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
    _fail(f"config.train.train.batch_size={tb.batch_size} must be a positive multiple of "
          f"grad_accum_steps={tb.grad_accum_steps}")
  fraction, salt = config.prompts.held_out_fraction, config.prompts.split_salt
  sets = {"train": _load_set(config.prompts.train, fraction, salt, "prompts.train"),
          "eval": _load_set(config.prompts.eval, fraction, salt, "prompts.eval")}
  for name, mode in modes.items():
    if mode["prompts"] != "eval":
      sets[name] = _load_set({"path": mode["prompts"], "limit": mode.get("limit", 0)},
                             fraction, salt, f"eval.modes.{name}.prompts")
  stats = {k: dict(getattr(v, "stats", {})) for k, v in sets.items()}
  # Evaluation prompts are never training prompts, whatever the files say.
  seen = {normalise_text(prompt_text(p["prompt"])) for p in sets["train"]}
  for name in [n for n in sets if n != "train"]:
    kept = [p for p in sets[name] if normalise_text(prompt_text(p["prompt"])) not in seen]
    stats[name]["dropped_as_training_prompts"] = len(sets[name]) - len(kept)
    sets[name] = kept
    if not kept:
      _fail(f"evaluation prompt set {name!r} is empty after removing training prompts")
  steps = tb.steps or math.ceil(tb.epochs * len(sets["train"]) / tb.batch_size)
  return Plan(config, workdir, arms, sets, stats, int(steps), modes)


# --------------------------------------------------------------------------- stages

def _copy(config) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(config.to_dict())


def _student(plan_: Plan) -> str:
  """The student as an HF directory. A GGUF student (the embedded default) is dequantised
  once into DIR/student/hf: every arm's training and the base arm's evaluations then read
  safetensors (under a second) instead of dequantising the GGUF each time (seconds)."""
  from ai_jax import loading
  path = loading.resolve_model_path(plan_.config.student.path or None)
  if os.path.isdir(path):
    return path
  out = plan_.path("student", "hf")
  if not os.path.exists(os.path.join(out, "converted.json")):
    loading.export_hf(loading.load_model(path, mesh_shape=None), out, overwrite=True)
    from ai_jax.store.atomic import write_json_atomic
    write_json_atomic(os.path.join(out, "converted.json"),
                      {"source": path, "identity": loading.model_identity(path)})
  return out


def _eval_sample_config(config, mode_name: str, mode: dict, model_path: str, arm: str):
  c = _copy(config.sample)
  c.model.path, c.model.name = model_path, arm
  c.prompts.path, c.prompts.limit, c.prompts.split, c.prompts.field = "", 0, "", ""
  s = c.sampling
  s.k, s.max_new_tokens = int(mode["k"]), int(mode["max_new_tokens"])
  s.temperature, s.top_p, s.top_k = float(mode["temperature"]), float(mode["top_p"]), 0
  s.seed, s.batch_size, s.too_long = config.seed, config.eval.batch_size, "skip"
  return c


def stage_prompts(plan_: Plan) -> None:
  from ai_jax.store.atomic import write_jsonl_atomic
  for name, records in plan_.prompt_sets.items():
    write_jsonl_atomic(plan_.path("prompts", f"{name}.jsonl"),
                       [{"prompt_id": p["prompt_id"], "prompt": p["prompt"]} for p in records])


def stage_sample(plan_: Plan) -> dict:
  from ai_jax import sample
  out = {}
  for teacher, path in plan_.config.teachers.items():
    c = _copy(plan_.config.sample)
    c.model.path, c.model.name = path, teacher
    c.prompts.path, c.prompts.limit, c.prompts.split = plan_.path("prompts", "train.jsonl"), 0, ""
    out[teacher] = sample.run(c, plan_.path("teacher"))
  return out


def _score_config(plan_: Plan, metrics) -> ml_collections.ConfigDict:
  c = _copy(plan_.config.score)
  c.metrics = tuple(metrics)
  c.tokenizer = _student(plan_) or "model"  # one tokenizer for every arm and teacher
  return c


def stage_score(plan_: Plan) -> dict:
  from ai_jax import score
  return score.run(_score_config(plan_, plan_.config.score.metrics), plan_.path("teacher"))


def stage_select(plan_: Plan) -> dict:
  from ai_jax import select
  return select.run(_select_config(plan_.config), plan_.path("teacher"))


def _digest(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _train_config(plan_: Plan, data_path: str) -> ml_collections.ConfigDict:
  c = _copy(plan_.config.train)
  c.model.path, c.data.path, c.seed = _student(plan_), data_path, plan_.config.seed
  c.train.steps, c.export.hf = plan_.train_steps, True
  c.checkpoint.keep = 1  # only the newest is needed to resume
  return c


def stage_train(plan_: Plan) -> dict:
  """Trains each arm once. An arm whose training set and settings equal an arm already
  trained (k=1 makes every selection the first sample) reuses that student."""
  from ai_jax.store.atomic import write_json_atomic
  from ai_jax.training import trainer
  out = {}
  for arm in plan_.trained_arms:
    data_path = plan_.path("teacher", "selection", arm, "train.jsonl")
    c = _train_config(plan_, data_path)
    key = {"data_sha256": _digest(data_path),
           "train": {**c.to_dict(), "data": {**c.data.to_dict(), "path": ""}}}
    marker_path = plan_.path("arms", arm, "trained.json")
    marker = _read_json(marker_path)
    if marker is not None:
      if marker["key"] != json.loads(json.dumps(key)):
        raise ExperimentConfigError(
            f"arm {arm!r} was trained on another training set or config ({marker_path}); "
            "rerun with --overwrite or use a new --workdir")
      out[arm] = marker
      continue
    same = next((m for m in (_read_json(plan_.path("arms", a, "trained.json"))
                             for a in plan_.trained_arms if a != arm)
                 if m is not None and m["key"] == json.loads(json.dumps(key))), None)
    if same is not None:
      marker = {**same, "same_as": same.get("same_as") or same["arm"], "arm": arm}
    else:
      summary = trainer.run(c, plan_.path("arms", arm))
      if not summary["finished"]:
        raise RuntimeError(f"training arm {arm!r} stopped at step {summary['stopped_at_step']}"
                           f" of {summary['steps']}; rerun to resume")
      marker = {"arm": arm, "key": key, "export": summary["export"],
                "summary": {k: summary[k] for k in ("steps", "final_loss", "first_loss",
                                                      "data", "batches_per_epoch")}}
    write_json_atomic(marker_path, marker)
    if not plan_.config.keep_checkpoints:  # the export is the product; checkpoints are GBs
      shutil.rmtree(plan_.path("arms", arm, "checkpoints"), ignore_errors=True)
    out[arm] = marker
  return out


def _read_json(path: str):
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def arm_model_path(plan_: Plan, arm: str) -> str:
  if arm == "base":
    return _student(plan_)
  marker = _read_json(plan_.path("arms", arm, "trained.json"))
  if marker is None:
    raise FileNotFoundError(f"arm {arm!r} has not been trained (run the train stage)")
  return marker["export"]


def stage_evaluate(plan_: Plan) -> dict:
  from ai_jax import sample, score
  out = {}
  for mode_name, mode in plan_.modes.items():
    folder = plan_.path("eval", mode_name)
    prompt_file = plan_.path("prompts", ("eval" if mode["prompts"] == "eval" else mode_name)
                             + ".jsonl")
    for arm in plan_.arms:
      c = _eval_sample_config(plan_.config, mode_name, mode, arm_model_path(plan_, arm), arm)
      c.prompts.path = prompt_file
      sample.run(c, folder)
    metrics = mode["metrics"] or plan_.config.eval.metrics
    out[mode_name] = score.run(_score_config(plan_, metrics), folder)
  return out


def stage_report(plan_: Plan, stage_seconds: dict) -> dict:
  from ai_jax.profiling import evaluate, report
  summary, distributions = evaluate.experiment_summary(plan_, stage_seconds)
  from ai_jax.store.atomic import write_json_atomic
  files = report.write_report(summary, distributions, plan_.workdir,
                              plot_metrics=list(plan_.config.report.metrics))
  write_json_atomic(plan_.path("summary.json"), summary)
  return {"files": files}


# --------------------------------------------------------------------------- driver

def run(config, workdir: str, overwrite: bool = False, stages: tuple[str, ...] = STAGES
        ) -> dict:
  """Runs (or resumes) the experiment; returns summary.json's contents."""
  from ai_jax.store.atomic import write_json_atomic
  unknown = [s for s in stages if s not in STAGES]
  if unknown:
    _fail(f"unknown stages {unknown}; stages are {', '.join(STAGES)}")
  plan_ = plan(config, workdir)  # everything cheap is checked before any compute
  if overwrite:
    for name in ("student", "teacher", "arms", "eval", "plots", "stages.json", "summary.json",
                 "report.md"):
      p = plan_.path(name)
      shutil.rmtree(p) if os.path.isdir(p) else os.path.exists(p) and os.remove(p)
  os.makedirs(workdir, exist_ok=True)
  write_json_atomic(plan_.path("experiment_config.json"), config.to_dict())
  stage_prompts(plan_)
  times_path = plan_.path("stages.json")
  seconds = _read_json(times_path) or {}
  functions = {"sample": stage_sample, "score": stage_score, "select": stage_select,
               "train": stage_train, "evaluate": stage_evaluate}
  result = {}
  for stage in STAGES:
    if stage not in stages:
      continue
    t0 = time.time()
    if stage == "report":
      result = stage_report(plan_, seconds)
    else:
      functions[stage](plan_)
    # Summed over every run of the experiment, resumed ones included.
    seconds[stage] = round(seconds.get(stage, 0.0) + time.time() - t0, 2)
    write_json_atomic(times_path, seconds)
  return _read_json(plan_.path("summary.json")) if "report" in stages else result


if __name__ == "__main__":
  from ai_jax import cli
  cli.run_stage(run, "--config configs/active_inheritance.py:smoke --workdir /tmp/ai_smoke",
                help_config="Experiment config file.",
                hide=("evaluations", "arms", "ablation"))
