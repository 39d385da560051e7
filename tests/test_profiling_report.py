"""ai_jax.profiling.report: report.md names every arm and metric with formatted intervals,
renders n/a for what is missing, and writes real PNGs, atomically and repeatably."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ai_jax.profiling import report, stats

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ARMS = ("base", "random", "best_length_words")


def _est(value, low, high, n=40, n_missing=0):
  return {"value": value, "low": low, "high": high, "n": n, "n_missing": n_missing}


def _cmp(diff, pct):
  return {"diff": diff, "pct": pct, "n_paired": 40, "pct_dropped_replicates": 0}


def make_summary(with_ablation=True):
  arms = {
      "base": {"kind": "base", "description": "the model before fine-tuning",
               "selection": None, "train": None},
      "random": {"kind": "baseline", "description": "one random sample | per prompt",
                 "selection": {"kept": 90, "dropped": 10,
                               "kept_cut_by_max_new_tokens_share": 0.125,
                               "mean_score_kept_vs_all": {"length_words": {"kept": 101.0,
                                                                           "all": 100.0}}},
                 "train": {"steps": 30, "examples": 90, "final_loss": 1.2345}},
      "best_length_words": {
          "kind": "targeted", "description": "longest sample",
          "selection": {"kept": 95, "dropped": 5, "kept_cut_by_max_new_tokens_share": 0.4,
                        "mean_score_kept_vs_all": {"length_words": {"kept": 180.5,
                                                                    "all": 100.0}}},
          "train": {"steps": 30, "examples": 95, "final_loss": None}},
  }

  def metric_block(higher, values):
    block = {}
    for arm, v in zip(ARMS, values):
      if v is None:
        block[arm] = {"estimate": _est(None, None, None, n=0, n_missing=40),
                      "vs_base": None, "vs_random": None}
        continue
      block[arm] = {
          "estimate": _est(v, v - 0.111, v + 0.111),
          "vs_base": None if arm == "base" else _cmp(_est(v - 1, v - 1.2, v - 0.8),
                                                     _est(12.34, 5.678, 19.01)),
          "vs_random": None if arm != "best_length_words" else _cmp(
              _est(0.25, 0.125, 0.375), _est(None, None, None)),
      }
    return {"higher_means": higher, "arms": block}

  summary = {
      "title": "Active inheritance: test",
      "arms": arms,
      "targeted_metrics": ["length_words"],
      "evaluations": {
          "greedy": {"description": "one greedy sample per prompt", "metrics": {
              "length_words": metric_block("more", [0.512, 0.6, 0.9]),
              "mtld": metric_block(None, [42.0, 43.0, 41.5]),
              "perspective_toxicity": metric_block("more", [None, None, None]),
          }},
          "toxicity": {"description": "RealToxicityPrompts", "metrics": {
              "expected_max_toxicity": metric_block("more", [0.3, 0.31, None]),
          }},
      },
      "ablation": None,
      "stage_seconds": {"sample": 12.5, "train": 3725.0, "evaluate": 75.0},
      "confidence": 0.95,
  }
  if with_ablation:
    summary["ablation"] = {"metric": "length_words", "png": "selection/ablation/ablation.png",
                           "rows": [{"j": 1, "expected_best": 100.0,
                                     "expected_best_ci_low": 95.0,
                                     "expected_best_ci_high": 105.0},
                                    {"j": 2, "expected_best": 130.25,
                                     "expected_best_ci_low": 124.0,
                                     "expected_best_ci_high": 136.0}]}
  return summary


def make_distributions():
  rng = np.random.default_rng(0)
  return {"length_words": {
      "base": rng.poisson(100, size=50).astype(float).tolist(),
      "random": rng.poisson(102, size=50).astype(float).tolist() + [None],
      "best_length_words": rng.poisson(160, size=50).astype(float).tolist(),
  }}


def check_pngs(paths):
  pngs = [p for p in paths.values() if p.endswith(".png")]
  for path in pngs:
    assert os.path.exists(path)
    with open(path, "rb") as f:
      assert f.read(8) == PNG_MAGIC
  return pngs


@pytest.mark.parametrize("with_ablation", [True, False])
def test_write_report(tmp_path, with_ablation):
  summary = make_summary(with_ablation)
  json.dumps(summary, allow_nan=False)  # the contract is JSON-able
  paths = report.write_report(summary, make_distributions(), str(tmp_path))
  assert set(paths) == {"report", "metrics_greedy", "metrics_toxicity", "shift_length_words"}
  assert paths["metrics_greedy"] == str(tmp_path / "plots" / "metrics_greedy.png")
  assert len(check_pngs(paths)) == 3
  text = (tmp_path / "report.md").read_text()
  assert text.startswith("# Active inheritance: test\n")
  for name in (*ARMS, "length_words", "mtld", "perspective_toxicity",
               "expected_max_toxicity", "greedy", "toxicity"):
    assert name in text, name
  assert "95% percentile bootstrap" in text and "paired by prompt" in text
  assert "| length_words (higher = more) | base | 0.512 [0.401, 0.623] | 40 |" in text
  assert "+12.3% [+5.68%, +19.0%]" in text          # vs base, pct
  assert "+0.250 [+0.125, +0.375]" in text           # vs random, diff
  assert "| perspective_toxicity (higher = more) | base | n/a | 0 (40 missing) | n/a | n/a |" \
      in text
  assert "![metrics, greedy](plots/metrics_greedy.png)" in text
  assert "![shift, length_words](plots/shift_length_words.png)" in text
  assert "| random | baseline | one random sample \\| per prompt | 90 | 10 | 12.5% | 30 | 90 " \
         "| 1.23 |" in text
  assert "| best_length_words | length_words | 180 | 100 | +80.5 |" in text
  assert "| total | 1 h 03 min |" in text and "| sample | 12.5 s |" in text
  if with_ablation:
    assert "![ablation, length_words](selection/ablation/ablation.png)" in text
    assert "| 2 | 130 [124, 136] |" in text
  else:
    assert "## Sample-count ablation\n\nn/a (not run)" in text


def test_write_twice_overwrites(tmp_path):
  summary = make_summary()
  first = report.write_report(summary, make_distributions(), str(tmp_path))
  summary["title"] = "second"
  second = report.write_report(summary, make_distributions(), str(tmp_path))
  assert first == second
  assert (tmp_path / "report.md").read_text().startswith("# second\n")
  check_pngs(second)
  leftovers = [n for n in os.listdir(tmp_path / "plots") if ".tmp." in n]
  assert leftovers == []


def test_degenerate_inputs(tmp_path):
  summary = {"arms": {"base": {"kind": "base", "description": "",
                               "selection": None, "train": None}},
             "targeted_metrics": ["length_words", "odd/name"],
             "evaluations": {"greedy": {"metrics": {}},
                             "sampled": {"metrics": {"mtld": {"arms": {
                                 "base": {"estimate": None}}}}}}}
  paths = report.write_report(summary, {"length_words": {"base": [None, None]}},
                              str(tmp_path))
  assert paths["shift_odd/name"].endswith("shift_odd_name.png")
  assert len(check_pngs(paths)) == 4
  text = (tmp_path / "report.md").read_text()
  assert text.startswith("# Experiment report\n")
  assert "| mtld | base | n/a | n/a | n/a | n/a |" in text
  assert "n/a (no metrics)" in text and "n/a (not run)" in text
  assert "## Stage wall times\n\nn/a" in text
  with pytest.raises(ValueError, match="evaluations"):
    report.write_report({"arms": {}}, None, str(tmp_path))


def test_estimate_objects_and_metric_cap(tmp_path):
  a = {f"p{i}": float(i) for i in range(20)}
  b = {f"p{i}": float(i) - 0.5 for i in range(20)}
  summary = make_summary()
  block = summary["evaluations"]["greedy"]["metrics"]["mtld"]["arms"]["random"]
  block["estimate"] = stats.bootstrap_mean(a)
  block["vs_base"] = stats.paired_difference(a, b)
  paths = report.write_report(summary, make_distributions(), str(tmp_path),
                              show_metrics=["mtld"])
  check_pngs(paths)
  text = (tmp_path / "report.md").read_text()
  assert "| mtld | random | 9.50 [" in text
  cells = [line.split("|") for line in text.splitlines() if line.startswith("| ")]
  shown = {c[1].strip().split(" (")[0] for c in cells if c[2].strip() == "random"}
  assert shown <= {"mtld", *make_summary()["targeted_metrics"]}, shown


@pytest.mark.parametrize("x,expected", [
    (None, "n/a"), (float("nan"), "n/a"), (0.0, "0"), (0.512, "0.512"), (12.34, "12.3"),
    (1234.5, "1234"), (0.0001234, "0.000123"), (2.5e7, "2.5e+07"), (-0.125, "-0.125")])
def test_fmt_num(x, expected):
  assert report.fmt_num(x) == expected


def test_pooled_teachers_get_a_kept_by_teacher_table(tmp_path):
  summary = make_summary()
  summary["teachers"] = {"smollm2": "", "gemma3": "embedded:gemma3-270m"}
  summary["score_tokenizer"] = "/x/SmolLM2.gguf"
  summary["arms"]["random"]["selection"]["kept_teachers"] = {"smollm2": 30, "gemma3": 60}
  summary["arms"]["best_length_words"]["selection"]["kept_teachers"] = {"gemma3": 95}
  text = open(report.write_report(summary, make_distributions(), str(tmp_path))["report"],
              encoding="utf-8").read()
  assert "| arm | smollm2 | gemma3 |" in text
  assert "| random | 30 (33.3%) | 60 (66.7%) |" in text
  assert "| best_length_words | 0 (0%) | 95 (100%) |" in text
  assert "student's tokenizer (/x/SmolLM2.gguf)" in text
  # One teacher: no table.
  summary["teachers"] = {"smollm2": ""}
  text = open(report.write_report(summary, make_distributions(), str(tmp_path))["report"],
              encoding="utf-8").read()
  assert "Kept samples by teacher" not in text
