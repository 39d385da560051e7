r"""Active inheritance end to end: sample -> score -> select -> train -> evaluate -> profile
-> report.

  python -m experiments.active_inheritance --config configs/active_inheritance.py:smoke \
      --workdir /tmp/ai_smoke

Every stage is a stage's library code (ai_jax.stages.sample, .score, .select,
ai_jax.training.trainer) run on a folder of DIR with the config the plan resolved for it
(plan.stages), so each resumes by the same rules: a rerun after an interruption redoes
nothing that finished. The folders (ai_jax.run.layout.ExperimentDir):

  DIR/prompts/            the prompt sets as this run read them (train, eval, toxicity)
  DIR/teacher/            samples/, scores/ (a StageDir)
  DIR/selection/<arm>/    train.jsonl, summary.json; DIR/selection/ablation/
  DIR/student/hf          a GGUF student dequantised once
  DIR/students/<id>/      a trained student (checkpoints, export/hf), content-addressed
  DIR/eval/<mode>/        every student's answers to the mode's prompts, scored
  DIR/profile/<student>/  the profile suites' scored items per student (a ProfileDir)
  DIR/arms.json           arm -> student;  DIR/stages.json: wall seconds per stage
  DIR/report.md, DIR/summary.json, DIR/plots/

Arms: "base" (the untuned student), "random" and "first" (baselines) and the configured
targeted arms. Every trained arm starts from the same student and takes the same number of
optimizer steps with the same settings; only the chosen completions differ.

A stage is one entry of STAGES (name, function, the outputs it owns): `run` calls them in
order, and --overwrite deletes what they own.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

from ai_jax.experiment.plan import (BASELINE_ARMS, ExperimentConfigError, Plan,  # noqa: F401
                                    copy_config, fail, plan)
from ai_jax.experiment.stages import Stage, check_stage_names, run_experiment
from ai_jax.store.atomic import read_json, write_json_atomic, write_jsonl_atomic

# --------------------------------------------------------------------------- stages

def _student(plan_: Plan) -> str:
  """The student as an HF directory. A GGUF student (the embedded default) is dequantised
  once into DIR/student/hf: every arm's training and the base arm's evaluations then read
  safetensors (under a second) instead of dequantising the GGUF each time (seconds)."""
  from ai_jax import loading
  path = loading.resolve_model_path(plan_.config.student.path or None)
  if os.path.isdir(path):
    return path
  out, marker = plan_.dirs.student_hf, plan_.dirs.student_converted_marker
  if not os.path.exists(marker):
    loading.export_hf(loading.load_model(path, mesh_shape=None), out, overwrite=True)
    write_json_atomic(marker, {"source": path, "identity": loading.model_identity(path)})
  return out


def stage_prompts(plan_: Plan) -> None:
  """The prompt sets as the plan read them (split, limited, evaluation prompts removed
  from training), one file each: every later stage reads these files."""
  for name, records in plan_.prompt_sets.items():
    write_jsonl_atomic(plan_.dirs.prompts(name),
                       [{"prompt_id": p["prompt_id"], "prompt": p["prompt"]} for p in records])


def stage_sample(plan_: Plan) -> dict:
  from ai_jax.stages import sample
  return {teacher: sample.run(c, plan_.dirs.teacher.root)
          for teacher, c in plan_.stages.sample.items()}


def stage_score(plan_: Plan) -> dict:
  from ai_jax.stages import score
  return score.run(plan_.stages.teacher_score, plan_.dirs.teacher.root)


def stage_select(plan_: Plan) -> dict:
  from ai_jax.stages import select
  c = copy_config(plan_.stages.select)
  c.output_dir = plan_.dirs.selection.root
  return select.run(c, plan_.dirs.teacher.root)


def _digest(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _train_config(plan_: Plan, data_path: str):
  c = copy_config(plan_.stages.train)
  c.model.path, c.data.path = _student(plan_), data_path
  return c


def stage_train(plan_: Plan) -> dict:
  """Trains one student per distinct (training set, settings): content-addressed in
  <shared>/students/<key digest>, so arms with equal training sets (k=1 makes every
  selection the first sample) and sweep cells share a student. DIR/arms.json maps each arm
  to its student."""
  from ai_jax import loading
  arms = {"base": {"student": "base", "export": _student(plan_)}}
  with loading.reuse_models():  # the arms start from one student: read and convert it once
    for arm in plan_.trained_arms:
      arms[arm] = _train_arm(plan_, arm)
  write_json_atomic(plan_.dirs.arms, arms)
  return arms


def _train_arm(plan_: Plan, arm: str) -> dict:
  """Trains (or finds trained) the student of one arm: {"student", "export", "train"}."""
  from ai_jax.training import trainer
  data_path = plan_.dirs.selection.train_set(arm)
  c = _train_config(plan_, data_path)
  # The student as configured, not where its converted copy lies (another run's or
  # host's folder): equal keys are the same training, wherever it ran.
  key = json.loads(json.dumps(
      {"data_sha256": _digest(data_path),
       "train": {**c.to_dict(), "data": {**c.data.to_dict(), "path": ""},
                 "model": {**c.model.to_dict(), "path": plan_.config.student.path}}}))
  student = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
  folder = plan_.dirs.trained_student(student)
  marker = read_json(folder.finished_marker, None)
  if marker is None:
    keep = plan_.stages.keep_checkpoints
    summary = trainer.run(c, folder.root, final_checkpoint=keep)
    if not summary["finished"]:
      raise RuntimeError(f"training arm {arm!r} stopped at step {summary['stopped_at_step']}"
                         f" of {summary['steps']}; rerun to resume")
    marker = {"student": student, "first_arm": arm, "key": key, "export": summary["export"],
              "summary": {k: summary[k] for k in ("steps", "final_loss", "first_loss",
                                                    "data", "batches_per_epoch")}}
    write_json_atomic(folder.finished_marker, marker)
    if not keep:  # the export is the product; checkpoints are GBs
      shutil.rmtree(folder.checkpoints, ignore_errors=True)
  return {"student": student, "export": marker["export"], "train": marker["summary"]}


def arm_students(plan_: Plan) -> dict[str, dict]:
  """arm -> {"student": id, "export": model path, "train": summary} (DIR/arms.json)."""
  arms = read_json(plan_.dirs.arms, {})
  missing = [a for a in plan_.arms if a not in arms]
  if missing:
    raise FileNotFoundError(f"arms {missing} have no trained student yet (run the train "
                            "stage; it resumes)")
  return arms


def stage_evaluate(plan_: Plan) -> dict:
  from ai_jax import loading
  from ai_jax.stages import sample, score
  students = {v["student"]: v["export"] for v in arm_students(plan_).values()}
  for student, model_path in students.items():  # each student once, however many arms
    with loading.reuse_models():  # loaded once for all its modes, then released
      for mode in plan_.modes:
        c = copy_config(plan_.stages.eval_sample[mode])
        c.model.path, c.model.name = model_path, student
        sample.run(c, plan_.dirs.evaluation(mode).root)
  return {mode: score.run(plan_.stages.eval_score[mode], plan_.dirs.evaluation(mode).root)
          for mode in plan_.modes}


def _profile_options(plan_: Plan):
  from ai_jax.profiling import suite_run
  return suite_run.ProfileOptions.from_config(plan_.stages.profile)


def stage_profile(plan_: Plan) -> dict:
  """The profile suites on every student (the untuned one and each arm's), once each,
  into <shared>/profile/<student>/ (resumable per suite)."""
  from ai_jax.stages import profile
  options = _profile_options(plan_)
  students = {v["student"]: v["export"] for v in arm_students(plan_).values()}
  return {student: {name: {"items": len(s["items"]), "seconds": s["seconds"]}
                    for name, s in profile.profile_model(
                        path, plan_.stages.profile, plan_.dirs.profile(student),
                        options).items()}
          for student, path in students.items()}


def _profile_summary(plan_: Plan, arms: dict) -> tuple[dict | None, dict]:
  """(summary["profile"]: each arm's figures and its change vs base, summary
  ["profile_seconds"]: {student: {suite: seconds its scoring took}}), from one read of the
  scored files; the profile is None until the profile stage has run (it resumes)."""
  from ai_jax.profiling import profile_report
  options = _profile_options(plan_)
  scored, seconds = {}, {}
  for arm, v in arms.items():
    out = plan_.dirs.profile(v["student"])
    by_suite = {r.name: read_json(out.suite(r.name), None) for r in options.suites}
    seconds[v["student"]] = {name: (s or {}).get("seconds") for name, s in by_suite.items()}
    scored[arm] = by_suite
  if any(s is None for by_suite in scored.values() for s in by_suite.values()):
    return None, seconds
  return profile_report.summarize(scored, options, base="base"), seconds


def stage_report(plan_: Plan) -> dict:
  from ai_jax.profiling import evaluate, report
  arms = arm_students(plan_)
  summary, distributions = evaluate.experiment_summary(
      plan_, arms, read_json(plan_.dirs.stage_seconds, {}))
  summary["profile"], summary["profile_seconds"] = _profile_summary(plan_, arms)
  # The report shows config.report.metrics (and every toxicity-protocol figure);
  # summary.json has every metric.
  shown = list(plan_.stages.report["metrics"]) + [
      m for section in summary["evaluations"].values() for m in section["metrics"]
      if m.startswith(("expected_max_", "probability_"))]
  files = report.write_report(summary, distributions, plan_.dirs.root, show_metrics=shown)
  write_json_atomic(plan_.dirs.summary, summary)
  return {"files": files}


# The experiment, in order. Adding a stage is one entry here.
STAGES = (
    Stage("sample", stage_sample, lambda d: (d.teacher.samples, d.teacher.sample_config)),
    Stage("score", stage_score, lambda d: (d.teacher.scores,)),
    Stage("select", stage_select, lambda d: (d.selection.root,)),
    Stage("train", stage_train, lambda d: (d.student_root, d.students_root, d.arms)),
    Stage("evaluate", stage_evaluate, lambda d: (d.evaluations_root,)),
    Stage("profile", stage_profile, lambda d: (d.profiles_root,)),
    Stage("report", stage_report, lambda d: (d.report, d.summary, d.plots)),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


# --------------------------------------------------------------------------- driver

def run(config, workdir: str, overwrite: bool = False,
        stages: tuple[str, ...] = STAGE_NAMES) -> dict:
  """Runs (or resumes) the experiment; returns summary.json's contents (or, without the
  report stage, the last stage's result)."""
  check_stage_names(stages, STAGES)
  plan_ = plan(config, workdir)  # everything cheap is checked before any compute
  # What a shared folder holds (a sweep's) other runs still use: --overwrite keeps it.
  return run_experiment(STAGES, stages, plan_, config.to_dict(), overwrite,
                        may_remove=plan_.dirs.is_own, also_owned=(plan_.dirs.prompts_root,),
                        before=stage_prompts)
