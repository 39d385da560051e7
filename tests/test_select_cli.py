"""`python -m ai_jax.select`: arms with baselines, provenance, summaries, the ablation."""

import json
import os
import subprocess
import sys

import pytest

from ai_jax.stages import score as score_cli
from ai_jax.stages import select as select_cli
from ai_jax.store.records import RecordStore
from configs import score as score_config
from configs import select as select_config
from conftest import subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = [{"prompt_id": f"q{i}", "prompt": f"Question number {i}?"} for i in range(6)]


def _make_run(workdir, k=4, teachers=("alpha", "beta")):
  """Two teachers; sample j of teacher t for prompt i has (i + j + 2*t_index) words."""
  (workdir / "samples").mkdir(parents=True)
  prompts = workdir / "prompts.jsonl"
  prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
  store = RecordStore(str(workdir / "samples"), records_per_shard=7)
  for i, p in enumerate(PROMPTS):
    for t, teacher in enumerate(teachers):
      store.append([{"prompt_id": p["prompt_id"], "teacher": teacher, "sample_index": j,
                     "text": " ".join(["word"] * (1 + i + j + 2 * t)) + ".",
                     "num_tokens": 5, "finish_reason": "length" if j == 3 else "stop"}
                    for j in range(k)])
  (workdir / "sample_config.json").write_text(json.dumps({"model": {"path": ""},
                                                          "prompts": {"path": str(prompts)}}))
  c = score_config.get_config("smoke")
  c.metrics = ("length_words", "length_chars")
  score_cli.run(c, str(workdir))
  return workdir


def _train(run, arm):
  return [json.loads(line) for line in open(run / "selection" / arm / "train.jsonl")]


def test_select_writes_each_arm_with_provenance(tmp_path):
  run = _make_run(tmp_path / "run")
  proc = subprocess.run(
      [sys.executable, "-m", "ai_jax.select", "--config", "configs/select.py:smoke",
       "--workdir", str(run)], cwd=REPO, env=subprocess_env(),
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads(proc.stdout)
  assert set(summary["arms"]) == {"best_length_words", "random", "first"}
  best = _train(run, "best_length_words")
  assert len(best) == 6
  for i, row in enumerate(best):
    # The longest pooled sample is teacher beta's sample 3 (i + 3 + 2 words + 1).
    assert (row["teacher"], row["sample_index"]) == ("beta", 3)
    assert row["prompt"] == PROMPTS[i]["prompt"] and row["prompt_id"] == f"q{i}"
    assert row["scores"]["length_words"] == i + 6
    assert row["completion"].split() == ["word"] * (i + 5) + ["word."]
    assert row["finish_reason"] == "length"
  first = _train(run, "first")
  assert {(r["teacher"], r["sample_index"]) for r in first} == {("alpha", 0)}
  arm = json.load(open(run / "selection" / "best_length_words" / "summary.json"))
  assert arm["kept_cut_by_max_new_tokens_share"] == 1.0
  means = arm["mean_score_kept_vs_all"]["length_words"]
  assert means["kept"] == pytest.approx(8.5) and means["all"] == pytest.approx(6.0)
  assert arm["kept_teachers"] == {"beta": 6}
  assert len(summary["ablation"]["best_of_j"]) == 8  # j = 1..8 over the pooled teachers
  assert summary["ablation"]["best_of_j"][0] == pytest.approx(6.0)
  assert summary["ablation"]["best_of_j"][-1] == pytest.approx(8.5)
  for name in ("ablation_length_words.csv", "ablation_length_words.md",
               "ablation_length_words.png"):
    assert (run / "selection" / "ablation" / name).exists()


def test_exclude_cut_applies_to_every_arm(tmp_path):
  run = _make_run(tmp_path / "run")
  c = select_config.get_config("smoke")
  c.strategy.exclude_cut = True
  select_cli.run(c, str(run))
  for arm in ("best_length_words", "random", "first"):
    assert all(r["finish_reason"] == "stop" for r in _train(run, arm)), arm
  assert {(r["teacher"], r["sample_index"]) for r in _train(run, "best_length_words")} == {
      ("beta", 2)}


def test_worst_and_random_are_deterministic(tmp_path):
  run = _make_run(tmp_path / "run")
  c = select_config.get_config("smoke")
  c.strategy.maximize = False
  first = select_cli.run(c, str(run))
  assert "worst_length_words" in first["arms"]
  assert {(r["teacher"], r["sample_index"]) for r in _train(run, "worst_length_words")} == {
      ("alpha", 0)}
  random_rows = _train(run, "random")
  select_cli.run(c, str(run))
  assert _train(run, "random") == random_rows


def test_unscored_samples_and_unknown_metrics_are_refused(tmp_path):
  run = _make_run(tmp_path / "run")
  RecordStore(str(run / "samples")).append([{
      "prompt_id": "q0", "teacher": "alpha", "sample_index": 9, "text": "late", "num_tokens": 1,
      "finish_reason": "stop"}])
  with pytest.raises(select_cli.SelectionInputError, match="have no scores"):
    select_cli.run(select_config.get_config("smoke"), str(run))
  run2 = _make_run(tmp_path / "run2")
  c = select_config.get_config("smoke")
  c.strategy.metric = "mtld"
  with pytest.raises(select_cli.SelectionInputError, match="not scored"):
    select_cli.run(c, str(run2))


def test_all_nan_prompt_is_reported_not_dropped_silently(tmp_path):
  run = _make_run(tmp_path / "run", k=2, teachers=("alpha",))
  # Rewrite q0's scores as missing (as a failing metric would leave them).
  scores = run / "scores"
  for path in scores.glob("shard-*.jsonl"):
    rows = [json.loads(line) for line in open(path)]
    for r in rows:
      if r["prompt_id"] == "q0":
        r["length_words"] = None
        r["score_errors"] = {"length_words": "ValueError: boom"}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  c = select_config.get_config("smoke")
  c.baselines = ()
  summary = select_cli.run(c, str(run))
  arm = summary["arms"]["best_length_words"]
  assert arm["kept"] == 5 and arm["dropped"] == 1
  assert arm["dropped_reasons"] == {"all candidates NaN on length_words": 1}
