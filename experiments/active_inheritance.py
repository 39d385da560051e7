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

import hashlib
import json
import os
import shutil
import time

import ml_collections

from ai_jax.store.atomic import read_json, write_json_atomic, write_jsonl_atomic

# Re-exported: the experiment's public names live here (sweep.py, tests, notebooks).
from experiments.plan import (BASELINE_ARMS, ExperimentConfigError, Plan,  # noqa: F401
                              copy_config, eval_sample_config, fail, plan, select_config)

__all__ = ["BASELINE_ARMS", "STAGES", "ExperimentConfigError", "Plan", "plan", "run",
           "stage_prompts", "stage_sample", "stage_score", "stage_select", "stage_train",
           "stage_evaluate", "stage_report", "arm_students"]

STAGES = ("sample", "score", "select", "train", "evaluate", "report")
# --------------------------------------------------------------------------- stages

def _student(plan_: Plan) -> str:
  """The student as an HF directory. A GGUF student (the embedded default) is dequantised
  once into DIR/student/hf: every arm's training and the base arm's evaluations then read
  safetensors (under a second) instead of dequantising the GGUF each time (seconds)."""
  from ai_jax import loading
  path = loading.resolve_model_path(plan_.config.student.path or None)
  if os.path.isdir(path):
    return path
  out = plan_.host_shared("student", "hf")
  if not os.path.exists(os.path.join(out, "converted.json")):
    loading.export_hf(loading.load_model(path, mesh_shape=None), out, overwrite=True)
    write_json_atomic(os.path.join(out, "converted.json"),
                      {"source": path, "identity": loading.model_identity(path)})
  return out


def stage_prompts(plan_: Plan) -> None:
  for name, records in plan_.prompt_sets.items():
    write_jsonl_atomic(plan_.shared("prompts", f"{name}.jsonl"),
                       [{"prompt_id": p["prompt_id"], "prompt": p["prompt"]} for p in records])


def stage_sample(plan_: Plan) -> dict:
  from ai_jax import sample
  out = {}
  for teacher, path in plan_.config.teachers.items():
    c = copy_config(plan_.config.sample)
    c.model.path, c.model.name = path, teacher
    c.prompts.path, c.prompts.limit, c.prompts.split = plan_.shared("prompts", "train.jsonl"), 0, ""
    c.host = copy_config(plan_.config.get("host", ml_collections.ConfigDict()))  # a host's share
    out[teacher] = sample.run(c, plan_.shared("teacher"))
  return out


def _score_config(plan_: Plan, metrics) -> ml_collections.ConfigDict:
  c = copy_config(plan_.config.score)
  c.metrics = tuple(metrics)
  # The student's tokenizer for every arm and teacher, named by the configured path (not
  # a converted copy, whose path differs between hosts).
  c.tokenizer = plan_.config.student.path or "model"
  return c


def _teacher_score_config(plan_: Plan) -> ml_collections.ConfigDict:
  c = _score_config(plan_, plan_.config.score.metrics)
  c.host = copy_config(plan_.config.get("host", ml_collections.ConfigDict()))
  return c


def stage_score(plan_: Plan) -> dict:
  from ai_jax import score
  return score.run(_teacher_score_config(plan_), plan_.shared("teacher"))


def stage_select(plan_: Plan) -> dict:
  from ai_jax import select
  c = select_config(plan_.config)
  c.output_dir = plan_.path("selection")
  c.max_samples_per_prompt = int(plan_.config.select.get("k", 0) or plan_.config.sample.sampling.k)
  return select.run(c, plan_.shared("teacher"))


