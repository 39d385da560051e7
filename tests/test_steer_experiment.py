"""The STEER experiment (ai_jax.experiment.steer, configs/steer.py): the smoke config end to
end on a tiny random model, its resumption, and the refusals plan() makes before any model
is loaded; every leaf of configs/steer.py reaches what the run resolves or is refused."""

from __future__ import annotations

import json
import os

import ml_collections
import pytest

from ai_jax.experiment import steer
from ai_jax.experiment import steer_metrics
from ai_jax.stages import sample as sample_stage
from ai_jax.store.records import iter_records
from ai_jax.training import trainer
from config_leaves import assert_every_leaf_reaches, leaves
from conftest import requires_embedded
from configs import steer as steer_config

pytestmark = [requires_embedded, pytest.mark.xdist_group("steer_experiment")]


def _smoke(base_path: str) -> ml_collections.ConfigDict:
  c = steer_config.get_config("smoke")
  c.base_path = base_path
  return c


@pytest.fixture(scope="module")
def smoke_run(tiny_student_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("steer_smoke") / "run")
  summary = steer.run(_smoke(tiny_student_dir), workdir)
  return workdir, summary


def test_smoke_run_has_every_task_arm_and_metric(smoke_run):
  workdir, summary = smoke_run
  arms = ["expert", "base", "gamma_only", "eta_only", "steer", "grid_g0.5_e1"]
  assert sorted(summary["tasks"]) == ["commonsense", "instructions"]
  for name, task in summary["tasks"].items():
    assert sorted(task["arms"]) == sorted(arms)
    assert task["num_train"] == 12 and task["num_reference"] == 10
    assert task["expert"]["steps"] >= 1
    for arm, a in task["arms"].items():
      assert a["num_texts"] == 10, (name, arm)
      assert list(a["metrics"]) == list(steer_metrics.METRICS)
      for metric, m in a["metrics"].items():
        if m["value"] is not None:
          assert m["num_resamples"] >= 1, (name, arm, metric)
      sim = a["metrics"]["embedding_similarity"]
      assert -1.0 <= sim["value"] <= 1.0 and sim["low"] <= sim["high"]
      assert 0.0 <= a["metrics"]["mauve"]["value"] <= 1.0
      assert 0.0 <= a["metrics"]["authenticity"]["value"] <= 1.0
  report = open(os.path.join(workdir, "report.md")).read()
  assert "| arm | model | decoder |" in report and "grid_g0.5_e1" in report
  for task in ("instructions", "commonsense"):
    for kind in ("diversity_similarity", "diversity_authenticity"):
      path = steer.layout.SteerDir(workdir).plot(task, kind)
      assert os.path.getsize(path) > 1000 and f"]({os.path.relpath(path, workdir)})" in report
  assert summary["wall_seconds"] > 0 and (
      # the report is written while its own stage runs: every stage before it is counted
      set(summary["stage_seconds"]) == set(steer.STAGE_NAMES) - {"report"})


