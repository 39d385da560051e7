"""The experiment's numbers: every arm's evaluation scores, aggregated per prompt, with
bootstrap intervals and paired comparisons against the untuned student and random.

Rows come from an evaluation folder's stores (DIR/eval/<mode>/samples and scores, one
"teacher" per arm), joined by key and restricted to the mode's prompts and its first k
sample indices, so a folder that once held more samples reports the same numbers as a
fresh one. Prompts the student could not answer (prompt_too_long) are left out and counted.

protocol "mean": a prompt's value is the mean over its samples (one sample when greedy).
protocol "toxicity": the RealToxicityPrompts read-out: expected maximum toxicity (a
prompt's value is its samples' maximum) and toxicity probability (1 if any sample scores
>= the threshold), each for every metric of the mode.
"""

from __future__ import annotations

import csv
import os

from ai_jax.profiling import stats
from ai_jax.run import layout
from ai_jax.store.atomic import read_json
from ai_jax.store.records import iter_records, record_key

NOT_ANSWERED = layout.NOT_SAMPLED  # prompts the student could not answer


def arm_rows(folder: str, arm: str, prompt_ids: set, k: int, metrics) -> tuple[list[dict], int]:
  """(score rows of one arm, number of its samples left out as not answered)."""
  run_dir = layout.StageDir(folder)
  finish = {record_key(r): r.get("finish_reason") for r in iter_records(run_dir.samples)
            if r.get("teacher") == arm and r["prompt_id"] in prompt_ids and r["sample_index"] < k}
  rows, skipped = [], 0
  for r in iter_records(run_dir.scores):
    key = record_key(r)
    if key not in finish:
      continue
    if finish[key] in NOT_ANSWERED:
      skipped += 1
      continue
    rows.append({"prompt_id": r["prompt_id"], "sample_index": r["sample_index"],
                 "finish_reason": finish[key], **{m: r.get(m) for m in metrics}})
  missing = len(finish) - len(rows) - skipped
  if missing:
    raise ValueError(f"{missing} samples of arm {arm!r} in {folder} have no scores; rerun the "
                     "evaluate stage (it resumes)")
  return rows, skipped


def _compare(values: dict, others: dict, name: str, boot: dict):
  if name not in others:
    return None
  try:
    return stats.jsonable(stats.paired_difference(values, others[name], **boot))
  except ValueError:
    return None  # no prompt with a value in both arms: nothing to compare


def _metric_entry(per_prompt_by_arm: dict[str, dict], higher_means, boot: dict) -> dict:
  arms = {}
  for arm, values in per_prompt_by_arm.items():
    arms[arm] = {
        "estimate": stats.bootstrap_mean(values, **boot).to_dict(),
        "vs_base": None if arm == "base" else _compare(values, per_prompt_by_arm, "base", boot),
        "vs_random": None if arm == "random" else _compare(values, per_prompt_by_arm, "random",
                                                            boot)}
  return {"higher_means": higher_means, "arms": arms}


def mode_section(rows_by_arm: dict[str, list[dict]], metrics: list[str], protocol: str,
                 higher_means: dict, *, threshold: float, boot: dict) -> dict:
  """{"metrics": {name: {"higher_means", "arms": {arm: estimate, vs_base, vs_random}}}}."""
  out = {}
  for metric in metrics:
    if protocol == "toxicity":
      out[f"expected_max_{metric}"] = _metric_entry(
          {a: stats.max_per_prompt(rows, metric) for a, rows in rows_by_arm.items()},
          higher_means.get(metric), boot)
      out[f"probability_{metric}_ge_{threshold:g}"] = _metric_entry(
          {a: stats.any_at_least(rows, metric, threshold) for a, rows in rows_by_arm.items()},
          "more prompts with a sample at or above the threshold", boot)
    else:
      out[metric] = _metric_entry(
          {a: stats.per_prompt_mean(rows, metric) for a, rows in rows_by_arm.items()},
          higher_means.get(metric), boot)
  return {"metrics": out}


def _metric_infos(folder: str) -> dict:
  return read_json(layout.StageDir(folder).scores_metrics)["columns"]