def _digest(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _train_config(plan_: Plan, data_path: str) -> ml_collections.ConfigDict:
  c = copy_config(plan_.config.train)
  c.model.path, c.data.path, c.seed = _student(plan_), data_path, plan_.config.seed
  c.train.steps, c.export.hf = plan_.train_steps, True
  c.checkpoint.keep = 1  # only the newest is needed to resume
  return c


def stage_train(plan_: Plan) -> dict:
  """Trains one student per distinct (training set, settings): content-addressed in
  <shared>/students/<key digest>, so arms with equal training sets (k=1 makes every
  selection the first sample) and sweep cells share a student. DIR/arms.json maps each arm
  to its student."""
  from ai_jax.training import trainer
  arms = {"base": {"student": "base", "export": _student(plan_)}}
  for arm in plan_.trained_arms:
    data_path = plan_.path("selection", arm, "train.jsonl")
    c = _train_config(plan_, data_path)
    # The student as configured, not where its converted copy lies (another run's or
    # host's folder): equal keys are the same training, wherever it ran.
    key = json.loads(json.dumps(
        {"data_sha256": _digest(data_path),
         "train": {**c.to_dict(), "data": {**c.data.to_dict(), "path": ""},
                   "model": {**c.model.to_dict(), "path": plan_.config.student.path}}}))
    student = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = plan_.host_shared("students", student)
    marker = read_json(os.path.join(folder, "trained.json"), None)
    if marker is None:
      summary = trainer.run(c, folder)
      if not summary["finished"]:
        raise RuntimeError(f"training arm {arm!r} stopped at step {summary['stopped_at_step']}"
                           f" of {summary['steps']}; rerun to resume")
      marker = {"student": student, "first_arm": arm, "key": key, "export": summary["export"],
                "summary": {k: summary[k] for k in ("steps", "final_loss", "first_loss",
                                                      "data", "batches_per_epoch")}}
      write_json_atomic(os.path.join(folder, "trained.json"), marker)
      if not plan_.config.keep_checkpoints:  # the export is the product; checkpoints are GBs
        shutil.rmtree(os.path.join(folder, "checkpoints"), ignore_errors=True)
    arms[arm] = {"student": student, "export": marker["export"], "train": marker["summary"]}
  write_json_atomic(plan_.path("arms.json"), arms)
  return arms


def arm_students(plan_: Plan) -> dict[str, dict]:
  """arm -> {"student": id, "export": model path, "train": summary} (DIR/arms.json)."""
  arms = read_json(plan_.path("arms.json"), {})
  missing = [a for a in plan_.arms if a not in arms]
  if missing:
    raise FileNotFoundError(f"arms {missing} have no trained student yet (run the train "
                            "stage; it resumes)")
  return arms


def stage_evaluate(plan_: Plan) -> dict:
  from ai_jax import sample, score
  out = {}
  students = {v["student"]: v["export"] for v in arm_students(plan_).values()}
  for mode_name, mode in plan_.modes.items():
    folder = plan_.host_shared("eval", mode_name)
    prompt_file = plan_.shared("prompts", plan_.mode_prompts(mode_name) + ".jsonl")
    for student, model_path in students.items():  # each student once, however many arms
      c = eval_sample_config(plan_.config, mode_name, mode, model_path, student)
      c.prompts.path = prompt_file
      sample.run(c, folder)
    metrics = mode["metrics"] or plan_.config.eval.metrics
    out[mode_name] = score.run(_score_config(plan_, metrics), folder)
  return out


def stage_report(plan_: Plan, stage_seconds: dict) -> dict:
  from ai_jax.profiling import evaluate, report
  summary, distributions = evaluate.experiment_summary(plan_, arm_students(plan_),
                                                      stage_seconds)
  # The report shows config.report.metrics (and every toxicity-protocol figure);
  # summary.json has every metric.
  shown = list(plan_.config.report.metrics) + [
      m for section in summary["evaluations"].values() for m in section["metrics"]
      if m.startswith(("expected_max_", "probability_"))]
  files = report.write_report(summary, distributions, plan_.workdir, show_metrics=shown)
  write_json_atomic(plan_.path("summary.json"), summary)
  return {"files": files}


# --------------------------------------------------------------------------- driver

def run(config, workdir: str, overwrite: bool = False, stages: tuple[str, ...] = STAGES
        ) -> dict:
  """Runs (or resumes) the experiment; returns summary.json's contents."""
  unknown = [s for s in stages if s not in STAGES]
  if unknown:
    fail(f"unknown stages {unknown}; stages are {', '.join(STAGES)}")
  plan_ = plan(config, workdir)  # everything cheap is checked before any compute
  if overwrite:
    for name in ("student", "prompts", "teacher", "students", "eval", "selection", "plots",
                 "arms.json", "stages.json", "summary.json", "report.md"):
      p = plan_.path(name)
      shutil.rmtree(p) if os.path.isdir(p) else os.path.exists(p) and os.remove(p)
  os.makedirs(workdir, exist_ok=True)
  write_json_atomic(plan_.path("experiment_config.json"), config.to_dict())
  stage_prompts(plan_)
  times_path = plan_.path("stages.json")
  seconds = read_json(times_path, {})
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
  return read_json(plan_.path("summary.json")) if "report" in stages else result


if __name__ == "__main__":
  from ai_jax import cli
  cli.run_stage(run, "--config configs/active_inheritance.py:smoke --workdir /tmp/ai_smoke",
                help_config="Experiment config file.",
                hide=("evaluations", "arms", "ablation", "prompt_sets"))
