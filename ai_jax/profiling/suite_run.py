"""Run profile suites on one model; their figures with bootstrap intervals; two models
compared item by item.

A suite's scored file (layout.ProfileDir.suite) holds, per item, its id, the fields its
formula reads and each option's summed log-likelihood and token count, plus what was left
out and why: everything the figures need, so the report and the paired comparisons never
reload a model. It is written once, atomically, and reused while the settings that made it
(`settings`) are unchanged.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Mapping, Sequence

import numpy as np

from ai_jax.profiling import loglik, stats
from ai_jax.profiling import suites as suites_lib
from ai_jax.profiling.suites import base, multiple_choice
from ai_jax.store.atomic import read_json, write_json_atomic


@dataclasses.dataclass(frozen=True)
class SuiteRun:
  name: str
  path: str = ""                   # "" = the suite's own data
  limit: int = 0                   # 0 = every item

  def __post_init__(self):
    suites_lib.get(self.name)      # an unknown name fails here, listing the known ones
    if self.limit < 0:
      raise ValueError(f"profile suite {self.name}: limit must be >= 0, got {self.limit}")


@dataclasses.dataclass(frozen=True)
class ProfileOptions:
  suites: tuple[SuiteRun, ...]
  scoring: loglik.ScoringOptions = loglik.ScoringOptions()
  seed: int = 0                    # the subset drawn with a limit, and the resamples
  num_bootstrap: int = 1000
  confidence: float = 0.95

  @classmethod
  def from_config(cls, config) -> "ProfileOptions":
    """From a profile config section (configs/profile.py): its suites, scoring, seed and
    bootstrap keys."""
    runs = []
    for name, s in config.suites.items():
      if s.enabled:
        runs.append(SuiteRun(name=name, path=s.path, limit=int(s.limit)))
      else:
        suites_lib.get(name)
    if not runs:
      raise ValueError("no profile suite is enabled: set profile.suites.<name>.enabled=True "
                       f"for one of {', '.join(suites_lib.names())}")
    sc = config.scoring
    return cls(suites=tuple(runs), seed=int(config.seed),
               num_bootstrap=int(config.num_bootstrap), confidence=float(config.confidence),
               scoring=loglik.ScoringOptions(batch_tokens=sc.batch_tokens,
                                             max_contexts=sc.max_contexts,
                                             too_long=sc.too_long))


def settings(run: SuiteRun, options: ProfileOptions, model_identity: Mapping) -> dict:
  """What decides a scored file's numbers (a change recomputes it)."""
  return {"suite": run.name, "path": run.path, "limit": run.limit, "seed": options.seed,
          "too_long": options.scoring.too_long, "max_context": options.scoring.max_context,
          "model": dict(model_identity)}


def score_suite(model, run: SuiteRun, options: ProfileOptions) -> dict:
  """Load the suite's items, score every option, and return the scored file's content."""
  suite = suites_lib.get(run.name)
  start = time.time()
  loaded = base.load(suite, run.path, run.limit, options.seed)
  groups = [loglik.encode_group(model.tokenizer, i.context, i.options) for i in loaded.items]
  skipped = dict(loaded.skipped)
  kept_items, kept_groups = [], []
  for item, g in zip(loaded.items, groups):
    if not g.context or any(len(o) == 0 for o in g.options):  # an option of no tokens
      skipped["empty_option"] = skipped.get("empty_option", 0) + 1
    else:
      kept_items.append(item)
      kept_groups.append(g)
  scores = loglik.score_groups(model, kept_groups, options.scoring,
                               names=[f"{run.name}:{i.item_id}" for i in kept_items])
  rows = []
  for item, s in zip(kept_items, scores):
    if s.sum_J is None:
      skipped["too_long"] = skipped.get("too_long", 0) + 1
      continue
    rows.append({"item_id": item.item_id, "fields": dict(item.fields),
                 "sum": [float(x) for x in s.sum_J],
                 "num_tokens": [int(x) for x in s.num_tokens_J], "truncated": s.truncated})
  return {"suite": run.name, "data": loaded.path, "items": rows, "skipped": skipped,
          "num_truncated": sum(1 for r in rows if r["truncated"]),
          "seconds": round(time.time() - start, 2)}


