"""Selection strategies: which of a prompt's scored candidates to keep for fine-tuning.

A strategy is a frozen dataclass with `select(groups) -> list[Choice]`, one Choice per
group, in order. It sees the whole table at once because some need statistics over all
prompts (Weighted's global z-scores). A prompt a strategy cannot serve gets
Choice(None, reason); reasons carry no per-prompt values, so counting them
(`count_reasons`) gives the report of how many prompts were dropped and why.

Rules shared by every strategy:
- Candidate order is the order in Candidates (group_candidates sorts by teacher, then
  sample_index). Every tie, exact float equality included, goes to the lowest index.
- NaN means "no value", and so does +-inf (a metric that overflowed has failed): a
  candidate without a finite value on a metric the strategy reads is never chosen; when
  no candidate has one, the prompt gets Choice(None, "all candidates NaN on <metric>")
  ("NaN or inf" when infs are among them).
- Candidates with finish_reason "prompt_too_long" were never sampled (empty text) and are
  never chosen, not even by Random or First.
- `exclude_cut=True` also skips candidates cut by max_new_tokens (finish_reason
  "length"): trained with an end of turn they teach the student to stop early
  (PAPER_NOTES, protocol pitfalls). Give every arm of an experiment the same setting, so
  that only the choice differs. It refuses candidates without a finish reason.

`required_metrics()` and `needs_texts()` say what group_candidates must provide. Weighted
and Pareto (several metrics) live in multi_objective.py and are importable from here.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from ai_jax.selection.candidates import Candidates, Choice, prompt_rng

CUT = "length"                   # finish_reason of a sample cut by max_new_tokens
NOT_SAMPLED = ("prompt_too_long",)


class Strategy(Protocol):
  def select(self, groups: Sequence[Candidates]) -> list[Choice]: ...
  def required_metrics(self) -> tuple[str, ...]: ...
  def needs_texts(self) -> bool: ...


def count_reasons(choices: Sequence[Choice]) -> dict[str, int]:
  """{reason: number of prompts dropped for it}, most frequent first."""
  counts = collections.Counter(c.reason for c in choices if c.index is None)
  return dict(counts.most_common())


# ------------------------------------------------------------------ shared rules

def check_cut_recorded(groups: Sequence[Candidates], exclude_cut: bool) -> None:
  """exclude_cut on candidates without a finish reason would silently keep cut ones."""
  if not exclude_cut:
    return
  for g in groups:
    reasons = g.finish_reasons or ("",) * len(g)
    if "" in reasons:
      i = reasons.index("")
      raise ValueError(f"exclude_cut=True, but prompt {g.prompt_id!r} candidate {i} (teacher "
                       f"{g.teachers[i]!r}, sample {g.sample_indices[i]}) has no finish_reason;"
                       " build the groups from sample rows that carry 'finish_reason'")


def eligible(group: Candidates, metrics: Sequence[str], exclude_cut: bool
             ) -> tuple[np.ndarray, str]:
  """(mask of the candidates the strategy may choose, "" or the reason none may be)."""
  n = len(group)
  if n == 0:
    return np.zeros(0, bool), "no candidates"
  reasons = group.finish_reasons or ("",) * n
  ok = np.array([r not in NOT_SAMPLED for r in reasons])
  if not ok.any():
    return ok, f"prompt not sampled ({reasons[0]})"
  cut = np.array([r == CUT for r in reasons])
  if exclude_cut:
    ok &= ~cut
    if not ok.any():
      return ok, f"all candidates cut (finish_reason '{CUT}')"
  who = "all uncut candidates" if exclude_cut and cut.any() else "all candidates"
  finite = {m: np.isfinite(group.metric(m)) for m in metrics}
  for m in metrics:  # name a metric that has no value at all before the joint condition
    if not (ok & finite[m]).any():
      kind = "NaN" if np.isnan(group.metric(m)[ok]).all() else "NaN or inf"
      return np.zeros(n, bool), f"{who} {kind} on {m}"
  for m in metrics:
    ok &= finite[m]
  if not ok.any():
    return ok, f"no candidate finite on all of {', '.join(metrics)}"
  return ok, ""


def best_index(values: np.ndarray, ok: np.ndarray, maximize: bool) -> int:
  """The lowest index among the eligible candidates with the best value."""
  idx = np.flatnonzero(ok)
  vals = values[idx]
  best = vals.max() if maximize else vals.min()
  return int(idx[np.flatnonzero(vals == best)[0]])


def _check_metric(name: str, what: str = "metric") -> None:
  if not isinstance(name, str) or not name:
    raise ValueError(f"{what} must be a non-empty string, got {name!r}")


def _check_bool(value: Any, what: str) -> None:
  # A config string "false" is truthy; refuse it rather than maximise by mistake.
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{what} must be a bool, got {value!r}")


# ------------------------------------------------------------------ strategies

@dataclasses.dataclass(frozen=True)
class BestOfK:
  """The candidate with the highest (maximize) or lowest value of `metric`."""
  metric: str
  maximize: bool = True
  exclude_cut: bool = False

  def __post_init__(self):
    _check_metric(self.metric)
    _check_bool(self.maximize, "maximize")
    _check_bool(self.exclude_cut, "exclude_cut")

  def select(self, groups: Sequence[Candidates]) -> list[Choice]:
    check_cut_recorded(groups, self.exclude_cut)
    out = []
    for g in groups:
      ok, reason = eligible(g, (self.metric,), self.exclude_cut)
      out.append(Choice(None, reason) if reason else
                 Choice(best_index(g.metric(self.metric), ok, self.maximize)))
    return out

  def required_metrics(self) -> tuple[str, ...]:
    return (self.metric,)

  def needs_texts(self) -> bool:
    return False


def WorstOfK(metric: str, *, exclude_cut: bool = False) -> BestOfK:  # noqa: N802
  """Worst-of-k (the paper's minimising arms, e.g. least toxic) = BestOfK(maximize=False)."""
  return BestOfK(metric, maximize=False, exclude_cut=exclude_cut)


@dataclasses.dataclass(frozen=True)
class Random:
  """A candidate drawn uniformly (the paper's random baseline).

  The draw is keyed by (seed, prompt_id) through prompt_rng, and indexes the candidates
  sorted by (teacher, sample_index): a prompt's choice depends neither on the other
  prompts nor on the order of the groups or of its own candidates.
  """
  seed: int = 0
  exclude_cut: bool = False

  def __post_init__(self):
    if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
      raise ValueError(f"seed must be an int, got {self.seed!r}")
    _check_bool(self.exclude_cut, "exclude_cut")

  def select(self, groups: Sequence[Candidates]) -> list[Choice]:
    check_cut_recorded(groups, self.exclude_cut)
    out = []
    for g in groups:
      ok, reason = eligible(g, (), self.exclude_cut)
      if reason:
        out.append(Choice(None, reason))
        continue
      idx = sorted(np.flatnonzero(ok), key=lambda i: (g.teachers[i], g.sample_indices[i]))
      rng = prompt_rng(int(self.seed), g.prompt_id, salt="selection.random")
      out.append(Choice(int(idx[rng.integers(len(idx))])))
    return out

  def required_metrics(self) -> tuple[str, ...]:
    return ()

  def needs_texts(self) -> bool:
    return False


@dataclasses.dataclass(frozen=True)
class First:
  """The first sample: smallest (teacher rank, sample_index), ties by candidate index.

  A teacher's rank is the position of its first candidate in the group, which for
  group_candidates is alphabetical order. With one teacher this is sample 0 (or the
  lowest sample_index present). With several, it is the first teacher's first sample,
  unless `teacher` names one: then that teacher's first sample, or Choice(None) when the
  prompt has none from it.
  """
  teacher: str | None = None
  exclude_cut: bool = False

  def __post_init__(self):
    if self.teacher is not None:
      _check_metric(self.teacher, "teacher")
    _check_bool(self.exclude_cut, "exclude_cut")

  def select(self, groups: Sequence[Candidates]) -> list[Choice]:
    check_cut_recorded(groups, self.exclude_cut)
    out = []
    for g in groups:
      ok, reason = eligible(g, (), self.exclude_cut)
      if not reason and self.teacher is not None:
        ok &= np.array([t == self.teacher for t in g.teachers])
        if not ok.any():
          reason = f"no {'uncut ' if self.exclude_cut else ''}sample from teacher {self.teacher!r}"
      if reason:
        out.append(Choice(None, reason))
        continue
      rank = {}
      for t in g.teachers:
        rank.setdefault(t, len(rank))
      out.append(Choice(int(min(np.flatnonzero(ok), key=lambda i: (
          rank[g.teachers[i]], g.sample_indices[i], i)))))
    return out

  def required_metrics(self) -> tuple[str, ...]:
    return ()

  def needs_texts(self) -> bool:
    return False


@dataclasses.dataclass(frozen=True)
class Threshold:
  """Runs `inner`, then drops the prompt when its chosen candidate misses the bar.

  Bounds are inclusive (value == min passes). A chosen candidate that is NaN (or inf) on
  `metric` misses the bar. The inner strategy's own drops pass through unchanged. This filters the
  choice; it does not fall back to another candidate that would pass.
  """
  inner: Strategy
  metric: str
  min: float | None = None
  max: float | None = None

  def __post_init__(self):
    _check_metric(self.metric)
    if not callable(getattr(self.inner, "select", None)):
      raise ValueError(f"inner must be a strategy, got {self.inner!r}")
    if self.min is None and self.max is None:
      raise ValueError("Threshold needs min or max (or both)")
    for name in ("min", "max"):
      bound = getattr(self, name)
      if bound is not None:
        if isinstance(bound, bool) or not isinstance(bound, (int, float, np.number)) or \
            np.isnan(bound):
          raise ValueError(f"Threshold {name} must be a number, got {bound!r}")
        object.__setattr__(self, name, float(bound))
    if self.min is not None and self.max is not None and self.min > self.max:
      raise ValueError(f"Threshold min {self.min} > max {self.max}")

  def select(self, groups: Sequence[Candidates]) -> list[Choice]:
    choices = self.inner.select(groups)
    out = []
    for g, c in zip(groups, choices, strict=True):
      if c.index is not None:
        value = g.metric(self.metric)[c.index]
        if not np.isfinite(value):
          c = Choice(None, f"chosen candidate NaN on {self.metric}")
        elif self.min is not None and value < self.min:
          c = Choice(None, f"chosen {self.metric} below min {self.min:g}")
        elif self.max is not None and value > self.max:
          c = Choice(None, f"chosen {self.metric} above max {self.max:g}")
      out.append(c)
    return out

  def required_metrics(self) -> tuple[str, ...]:
    inner = tuple(self.inner.required_metrics())
    return inner + ((self.metric,) if self.metric not in inner else ())

  def needs_texts(self) -> bool:
    return self.inner.needs_texts()


def resolve_callable(path: str) -> Callable:
  """'package.module:function' (or 'package.module:Class.method') -> the callable."""
  module_name, sep, attr = str(path).partition(":")
  if not sep or not module_name or not attr:
    raise ValueError(f"expected 'package.module:function', got {path!r}")
  try:
    obj = importlib.import_module(module_name)
  except ImportError as e:
    raise ValueError(f"{path!r}: cannot import {module_name!r} ({e})") from e
  for part in attr.split("."):
    if not hasattr(obj, part):
      raise ValueError(f"{path!r}: {module_name} has no attribute {attr!r}")
    obj = getattr(obj, part)
  if not callable(obj):
    raise ValueError(f"{path!r} is a {type(obj).__name__}, not a callable")
  return obj


@dataclasses.dataclass(frozen=True)
class SelfConsistency:
  """Majority vote over the answers extracted from the candidates' texts.

  Self-consistency (Wang et al. 2022, arXiv 2203.11171) takes the most frequent final
  answer over sampled reasoning paths; used as a filter of synthetic data (as in Huang et
  al. 2022, "Large Language Models Can Self-Improve", and the talk in seeds/003), the
  prompt is kept with a completion that reaches the majority answer and dropped when the
  samples disagree too much.

  `answer_fn(text) -> str | None` extracts the answer (None or "" = none); give a
  callable or its import path "package.module:function". Agreement = votes for the
  majority answer / candidates considered, so candidates without an answer count
  against it; the prompt is dropped when agreement < min_agreement. Ties between answers
  go to the answer seen first in candidate order, and the chosen candidate is the first
  with the majority answer. Exceptions from answer_fn propagate (with the prompt named):
  a broken extractor should stop the run, not drop every prompt.
  """
  answer_fn: str | Callable[[str], str | None]
  min_agreement: float = 0.5
  exclude_cut: bool = False

  def __post_init__(self):
    if isinstance(self.answer_fn, str):
      resolve_callable(self.answer_fn)  # fail at construction, not after sampling
    elif not callable(self.answer_fn):
      raise ValueError(f"answer_fn must be a callable or 'package.module:function', "
                       f"got {self.answer_fn!r}")
    m = self.min_agreement
    if isinstance(m, bool) or not isinstance(m, (int, float, np.number)) or not 0 <= m <= 1:
      raise ValueError(f"min_agreement must be a number in [0, 1], got {m!r}")
    _check_bool(self.exclude_cut, "exclude_cut")

  def select(self, groups: Sequence[Candidates]) -> list[Choice]:
    check_cut_recorded(groups, self.exclude_cut)
    fn = resolve_callable(self.answer_fn) if isinstance(self.answer_fn, str) else self.answer_fn
    out = []
    for g in groups:
      ok, reason = eligible(g, (), self.exclude_cut)
      if reason:
        out.append(Choice(None, reason))
        continue
      if not g.texts:
        raise ValueError(f"SelfConsistency reads texts; prompt {g.prompt_id!r} has none "
                         "(group_candidates(..., with_texts=True))")
      votes: dict[str, list[int]] = {}  # insertion order = first occurrence
      considered = np.flatnonzero(ok)
      for i in considered:
        try:
          answer = fn(g.texts[i])
        except Exception as e:
          raise RuntimeError(f"answer_fn failed on prompt {g.prompt_id!r}, candidate {i} "
                             f"(teacher {g.teachers[i]!r}, sample {g.sample_indices[i]})"
                             ) from e
        if answer is not None and answer != "":
          votes.setdefault(str(answer), []).append(int(i))
      if not votes:
        out.append(Choice(None, "no answer extracted"))
        continue
      top = max(votes.values(), key=len)  # max keeps the first of equal lengths
      if len(top) / len(considered) < self.min_agreement:
        out.append(Choice(None, f"agreement below {self.min_agreement:g}"))
      else:
        out.append(Choice(top[0]))
    return out

  def required_metrics(self) -> tuple[str, ...]:
    return ()

  def needs_texts(self) -> bool:
    return True


def __getattr__(name: str):
  # multi_objective.py imports this module's shared rules, so it is imported lazily here.
  if name in ("Weighted", "Pareto", "pareto_front"):
    from ai_jax.selection import multi_objective
    return getattr(multi_objective, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------ configs

# name -> (required keys, optional keys); "name" itself is always required.
_CONFIG_KEYS = {
    "best": (("metric",), ("maximize", "exclude_cut")),
    "worst": (("metric",), ("exclude_cut",)),
    "random": ((), ("seed", "exclude_cut")),
    "first": ((), ("teacher", "exclude_cut")),
    "weighted": (("weights",), ("normalize", "exclude_cut")),
    "pareto": (("metrics",), ("tie_break", "exclude_cut")),
    "threshold": (("inner", "metric"), ("min", "max")),
    "self_consistency": (("answer_fn",), ("min_agreement", "exclude_cut")),
}
KNOWN_NAMES = tuple(_CONFIG_KEYS)


def _plain(cfg: Any, what: str) -> dict:
  if hasattr(cfg, "to_dict"):  # ConfigDict / FrozenConfigDict
    return cfg.to_dict()
  if isinstance(cfg, Mapping):
    return {k: _plain(v, what) if hasattr(v, "to_dict") else v for k, v in cfg.items()}
  raise ValueError(f"{what} must be a ConfigDict or a mapping, got {cfg!r}")


def from_config(cfg: Any) -> Strategy:
  """A strategy from {name: ..., <its fields>}, e.g. {name: "best", metric: "length_words"},
  {name: "threshold", inner: {name: "best", ...}, metric: ..., min: ...}."""
  from ai_jax.selection import multi_objective
  d = _plain(cfg, "a selection config")
  if "name" not in d:
    raise ValueError(f"selection config is missing key 'name' (one of {', '.join(KNOWN_NAMES)})")
  name = d.pop("name")
  if name not in _CONFIG_KEYS:
    raise ValueError(f"unknown selection strategy {name!r}; known: {', '.join(KNOWN_NAMES)}")
  required, optional = _CONFIG_KEYS[name]
  for key in required:
    if key not in d:
      raise ValueError(f"selection strategy {name!r} is missing key {key!r} "
                       f"(required: {', '.join(required)})")
  for key in sorted(d):
    if key not in required and key not in optional:
      raise ValueError(f"selection strategy {name!r} has unknown key {key!r} "
                       f"(allowed: {', '.join(('name',) + required + optional)})")
  if name == "best":
    return BestOfK(**d)
  if name == "worst":
    return WorstOfK(**d)
  if name == "random":
    return Random(**d)
  if name == "first":
    return First(**d)
  if name == "weighted":
    return multi_objective.Weighted(**{**d, "weights": _plain(d["weights"], "weights")})
  if name == "pareto":
    return multi_objective.Pareto(**{**d, "metrics": _plain(d["metrics"], "metrics")})
  if name == "threshold":
    return Threshold(**{**d, "inner": from_config(d["inner"])})
  return SelfConsistency(**d)


def _callable_path(fn: Callable) -> str:
  path = f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', '')}"
  try:
    if resolve_callable(path) is fn:
      return path
  except ValueError:
    pass
  raise ValueError(f"answer_fn {fn!r} is not importable by path; give it as "
                   "'package.module:function' to record it in a config")


def to_config(strategy: Strategy) -> Any:
  """The ConfigDict from_config turns back into an equal strategy (for run records)."""
  import ml_collections
  from ai_jax.selection import multi_objective
  s = strategy
  if isinstance(s, BestOfK):
    d = dict(name="best", metric=s.metric, maximize=bool(s.maximize))
  elif isinstance(s, Random):
    d = dict(name="random", seed=int(s.seed))
  elif isinstance(s, First):
    d = dict(name="first", **({"teacher": s.teacher} if s.teacher is not None else {}))
  elif isinstance(s, multi_objective.Weighted):
    d = dict(name="weighted", weights=dict(s.weights), normalize=s.normalize)
  elif isinstance(s, multi_objective.Pareto):
    d = dict(name="pareto", metrics=dict(s.metrics), tie_break=s.tie_break)
  elif isinstance(s, Threshold):
    d = dict(name="threshold", inner=to_config(s.inner).to_dict(), metric=s.metric)
    d.update({k: getattr(s, k) for k in ("min", "max") if getattr(s, k) is not None})
  elif isinstance(s, SelfConsistency):
    fn = s.answer_fn if isinstance(s.answer_fn, str) else _callable_path(s.answer_fn)
    d = dict(name="self_consistency", answer_fn=fn, min_agreement=float(s.min_agreement))
  else:
    raise ValueError(f"no config form for {type(s).__name__}")
  if hasattr(s, "exclude_cut"):
    d["exclude_cut"] = bool(s.exclude_cut)
  return ml_collections.ConfigDict(d)