def _describe_mode(name: str, mode: dict, num_prompts: int) -> str:
  how = ("greedy" if mode["temperature"] == 0 else
         f"T={mode['temperature']:g}, top-p {mode['top_p']:g}")
  text = (f"{num_prompts} prompts ({mode['prompts']}), {mode['k']} sample(s) per prompt, "
          f"{how}, up to {mode['max_new_tokens']} new tokens")
  if mode["protocol"] == "toxicity":
    text += ("; expected maximum = mean over prompts of the max over samples; probability = "
             "share of prompts with a sample at or above the threshold")
  return text


def _ablation(dirs: layout.ExperimentDir) -> dict | None:
  selection = dirs.selection
  info = read_json(selection.summary, {}).get("ablation")
  if not info:
    return None
  with open(os.path.join(selection.root, info["files"]["csv"]), encoding="utf-8") as f:
    rows = [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(f)]
  return {"metric": info["metric"], "maximize": info["maximize"],
          "png": dirs.relative(os.path.join(selection.root, info["files"]["png"])),
          "rows": rows}


def _number(text: str):
  for cast in (int, float):
    try:
      return cast(text)
    except ValueError:
      pass
  return {"True": True, "False": False, "": None}.get(text, text)


def _arms(plan, students: dict) -> dict:
  out = {}
  for arm, info in plan.arms.items():
    entry = {"kind": info["kind"], "description": info["description"],
             "strategy": info["strategy"], "selection": None, "train": None}
    if info["kind"] != "base":
      s = read_json(plan.dirs.selection.arm_summary(arm))
      entry["selection"] = {k: s[k] for k in ("kept", "dropped", "dropped_reasons",
                                              "kept_cut_by_max_new_tokens_share",
                                              "mean_score_kept_vs_all", "kept_teachers")}
      t = students[arm]["train"]
      entry["train"] = {"steps": t["steps"],
                        "examples": t["steps"] * plan.stages.train.train.batch_size,
                        "final_loss": t["final_loss"], "first_loss": t["first_loss"],
                        "data": t["data"], "student": students[arm]["student"]}
    out[arm] = entry
  return out


def experiment_summary(plan, students: dict, stage_seconds: dict) -> tuple[dict, dict]:
  """(summary.json's contents, greedy per-sample distributions of the targeted metrics)."""
  report = plan.stages.report
  boot = {k: report[k] for k in ("num_bootstrap", "confidence", "seed")}
  targeted = sorted({m for a in plan.arms.values() if a["kind"] == "targeted"
                     for m in ([a["strategy"].get("metric")] if a["strategy"].get("metric")
                               else [])})
  evaluations, distributions, not_answered = {}, {}, {}
  for name, mode in plan.modes.items():
    folder = plan.dirs.evaluation(name).root
    infos = _metric_infos(folder)
    metrics = list(infos)
    prompt_ids = {p["prompt_id"] for p in plan.prompt_sets[plan.mode_prompts(name)]}
    rows_by_arm = {}
    for arm in plan.arms:
      rows_by_arm[arm], skipped = arm_rows(folder, students[arm]["student"], prompt_ids,
                                           int(mode["k"]), metrics)
      not_answered[f"{name}/{arm}"] = skipped
    section = mode_section(rows_by_arm, metrics, mode["protocol"],
                           {m: infos[m].get("higher_means") for m in metrics},
                           threshold=report["toxicity_threshold"], boot=boot)
    section["description"] = _describe_mode(name, mode, len(prompt_ids))
    section["num_prompts"] = len(prompt_ids)
    evaluations[name] = section
    if name == "greedy" or (not distributions and mode["protocol"] == "mean"):
      distributions = {m: {a: [r.get(m) for r in rows] for a, rows in rows_by_arm.items()}
                       for m in targeted if m in metrics}
  summary = {
      "title": report["title"],
      "arms": _arms(plan, students),
      "targeted_metrics": targeted,
      "evaluations": evaluations,
      "ablation": _ablation(plan.dirs),
      "train_steps_per_arm": plan.train_steps,
      "prompt_sets": plan.prompt_stats,
      "samples_not_answered": {k: v for k, v in not_answered.items() if v},
      "stage_seconds": dict(stage_seconds),
      "confidence": boot["confidence"],
      "teachers": dict(plan.config.teachers),
      # Whose tokenizer length_tokens (and every token count) used on the teachers' samples.
      "score_tokenizer": read_json(layout.StageDir(plan.dirs.teacher.root).scores_metrics,
                                   {}).get("tokenizer"),
  }
  return summary, distributions
