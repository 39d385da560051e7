"""Every folder and file of a run directory, named once, and the record-level constants.

Stages, experiments, the sweep and the report take their paths from these objects; no
other module spells a run's file names. Each object is a frozen dataclass over a root
folder, so it is cheap to build and to pass around.

  StageDir (a stage CLI's --workdir, the experiment's teacher/ and eval/<mode>/):
    sample_config.json   the sample stage's config (prompts, model) that score/select read
    samples/             record shards, fingerprint.<teacher>.json, summary.json
    scores/              record shards, fingerprint.json, metrics.json, summary.json
    selection/           SelectionDir
  SelectionDir:  <arm>/train.jsonl, <arm>/summary.json, summary.json, ablation/
  TrainDir (the train stage's --workdir, the experiment's students/<id>/):
    checkpoints/, export/hf/, train_metrics.jsonl, loss.png, train_summary.json,
    tensorboard/, trained.json (the experiment's "finished" marker)
  ProfileDir (python -m ai_jax.profile's --workdir, the experiment's profile/<student>/):
    suites/<suite>.json, profile_config.json, profile_summary.json, profile.md, plots/
  ExperimentDir: see experiments/active_inheritance.py's docstring.
  SweepDir: shared/, cells/<cell>/, barriers/, sweep.csv, sweep.md, sweep.png.
  SteerDir: see ai_jax/experiment/steer.py's docstring.
"""

from __future__ import annotations

import dataclasses
import os

# ------------------------------------------------------------------ record constants

# Every sample and score record is keyed by these fields (ai_jax.store.records).
KEY_FIELDS = ("prompt_id", "teacher", "sample_index")

# finish_reason of a sample record.
FINISH_STOP = "stop"                        # an end-of-turn / stop token ended it
FINISH_CUT = "length"                       # max_new_tokens cut it
FINISH_PROMPT_TOO_LONG = "prompt_too_long"  # never sampled (too_long="skip"): empty text
NOT_SAMPLED = (FINISH_PROMPT_TOO_LONG,)     # finish reasons of records with no sample

# The column of a score record that holds {metric column: why it has no value}.
SCORE_ERRORS = "score_errors"


def _join(root: str, *parts: str) -> str:
  return os.path.join(root, *parts)


# ------------------------------------------------------------------ stage folders

@dataclasses.dataclass(frozen=True)
class SelectionDir:
  """The select stage's outputs: one training set per arm, the ablation, a summary."""
  root: str

  def train_set(self, arm: str) -> str:
    return _join(self.root, arm, "train.jsonl")

  def arm_summary(self, arm: str) -> str:
    return _join(self.root, arm, "summary.json")

  @property
  def summary(self) -> str:
    return _join(self.root, "summary.json")

  @property
  def ablation(self) -> str:
    return _join(self.root, "ablation")


@dataclasses.dataclass(frozen=True)
class StageDir:
  """The folder the sample, score and select stages share (their --workdir)."""
  root: str

  @property
  def sample_config(self) -> str:
    return _join(self.root, "sample_config.json")

  @property
  def samples(self) -> str:
    return _join(self.root, "samples")

  @property
  def samples_summary(self) -> str:
    return _join(self.root, "samples", "summary.json")

  @property
  def scores(self) -> str:
    return _join(self.root, "scores")

  @property
  def scores_metrics(self) -> str:
    """{"columns": {column: metric info}, "tokenizer": ...}: what each column holds."""
    return _join(self.root, "scores", "metrics.json")

  @property
  def scores_summary(self) -> str:
    return _join(self.root, "scores", "summary.json")

  @property
  def selection(self) -> SelectionDir:
    return SelectionDir(_join(self.root, "selection"))


