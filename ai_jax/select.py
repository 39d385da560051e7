r"""Choose, per prompt, the sample the student learns from; write one training set per arm.

  python -m ai_jax.select --config configs/select.py --workdir DIR
  python -m ai_jax.select --config configs/select.py --workdir DIR \
      --config.strategy.metric=mtld --config.strategy.maximize=False

Joins DIR/samples/ and DIR/scores/ on (prompt_id, teacher, sample_index), pools each
prompt's samples over teachers, and for the configured strategy and each baseline
(`random`, `first`: every experiment reports them beside the targeted arm) writes
DIR/selection/<arm>/train.jsonl — prompt, completion and provenance (teacher,
sample_index, finish_reason, every score) — and DIR/selection/<arm>/summary.json: prompts
kept, prompts dropped and why, the kept samples' mean score beside the mean of all
samples (how much room the selection had) and the share of kept samples that
max_new_tokens cut. DIR/selection/ablation/ holds the best-of-j table and plot for
j = 1..k from this one pass (ai_jax.selection.ablation).

Selection is cheap and deterministic, so each file is rewritten whole (atomically) on
every run rather than resumed.
"""

from __future__ import annotations

import collections
import json
import os

import numpy as np

from ai_jax.sample import run_prompts
from ai_jax.selection import ablation, candidates, strategies
from ai_jax.store.atomic import write_json_atomic, write_jsonl_atomic
from ai_jax.store.records import KEY_FIELDS, iter_records, record_key


class SelectionInputError(ValueError):
  pass


def _metric_columns(scores_dir: str) -> list[str]:
  path = os.path.join(scores_dir, "metrics.json")
  if not os.path.exists(path):
    raise SelectionInputError(f"{path} is missing; score the samples first "
                              "(python -m ai_jax.score --workdir ...)")
  with open(path, encoding="utf-8") as f:
    return list(json.load(f)["columns"])


def joined_rows(workdir: str, max_samples_per_prompt: int = 0) -> tuple[list[dict], list[str]]:
  """Sample records with their scores merged in; every sample must have been scored.
  max_samples_per_prompt > 0 keeps sample indices below it (a k-sweep selects from the
  first k of one k_max pass, which is what a k run would have drawn)."""
  samples_dir, scores_dir = os.path.join(workdir, "samples"), os.path.join(workdir, "scores")
  metrics = _metric_columns(scores_dir)
  scores = {record_key(r): r for r in iter_records(scores_dir)}
  rows, unscored = [], []
  for sample in iter_records(samples_dir):
    if max_samples_per_prompt and sample["sample_index"] >= max_samples_per_prompt:
      continue
    score = scores.get(record_key(sample))
    if score is None:
      unscored.append(record_key(sample))
      continue
    rows.append({**sample, **{m: score.get(m) for m in metrics},
                 "score_errors": score.get("score_errors", {})})
  if unscored:
    raise SelectionInputError(
        f"{len(unscored)} sample records have no scores (e.g. {unscored[:3]}); run "
        f"`python -m ai_jax.score --workdir {workdir}` again to score them (it resumes)")
  if not rows:
    raise SelectionInputError(f"no sample records in {samples_dir}")
  return rows, metrics


BASELINES = ("random", "first")


def arms_from_config(config) -> dict[str, strategies.Strategy]:
  """{arm name: strategy}: the targeted strategies, then each baseline with the same cut
  policy (only the choice may differ between arms).

  config.arms ({name: strategy config}, several targeted arms; each takes
  config.exclude_cut unless it sets the same value) replaces config.strategy when set.
  """
  targeted = dict(config.get("arms", None) or {})
  if targeted:
    exclude_cut = bool(config.get("exclude_cut", False))
    arms = {}
    for name, strategy_config in targeted.items():
      if name in BASELINES or name == "base":
        raise ValueError(f"arm name {name!r} collides with a baseline arm ('base', "
                         f"{', '.join(map(repr, BASELINES))}); rename it")
      d = dict(strategy_config)
      if bool(d.setdefault("exclude_cut", exclude_cut)) != exclude_cut:
        raise ValueError(f"arm {name!r} sets exclude_cut={d['exclude_cut']} but the "
                         f"experiment's is {exclude_cut}: every arm needs the same cut policy")
      arms[name] = strategies.from_config(d)
  else:
    main = strategies.from_config(config.strategy)
    name = config.get("arm_name", "") or _default_arm_name(config.strategy)
    arms = {name: main}
    exclude_cut = bool(config.strategy.get("exclude_cut", False))
  for baseline in config.baselines:
    if baseline in arms:
      raise ValueError(f"arm name {baseline!r} collides with the {baseline!r} baseline")
    if baseline == "random":
      arms["random"] = strategies.Random(seed=config.seed, exclude_cut=exclude_cut)
    elif baseline == "first":
      arms["first"] = strategies.First(exclude_cut=exclude_cut)
    else:
      raise ValueError(f"unknown baseline {baseline!r}; baselines are 'random' and 'first'")
  return arms


