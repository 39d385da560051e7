"""The active-inheritance experiment: the smoke config end to end through its CLI, resume
after SIGKILL during sampling and during training, and config errors before any compute."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import requires_embedded, subprocess_env
from configs import active_inheritance as ai_config
from ai_jax.experiment import active_inheritance as experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARMS = {"base", "random", "first", "longest"}
SMOKE_METRICS = tuple(ai_config.get_config("smoke").eval.metrics)


def _cmd(workdir, *extra):
  return [sys.executable, "-m", "experiments.active_inheritance", "--config",
          "configs/active_inheritance.py:smoke", "--workdir", str(workdir), *extra]


def _env():
  return subprocess_env()  # one CPU device, as on a laptop (this process has 8 fake ones)


def _run_to_end(workdir, *extra):
  proc = subprocess.run(_cmd(workdir, *extra), cwd=REPO, env=_env(), capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc


def _summary(workdir) -> dict:
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    return json.load(f)


@pytest.fixture
def smoke_run(smoke_experiment):
  return smoke_experiment


@requires_embedded
def test_smoke_report_has_every_arm_metric_and_interval(smoke_run):
  summary = _summary(smoke_run)
  assert set(summary["arms"]) == ARMS
  steps = {a: v["train"]["steps"] for a, v in summary["arms"].items() if v["train"]}
  assert set(steps) == ARMS - {"base"}
  assert set(steps.values()) == {summary["train_steps_per_arm"]} == {3}  # ceil(6 / 2)
  expected = {"greedy": set(SMOKE_METRICS), "sampled": set(SMOKE_METRICS),
              "toxicity": {"expected_max_toxicity_offline",
                           "probability_toxicity_offline_ge_0.5"}}
  assert set(summary["evaluations"]) == set(expected)
  for mode, metrics in expected.items():
    section = summary["evaluations"][mode]["metrics"]
    assert set(section) == metrics, mode
    for metric, entry in section.items():
      assert set(entry["arms"]) == ARMS, (mode, metric)
      for arm, cell in entry["arms"].items():
        est = cell["estimate"]
        assert est["value"] is not None and est["n"] == 4, (mode, metric, arm, est)
        assert est["low"] is not None and est["low"] <= est["value"] <= est["high"]
        if arm != "base":
          assert cell["vs_base"]["diff"]["low"] is not None, (mode, metric, arm)
          assert cell["vs_base"]["n_paired"] == 4
        assert (cell["vs_random"] is None) == (arm == "random")
  report = open(os.path.join(smoke_run, "report.md"), encoding="utf-8").read()
  for name in ARMS | set(SMOKE_METRICS) | {"expected_max_toxicity_offline"}:
    assert name in report, name
  assert "95%" in report and "bootstrap" in report
  for png in ("plots/metrics_greedy.png", "plots/metrics_sampled.png",
              "plots/metrics_toxicity.png", "plots/shift_length_words.png",
              "selection/ablation/ablation_length_words.png"):
    with open(os.path.join(smoke_run, png), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n", png
    assert png in report or os.path.basename(png) in report, png
  kept = summary["arms"]["longest"]["selection"]["mean_score_kept_vs_all"]["length_words"]
  assert kept["kept"] >= kept["all"]
  assert summary["ablation"]["metric"] == "length_words"
  assert [r["j"] for r in summary["ablation"]["rows"]] == [1, 2, 3]
  assert set(summary["stage_seconds"]) >= {"sample", "score", "select", "train", "evaluate"}
  # Checkpoints are deleted once a student is exported (config.keep_checkpoints=False).
  assert not glob.glob(os.path.join(smoke_run, "students", "*", "checkpoints"))


def _count_lines(pattern: str) -> int:
  n = 0
  for path in glob.glob(pattern):
    with open(path, "rb") as f:
      n += f.read().count(b"\n")
  return n


def _kill_when(workdir, condition, what: str, *extra, timeout: float = 600) -> None:
  proc = subprocess.Popen(_cmd(workdir, *extra), cwd=REPO, env=_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + timeout
  try:
    while not condition():
      assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before {what}"
      assert time.time() < deadline, f"timed out waiting for {what}"
      time.sleep(0.02)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@requires_embedded
def test_killed_during_sampling_and_training_resumes_to_the_same_summary(tmp_path,
                                                                        tiny_student_dir):
  # The mechanics of resume on the tiny random model with SmolLM2's tokenizer (the smoke
  # run is the embedded model's end-to-end check, every evaluation mode included): runs
  # take seconds, and 12 training prompts in batches of one make sampling long enough for
  # the kill to land inside it (it lands within 20 ms of the first batch's records; a batch
  # takes 0.1-0.3 s). One evaluation mode: the kills land before evaluation.
  extra = (f"--config.teachers.smollm2_135m={tiny_student_dir}",
           f"--config.student.path={tiny_student_dir}", "--config.prompts.train.limit=12",
           "--config.sample.sampling.batch_size=1", "--config.eval.modes.sampled.enabled=False",
           "--config.eval.modes.toxicity.enabled=False")
  clean_dir = tmp_path / "clean"
  _run_to_end(clean_dir, *extra)
  workdir = tmp_path / "run"
  samples = str(workdir / "teacher" / "samples" / "shard-*.jsonl")
  _kill_when(workdir, lambda: _count_lines(samples) >= 1, "the first sample batch", *extra)
  assert _count_lines(samples) < 12 * 3, "sampling had finished before the kill"

  def training_started():
    return any(_count_lines(m) >= 1 and not os.path.exists(os.path.join(os.path.dirname(m),
                                                                         "trained.json"))
               for m in glob.glob(str(workdir / "students" / "*" / "train_metrics.jsonl")))
  _kill_when(workdir, training_started, "a training step", *extra)
  trained = glob.glob(str(workdir / "students" / "*" / "trained.json"))
  assert len(trained) < 3, "training had finished before the kill"

  _run_to_end(workdir, *extra)
  resumed, clean = _summary(workdir), _summary(clean_dir)
  for timings in ("stage_seconds", "profile_seconds"):
    resumed.pop(timings)
    clean.pop(timings)
  assert resumed == clean
  # Nothing was sampled twice: one record per (prompt, sample index).
  records = [json.loads(line) for p in sorted(glob.glob(samples)) for line in open(p)]
  assert len(records) == len({(r["prompt_id"], r["sample_index"]) for r in records}) == 36


# --------------------------------------------------------------------------- bad configs


def _plan_error(tmp_path, mutate) -> str:
  config = ai_config.get_config("smoke")
  mutate(config)
  with pytest.raises(experiment.ExperimentConfigError) as e:
    experiment.plan(config, str(tmp_path))
  assert not os.listdir(tmp_path)  # nothing written
  return str(e.value)


def test_unknown_metric_fails_with_known_names(tmp_path):
  def mutate(c):
    c.score.metrics = ("length_words", "lenght_chars")
  message = _plan_error(tmp_path, mutate)
  assert "lenght_chars" in message and "score.metrics" in message and "length_chars" in message


def test_arm_on_unscored_metric_fails(tmp_path):
  def mutate(c):
    c.arms.longest.metric = "mattr"
  message = _plan_error(tmp_path, mutate)
  assert "'longest'" in message and "mattr" in message


def test_zero_k_fails(tmp_path):
  def mutate(c):
    c.sample.sampling.k = 0
  assert "k must be >= 1" in _plan_error(tmp_path, mutate)

  def mutate_eval(c):
    c.eval.modes.toxicity.k = 0
  assert "eval.modes.toxicity" in _plan_error(tmp_path, mutate_eval)


def test_missing_prompt_file_fails_naming_it(tmp_path):
  missing = str(tmp_path / "nowhere" / "prompts.jsonl")

  config = ai_config.get_config("smoke")
  config.prompts.train.path = missing
  with pytest.raises(experiment.ExperimentConfigError) as e:
    experiment.plan(config, str(tmp_path / "w"))
  message = str(e.value)
  assert "prompts.train" in message and missing in message
  assert not os.path.exists(tmp_path / "w")


@pytest.mark.parametrize("arms, words", [
    ({"random": {"name": "best", "metric": "length_words"}}, "collides"),
    ({"base": {"name": "best", "metric": "length_words"}}, "collide"),
    ({"Longest": {"name": "best", "metric": "length_words"},
      "longest": {"name": "worst", "metric": "length_words"}}, "collide"),
    ({"a/b": {"name": "best", "metric": "length_words"}}, "names a folder"),
    ({}, "config.arms is empty"),
    ({"x": {"name": "bestest", "metric": "length_words"}}, "unknown selection strategy"),
])
def test_bad_arm_names_fail(tmp_path, arms, words):
  import ml_collections

  def mutate(c):
    c.arms = ml_collections.ConfigDict(arms)
  assert words in _plan_error(tmp_path, mutate)


def test_eval_prompts_never_include_training_prompts(tmp_path):
  config = ai_config.get_config("smoke")
  config.prompts.eval.split = "train"   # the six training prompts, then four others
  config.prompts.eval.limit = 10
  plan = experiment.plan(config, str(tmp_path))
  train_ids = {p["prompt_id"] for p in plan.prompt_sets["train"]}
  assert len(train_ids) == 6 and len(plan.prompt_sets["eval"]) == 4
  assert not train_ids & {p["prompt_id"] for p in plan.prompt_sets["eval"]}
  assert plan.prompt_stats["eval"]["dropped_as_training_prompts"] == 6

  config.prompts.eval.limit = 6
  with pytest.raises(experiment.ExperimentConfigError, match="empty after removing"):
    experiment.plan(config, str(tmp_path))


def test_cli_bad_config_exits_before_compute(tmp_path):
  proc = subprocess.run(_cmd(tmp_path / "w", "--config.sample.sampling.k=0"), cwd=REPO,
                        env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert "config.sample.sampling.k must be >= 1" in proc.stderr
  assert not os.path.exists(tmp_path / "w")