@dataclasses.dataclass(frozen=True)
class TrainDir:
  """The train stage's folder (its --workdir)."""
  root: str

  @property
  def checkpoints(self) -> str:
    return _join(self.root, "checkpoints")

  @property
  def export(self) -> str:
    return _join(self.root, "export")

  @property
  def export_hf(self) -> str:
    return _join(self.root, "export", "hf")

  @property
  def metrics_log(self) -> str:
    return _join(self.root, "train_metrics.jsonl")

  @property
  def tensorboard(self) -> str:
    return _join(self.root, "tensorboard")

  @property
  def loss_plot(self) -> str:
    return _join(self.root, "loss.png")

  @property
  def summary(self) -> str:
    return _join(self.root, "train_summary.json")

  @property
  def given_examples(self) -> str:
    """Training examples handed to ai_jax.train as a list, written here first."""
    return _join(self.root, "examples.jsonl")

  @property
  def finished_marker(self) -> str:
    """Written by the experiment once the student is trained and exported."""
    return _join(self.root, "trained.json")

  @property
  def overwritten(self) -> tuple[str, ...]:
    """What --overwrite deletes before training starts again."""
    return (self.checkpoints, self.export, self.metrics_log)


@dataclasses.dataclass(frozen=True)
class ProfileDir:
  """One model's profile (`python -m ai_jax.profile --workdir`, the experiment's
  profile/<student>/): a scored file per suite, the figures, a short report, plots."""
  root: str

  def suite(self, name: str) -> str:
    return _join(self.root, "suites", f"{name}.json")

  @property
  def config(self) -> str:
    return _join(self.root, "profile_config.json")

  @property
  def summary(self) -> str:
    return _join(self.root, "profile_summary.json")

  @property
  def report(self) -> str:
    return _join(self.root, "profile.md")

  def reliability_plot(self, suite: str) -> str:
    return _join(self.root, "plots", f"reliability_{suite}.png")


# ------------------------------------------------------------------ experiment

@dataclasses.dataclass(frozen=True)
class _ExperimentOutputs:
  """What every experiment writes in its own folder `root`: the resolved config, each
  stage's wall time, the summary, the report and its plots."""
  root: str

  @property
  def config(self) -> str:
    return _join(self.root, "experiment_config.json")

  @property
  def stage_seconds(self) -> str:
    return _join(self.root, "stages.json")

  @property
  def summary(self) -> str:
    return _join(self.root, "summary.json")

  @property
  def report(self) -> str:
    return _join(self.root, "report.md")

  @property
  def plots(self) -> str:
    return _join(self.root, "plots")

  def relative(self, path: str) -> str:
    """path relative to the run folder (how report.md links its files)."""
    return os.path.relpath(path, self.root)