def run_suites(get_model, options: ProfileOptions, out, model_identity: Mapping,
               log=print) -> dict[str, dict]:
  """Each suite's scored file in `out` (a layout.ProfileDir): reused when its settings
  match, else scored and written. `get_model()` gives the LoadedModel; it is called only
  when a suite needs scoring (a finished profile loads no weights). Returns {suite: scored}."""
  result, model = {}, None
  for run in options.suites:
    path = out.suite(run.name)
    want = settings(run, options, model_identity)
    scored = read_json(path, None)
    if scored is None or scored.get("settings") != want:
      model = model or get_model()
      scored = {**score_suite(model, run, options), "settings": want}
      write_json_atomic(path, scored)
      log(f"profile {run.name}: {len(scored['items'])} items in {scored['seconds']} s "
          f"(left out: {scored['skipped'] or 'none'})")
    result[run.name] = scored
  return result


# --- figures --------------------------------------------------------------------------------


def _columns(scored: dict, item_ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
  suite = suites_lib.get(scored["suite"])
  rows = scored["items"]
  if item_ids is not None:
    by_id = {r["item_id"]: r for r in rows}
    rows = [by_id[i] for i in item_ids]
  items = [base.Item(item_id=r["item_id"], context="", options=("",) * len(r["sum"]),
                     fields=r["fields"]) for r in rows]
  scores = [loglik.GroupScore(sum_J=np.asarray(r["sum"]), num_tokens_J=np.asarray(
      r["num_tokens"])) for r in rows]
  if not rows:
    return {}
  return suite.columns(items, base.chosen_loglik(suite, scores))


def _resamples(n: int, options: ProfileOptions) -> np.ndarray:
  rng = np.random.default_rng(options.seed)
  return rng.integers(0, n, size=(options.num_bootstrap, n)) if n > 1 else np.zeros((0, n),
                                                                                    int)


def _interval(values_Z: np.ndarray, confidence: float):
  """The percentile interval of the finite replicates (a resample may leave a formula
  undefined, e.g. no non-unknown BBQ answer)."""
  return stats._interval(values_Z[np.isfinite(values_Z)], confidence)


def _finite(x: float) -> float | None:
  return float(x) if np.isfinite(x) else None


def figures(scored: dict, options: ProfileOptions) -> dict:
  """{metric: Estimate dict} over the scored items (percentile bootstrap over items), the
  reliability bins of a calibration suite, and what was left out (no timings: the same
  items give the same figures, however often a run was resumed)."""
  suite = suites_lib.get(scored["suite"])
  n = len(scored["items"])
  out = {"n_items": n, "skipped": scored["skipped"],
         "num_truncated": scored.get("num_truncated", 0), "metrics": {}}
  if not n:
    return out
  cols = _columns(scored)
  point = suite.metrics(cols, np.arange(n))
  reps = [suite.metrics(cols, idx) for idx in _resamples(n, options)]
  for name, value in point.items():
    low, high = _interval(np.asarray([r[name] for r in reps]), options.confidence)
    out["metrics"][name] = stats.Estimate(_finite(value), low, high, n, 0).to_dict()
  if suite.calibration:
    out["reliability"] = multiple_choice.reliability_bins(cols)
  if suite.name == "bbq":
    out["unresolved_target"] = int(np.sum(~cols["resolved"]))
  return out


def paired_change(scored: dict, base_scored: dict, options: ProfileOptions) -> dict:
  """{metric: Estimate dict of (this - base)} on the items both scored, each resample
  drawing the same items for both models (item difficulty cancels out)."""
  suite = suites_lib.get(scored["suite"])
  mine = {r["item_id"] for r in scored["items"]}
  ids = sorted(mine & {r["item_id"] for r in base_scored["items"]})
  if not ids:
    return {}
  a, b = _columns(scored, ids), _columns(base_scored, ids)
  n = len(ids)
  everything = np.arange(n)
  point_a, point_b = suite.metrics(a, everything), suite.metrics(b, everything)
  reps = [(suite.metrics(a, idx), suite.metrics(b, idx)) for idx in _resamples(n, options)]
  out = {}
  for name in point_a:
    diff = np.asarray([ra[name] - rb[name] for ra, rb in reps])
    low, high = _interval(diff, options.confidence)
    out[name] = stats.Estimate(_finite(point_a[name] - point_b[name]), low, high, n,
                               len(mine | {r["item_id"] for r in base_scored["items"]}) - n
                               ).to_dict()
  return out


def higher_is_better(suite_name: str, metric: str) -> bool | None:
  """Per-type metrics ("ss/gender") read their base metric's direction."""
  return suites_lib.get(suite_name).higher_is_better.get(metric.split("/")[0])