def _default_arm_name(strategy_config) -> str:
  name = strategy_config["name"]
  metric = strategy_config.get("metric", "")
  if name == "best" and not strategy_config.get("maximize", True):
    name = "worst"
  return f"{name}_{metric}" if metric else name


def _arm_outputs(groups, choices, metrics, prompt_texts) -> tuple[list[dict], dict]:
  train, kept_scores = [], {m: [] for m in metrics}
  cut = 0
  for group, choice in zip(groups, choices):
    if choice.index is None:
      continue
    i = choice.index
    finish = group.finish_reasons[i] if group.finish_reasons else ""
    cut += finish == strategies.CUT
    scores = {m: (None if np.isnan(v := float(group.scores[m][i])) else v) for m in metrics}
    for m, v in scores.items():
      kept_scores[m].append(np.nan if v is None else v)
    train.append({"prompt_id": group.prompt_id, "prompt": prompt_texts[group.prompt_id],
                  "completion": group.texts[i], "teacher": group.teachers[i],
                  "sample_index": group.sample_indices[i], "finish_reason": finish,
                  "scores": scores})
  all_scores = {m: np.concatenate([g.scores[m] for g in groups]) for m in metrics}
  summary = {
      "prompts": len(groups), "kept": len(train), "dropped": len(groups) - len(train),
      "dropped_reasons": strategies.count_reasons(choices),
      "kept_cut_by_max_new_tokens_share": cut / max(len(train), 1),
      "kept_teachers": dict(collections.Counter(r["teacher"] for r in train)),
      "mean_score_kept_vs_all": {
          m: {"kept": _nanmean(kept_scores[m]), "all": _nanmean(all_scores[m])}
          for m in metrics}}
  return train, summary


def _nanmean(values) -> float | None:
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v)]
  return float(v.mean()) if v.size else None


def run(config, workdir: str, overwrite: bool = False) -> dict:
  del overwrite  # outputs are rewritten whole from the samples and scores each run
  rows, metrics = joined_rows(workdir, int(config.get("max_samples_per_prompt", 0) or 0))
  arms = arms_from_config(config)
  for arm, strategy in arms.items():
    missing = [m for m in strategy.required_metrics() if m not in metrics]
    if missing:
      raise SelectionInputError(f"arm {arm!r} needs metrics {missing}, which were not scored; "
                                f"scored metrics: {metrics}")
  prompt_texts = run_prompts(workdir, config.prompts_path)
  unknown = sorted({r["prompt_id"] for r in rows} - set(prompt_texts))
  if unknown:
    raise SelectionInputError(f"prompt ids {unknown[:5]} are not in the prompts file; set "
                              "config.prompts_path to the prompts the samples came from")
  groups = candidates.group_candidates(rows, metrics, with_texts=True)
  out_root = config.get("output_dir", "") or os.path.join(workdir, "selection")
  summary = {"arms": {}, "num_prompts": len(groups), "num_samples": len(rows),
             "key_fields": list(KEY_FIELDS)}
  for arm, strategy in arms.items():
    choices = strategy.select(groups)
    train, arm_summary = _arm_outputs(groups, choices, metrics, prompt_texts)
    arm_summary["strategy"] = strategies.to_config(strategy).to_dict()
    os.makedirs(os.path.join(out_root, arm), exist_ok=True)
    write_jsonl_atomic(os.path.join(out_root, arm, "train.jsonl"), train)
    write_json_atomic(os.path.join(out_root, arm, "summary.json"), arm_summary)
    summary["arms"][arm] = {k: arm_summary[k] for k in ("kept", "dropped", "dropped_reasons")}

  first_targeted = next(iter((config.get("arms", None) or {}).values()), None) or config.strategy
  ablation_metric = config.ablation.metric or first_targeted.get("metric", "")
  if config.ablation.enabled and ablation_metric:
    maximize = bool(config.ablation.get("maximize", first_targeted.get("maximize", True)))
    table = ablation.ablation_table(groups, ablation_metric, maximize=maximize,
                                    num_bootstrap=config.ablation.num_bootstrap,
                                    seed=config.seed)
    files = ablation.write_ablation(table, os.path.join(out_root, "ablation"), ablation_metric)
    summary["ablation"] = {"metric": ablation_metric, "maximize": maximize,
                           "files": {k: os.path.relpath(v, out_root) for k, v in files.items()},
                           "best_of_j": [round(r["expected_best"], 6) for r in table]}
  write_json_atomic(os.path.join(out_root, "summary.json"), summary)
  return summary


if __name__ == "__main__":
  from ai_jax import cli
  cli.run_stage(run, "--config configs/select.py --workdir /tmp/run",
                help_config="Selection config file.")