@dataclasses.dataclass(frozen=True)
class ExperimentDir(_ExperimentOutputs):
  """An active-inheritance run: its own outputs under `root`, what runs may share under
  `shared_root` (a sweep points every cell at one folder), and what one host of a
  multi-host run writes alone under shared_root/host-<index>/."""
  shared_root: str = ""
  host_index: int = 0
  num_hosts: int = 1

  @property
  def _shared(self) -> str:
    return self.shared_root or self.root

  @property
  def _host_shared(self) -> str:
    if self.num_hosts > 1:
      return _join(self._shared, f"host-{int(self.host_index):03d}")
    return self._shared

  # Shared by the runs of a sweep.
  @property
  def prompts_root(self) -> str:
    return _join(self._shared, "prompts")

  def prompts(self, name: str) -> str:
    """The prompt set `name` (train, eval or a mode's own) as the run read it."""
    return _join(self._shared, "prompts", f"{name}.jsonl")

  @property
  def teacher(self) -> StageDir:
    return StageDir(_join(self._shared, "teacher"))

  # Shared, one folder per host.
  @property
  def student_root(self) -> str:
    return _join(self._host_shared, "student")

  @property
  def students_root(self) -> str:
    return _join(self._host_shared, "students")

  @property
  def evaluations_root(self) -> str:
    return _join(self._host_shared, "eval")

  @property
  def student_hf(self) -> str:
    """The configured student as an HF folder (a GGUF student is dequantised once)."""
    return _join(self._host_shared, "student", "hf")

  @property
  def student_converted_marker(self) -> str:
    return _join(self._host_shared, "student", "hf", "converted.json")

  def trained_student(self, student_id: str) -> TrainDir:
    return TrainDir(_join(self._host_shared, "students", student_id))

  def evaluation(self, mode: str) -> StageDir:
    return StageDir(_join(self._host_shared, "eval", mode))

  def profile(self, student_id: str) -> ProfileDir:
    """The profile of one student ("base" or a trained student's id)."""
    return ProfileDir(_join(self._host_shared, "profile", student_id))

  @property
  def profiles_root(self) -> str:
    return _join(self._host_shared, "profile")

  def reliability_plot(self, suite: str) -> str:
    return _join(self.plots, f"reliability_{suite}.png")

  # This run's own.
  @property
  def selection(self) -> SelectionDir:
    return SelectionDir(_join(self.root, "selection"))

  @property
  def arms(self) -> str:
    """arm -> {student, export, train}: which trained student each arm is."""
    return _join(self.root, "arms.json")

  def is_own(self, path: str) -> bool:
    """Whether path lies in this run's folder (not in a shared one another run uses)."""
    root = os.path.abspath(self.root)
    return os.path.commonpath([os.path.abspath(path), root]) == root


# ------------------------------------------------------------------ STEER experiment

@dataclasses.dataclass(frozen=True)
class SteerDir(_ExperimentOutputs):
  """A STEER experiment run (ai_jax.experiment.steer): per task its data, expert, arms'
  samples and corpus metrics, then one report."""

  def data(self, task: str, part: str) -> str:
    """A task's data set `part` (real_train, real_reference, expert_train, generate)."""
    return _join(self.root, "data", task, f"{part}.jsonl")

  def expert(self, task: str) -> TrainDir:
    return TrainDir(_join(self.root, "experts", task))

  @property
  def experts_root(self) -> str:
    return _join(self.root, "experts")

  def arm(self, task: str, arm: str) -> StageDir:
    return StageDir(_join(self.root, "samples", task, arm))

  @property
  def samples_root(self) -> str:
    return _join(self.root, "samples")

  def metrics(self, task: str) -> str:
    """arm -> corpus metric -> {value, low, high}, with what they were computed over."""
    return _join(self.root, "metrics", f"{task}.json")

  @property
  def metrics_root(self) -> str:
    return _join(self.root, "metrics")

  @property
  def data_root(self) -> str:
    return _join(self.root, "data")

  def plot(self, task: str, kind: str) -> str:
    return _join(self.root, "plots", f"{task}_{kind}.png")


# ------------------------------------------------------------------ sweep

@dataclasses.dataclass(frozen=True)
class SweepDir:
  """A sweep of experiment cells that share teacher samples, students and evaluations."""
  root: str

  @property
  def shared(self) -> str:
    return _join(self.root, "shared")

  def cell(self, name: str) -> str:
    return _join(self.root, "cells", name)

  def barrier(self, name: str) -> str:
    return _join(self.root, "barriers", name)

  def barrier_arrival(self, name: str, host_index: int) -> str:
    return _join(self.root, "barriers", name, f"h{host_index:03d}")

  def host_failed(self, host_index: int) -> str:
    """A failed host's error, which releases the others from their barriers."""
    return _join(self.root, "barriers", f"FAILED-h{host_index:03d}")

  @property
  def failed_glob(self) -> str:
    return _join(self.root, "barriers", "FAILED-*")

  @property
  def table_csv(self) -> str:
    return _join(self.root, "sweep.csv")

  @property
  def table_md(self) -> str:
    return _join(self.root, "sweep.md")

  @property
  def plot(self) -> str:
    return _join(self.root, "sweep.png")