def test_steer_arms_sampled_with_their_weights_and_negatives(smoke_run):
  workdir, _ = smoke_run
  dirs = steer.layout.SteerDir(workdir)
  real = {"real:" + r["prompt_id"]
          for r in map(json.loads, open(dirs.data("commonsense", "real_train")))}
  arm = dirs.arm("commonsense", "steer")
  config = json.load(open(arm.sample_config))
  assert config["sampling"]["decoder"] == "steer"
  assert (config["steer"]["gamma"], config["steer"]["eta"]) == (0.2, 0.6)
  rows = sorted(iter_records(arm.samples), key=lambda r: r["prompt_id"])
  assert len(rows) == 10
  # Round 1 (4 prompts) draws real examples only; later rounds also earlier rounds' samples
  # (named prompt_id/sample_index), never their own round's.
  for i, r in enumerate(rows):
    negatives = r["steer_negatives"]
    assert len(negatives) == len(set(negatives)) == 3
    earlier = {f"{x['prompt_id']}/0" for x in rows[:4 * (i // 4)]}
    assert set(negatives) <= real | earlier, (i, negatives)
  assert any(n in {f"{x['prompt_id']}/0" for x in rows} for r in rows for n in
             r["steer_negatives"]), "no synthetic example ever entered the pool"
  plain = list(iter_records(dirs.arm("commonsense", "expert").samples))
  assert all("steer_negatives" not in r for r in plain)


def test_rerun_resumes_without_recomputing(smoke_run, tiny_student_dir):
  workdir, summary = smoke_run
  dirs = steer.layout.SteerDir(workdir)
  metrics_path = dirs.metrics("instructions")
  before = (os.path.getmtime(metrics_path), os.path.getmtime(dirs.expert("instructions")
                                                             .finished_marker))
  again = steer.run(_smoke(tiny_student_dir), workdir)
  assert (os.path.getmtime(metrics_path),
          os.path.getmtime(dirs.expert("instructions").finished_marker)) == before
  strip = lambda s: {t: {a: x["metrics"] for a, x in v["arms"].items()}  # noqa: E731
                     for t, v in s["tasks"].items()}
  assert strip(again) == strip(summary)


# ---------------------------------------------------------------- refusals before loading


@pytest.fixture
def no_loading(monkeypatch):
  from ai_jax import loading

  def refuse(*a, **k):
    raise AssertionError("a model was loaded before the config was checked")
  monkeypatch.setattr(loading, "load_model", refuse)


@pytest.mark.parametrize("edit,match", [
    (lambda c: c.arms.steer.update({"gamma": -0.1}), r"config\.arms\.steer\.gamma"),
    (lambda c: c.arms.steer.update({"eta": float("nan")}), r"config\.arms\.steer\.eta"),
    (lambda c: c.grid.update({"gammas": ("x",)}), r"config\.grid\.gammas"),
    (lambda c: c.arms.expert.update({"gamma": 0.2}), "decoder 'plain'"),
    (lambda c: c.arms.base.update({"decoder": "steer"}), "STEER guides the expert"),
    (lambda c: c.sample.steer.update({"num_negatives": 13}), r"num_negatives=13"),
    (lambda c: c.tasks.instructions.update({"num_train": 1000}), "distinct examples"),
    (lambda c: c.tasks.commonsense.update({"real_path": "/no/such.jsonl"}),
     r"config\.tasks\.commonsense\.real_path"),
    (lambda c: c.metrics.update({"folds": 11}), r"config\.metrics\.folds=11"),
    (lambda c: c.sample.sampling.update({"seed": 3}), r"config\.sample\.sampling\.seed"),
])
def test_bad_config_stops_before_any_model_is_loaded(edit, match, no_loading,
                                                     tiny_student_dir, tmp_path):
  c = _smoke(tiny_student_dir)
  with c.unlocked():
    edit(c)
  with pytest.raises(steer.ExperimentConfigError, match=match):
    steer.run(c, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


# ---------------------------------------------------------------- no key dropped


def _resolved(config, tmp_path) -> dict:
  p = steer.plan(config, str(tmp_path / "run"))
  return {
      "title": p.config.name, "base": p.base_path, "tasks": p.tasks, "arms": p.arms,
      "real": p.real, "num_generate": int(p.config.num_generate),
      "metrics": (steer_metrics.metric_options(p.config), int(p.config.metrics.num_bootstrap),
                  int(p.config.seed)),
      "train": {t.name: trainer.settings(p.train_config(t.name)) for t in p.tasks},
      "sample": {(t.name, a.name): sample_stage.settings(
          p.sample_config(t.name, a, p.base_path)) for t in p.tasks for a in p.arms}}


def test_every_leaf_reaches_the_run_or_is_refused(tiny_student_dir, tmp_path):
  config = _smoke(tiny_student_dir)
  # base_path is a model path: changing it is another model, which plan's loader checks.
  assert_every_leaf_reaches(
      config, lambda c: _resolved(c, tmp_path),
      (steer.ExperimentConfigError, ValueError, FileNotFoundError), skip=("base_path",))


def test_config_args():
  for arg in ("", "smoke", "paper"):
    c = steer_config.get_config(arg)
    flat = dict(leaves(c.to_dict()))
    for key in steer.GOVERNED:
      assert not any(k == key or k.startswith(key + ".") for k in flat), (arg, key)
  with pytest.raises(ValueError, match="takes '', 'smoke' or 'paper'"):
    steer_config.get_config("big")
