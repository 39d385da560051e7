r"""The select stage: per prompt, the sample the student learns from; a training set per arm.

`python -m ai_jax.select` is its command line; experiments call `run` directly.

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
import dataclasses
import os

import numpy as np

from ai_jax.run import layout
from ai_jax.run.layout import KEY_FIELDS
from ai_jax.selection import ablation, candidates, strategies
from ai_jax.stages.sample import run_prompts
from ai_jax.store.atomic import read_json, write_json_atomic, write_jsonl_atomic
from ai_jax.store.records import iter_records, record_key


class SelectionInputError(ValueError):
  pass


def _metric_columns(run_dir: layout.StageDir) -> list[str]:
  info = read_json(run_dir.scores_metrics, None)
  if info is None:
    raise SelectionInputError(f"{run_dir.scores_metrics} is missing; score the samples first "
                              "(python -m ai_jax.score --workdir ...)")
  return list(info["columns"])


def joined_rows(workdir: str, max_samples_per_prompt: int = 0) -> tuple[list[dict], list[str]]:
  """Sample records with their scores merged in; every sample must have been scored.
  max_samples_per_prompt > 0 keeps sample indices below it (a k-sweep selects from the
  first k of one k_max pass, which is what a k run would have drawn)."""
  run_dir = layout.StageDir(workdir)
  samples_dir, scores_dir = run_dir.samples, run_dir.scores
  metrics = _metric_columns(run_dir)
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
                 layout.SCORE_ERRORS: score.get(layout.SCORE_ERRORS, {})})
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

  Either config.strategy (one targeted arm, named config.arm_name or after the strategy)
  or config.arms ({name: strategy config}, several targeted arms); setting both is
  refused, so neither is ever silently ignored. The targeted arms' exclude_cut (default
  False) must agree; the baselines take it.
  """
  targeted = dict(config.arms or {})
  single = dict(config.strategy or {})
  if targeted and (single or config.arm_name):
    raise ValueError("config.arms and config.strategy/arm_name are both set; set "
                     "config.arms for several targeted arms (with config.strategy = {} and "
                     "arm_name = ''), or config.strategy for one")
  if not targeted:
    if not single:
      raise ValueError("config.strategy is empty and config.arms names no arm: give one "
                       "targeted strategy, e.g. {'name': 'best', 'metric': 'length_words'}")
    targeted = {config.arm_name or _default_arm_name(single): single}
  arms, policies = {}, {}
  for name, strategy_config in targeted.items():
    if name in BASELINES or name == "base":
      raise ValueError(f"arm name {name!r} collides with a baseline arm ('base', "
                       f"{', '.join(map(repr, BASELINES))}); rename it")
    try:
      arms[name] = strategies.from_config(strategy_config)
    except ValueError as e:
      where = f"config.arms.{name}" if config.arms else "config.strategy"
      raise ValueError(f"{where}: {e}") from e
    policies[name] = bool(getattr(arms[name], "exclude_cut", False))
  exclude_cut = next(iter(policies.values()))
  if len(set(policies.values())) > 1:
    raise ValueError(f"the targeted arms set different exclude_cut values {policies}: every "
                     "arm needs the same cut policy")
  for baseline in config.baselines:
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
    cut += finish == layout.FINISH_CUT
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


@dataclasses.dataclass(frozen=True)
class SelectSettings:
  """Every key of configs/select.py as the stage uses it, read from the config once."""
  arms: dict                    # arm name -> strategy (targeted, then baselines)
  prompts_path: str             # "" = DIR/sample_config.json's prompts
  max_samples_per_prompt: int   # 0 = all
  output_dir: str               # "" = DIR/selection
  ablation_metric: str          # "" = no ablation
  ablation_maximize: bool
  ablation_num_bootstrap: int
  seed: int                     # the ablation's resamples (the random arm has its own)

  def arm_configs(self) -> dict:
    return {a: strategies.to_config(s).to_dict() for a, s in self.arms.items()}


def settings(config) -> SelectSettings:
  """Validates the strategies and resolves the config (no files read)."""
  arms = arms_from_config(config)
  first_targeted = dict(next(iter(config.arms.values()), None) or config.strategy)
  metric = config.ablation.metric or first_targeted.get("metric", "")
  return SelectSettings(
      arms=arms, prompts_path=config.prompts_path,
      max_samples_per_prompt=int(config.max_samples_per_prompt), output_dir=config.output_dir,
      ablation_metric=metric if config.ablation.enabled else "",
      # The direction of the first targeted arm (worst-of-k minimises).
      ablation_maximize=bool(first_targeted.get("maximize",
                                                first_targeted.get("name") != "worst")),
      ablation_num_bootstrap=int(config.ablation.num_bootstrap), seed=int(config.seed))


def run(config, workdir: str, overwrite: bool = False) -> dict:
  del overwrite  # outputs are rewritten whole from the samples and scores each run
  s = settings(config)
  rows, metrics = joined_rows(workdir, s.max_samples_per_prompt)
  arms = s.arms
  for arm, strategy in arms.items():
    missing = [m for m in strategy.required_metrics() if m not in metrics]
    if missing:
      raise SelectionInputError(f"arm {arm!r} needs metrics {missing}, which were not scored; "
                                f"scored metrics: {metrics}")
  prompt_texts = run_prompts(workdir, s.prompts_path)
  unknown = sorted({r["prompt_id"] for r in rows} - set(prompt_texts))
  if unknown:
    raise SelectionInputError(f"prompt ids {unknown[:5]} are not in the prompts file; set "
                              "config.prompts_path to the prompts the samples came from")
  groups = candidates.group_candidates(rows, metrics, with_texts=True)
  out = layout.SelectionDir(s.output_dir) if s.output_dir else \
      layout.StageDir(workdir).selection
  summary = {"arms": {}, "num_prompts": len(groups), "num_samples": len(rows),
             "key_fields": list(KEY_FIELDS)}
  for arm, strategy in arms.items():
    choices = strategy.select(groups)
    train, arm_summary = _arm_outputs(groups, choices, metrics, prompt_texts)
    arm_summary["strategy"] = strategies.to_config(strategy).to_dict()
    write_jsonl_atomic(out.train_set(arm), train)
    write_json_atomic(out.arm_summary(arm), arm_summary)
    summary["arms"][arm] = {k: arm_summary[k] for k in ("kept", "dropped", "dropped_reasons")}

  ablation_metric, maximize = s.ablation_metric, s.ablation_maximize
  if ablation_metric:
    table = ablation.ablation_table(groups, ablation_metric, maximize=maximize,
                                    num_bootstrap=s.ablation_num_bootstrap, seed=s.seed)
    files = ablation.write_ablation(table, out.ablation, ablation_metric)
    summary["ablation"] = {"metric": ablation_metric, "maximize": maximize,
                           "files": {k: os.path.relpath(v, out.root) for k, v in files.items()},
                           "best_of_j": [round(r["expected_best"], 6) for r in table]}
  write_json_atomic(out.summary, summary)
  return summary
