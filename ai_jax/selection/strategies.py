"""Selection strategies: which of a prompt's scored candidates to keep for fine-tuning.

This module holds the single-metric strategies (BestOfK, with "worst" as its minimising
config, Random, First) and is the one import for all of them: the rules every strategy
follows are in base.py, the multi-metric strategies (Weighted, Pareto) in
multi_objective.py, the filtering ones (Threshold, SelfConsistency) in filters.py, and
from_config / to_config in registry.py; all are importable from here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ai_jax.selection import registry
from ai_jax.selection.base import (CUT, NOT_SAMPLED, PerPromptStrategy, Strategy,
                                   _check_bool, _check_metric, best_index,
                                   check_cut_recorded, count_reasons, eligible,
                                   resolve_callable)
from ai_jax.selection.candidates import Candidates, Choice, prompt_rng
from ai_jax.selection.filters import SelfConsistency, Threshold
from ai_jax.selection.multi_objective import Pareto, Weighted, pareto_front
from ai_jax.selection.registry import from_config, to_config

__all__ = [
    "CUT", "NOT_SAMPLED", "KNOWN_NAMES", "Strategy", "BestOfK", "WorstOfK", "Random", "First",
    "Threshold", "SelfConsistency", "Weighted", "Pareto", "pareto_front", "from_config",
    "to_config", "count_reasons", "eligible", "best_index", "check_cut_recorded",
    "resolve_callable",
]


@registry.register
@dataclasses.dataclass(frozen=True)
class BestOfK(PerPromptStrategy):
  """The candidate with the highest (maximize) or lowest value of `metric`."""
  metric: str
  maximize: bool = True
  exclude_cut: bool = False

  config_name = "best"
  # The paper's minimising arms (e.g. least toxic); recorded as "best", maximize False.
  config_variants = {"worst": {"maximize": False}}

  def __post_init__(self):
    _check_metric(self.metric)
    _check_bool(self.maximize, "maximize")
    _check_bool(self.exclude_cut, "exclude_cut")

  def choose(self, group: Candidates, ok: np.ndarray, context) -> int:
    return best_index(group.metric(self.metric), ok, self.maximize)

  def required_metrics(self) -> tuple[str, ...]:
    return (self.metric,)


def WorstOfK(metric: str, *, exclude_cut: bool = False) -> BestOfK:  # noqa: N802
  """Worst-of-k (the paper's minimising arms, e.g. least toxic) = BestOfK(maximize=False)."""
  return BestOfK(metric, maximize=False, exclude_cut=exclude_cut)


@registry.register
@dataclasses.dataclass(frozen=True)
class Random(PerPromptStrategy):
  """A candidate drawn uniformly (the paper's random baseline).

  The draw is keyed by (seed, prompt_id) through prompt_rng, and indexes the candidates
  sorted by (teacher, sample_index): a prompt's choice depends neither on the other
  prompts nor on the order of the groups or of its own candidates.
  """
  seed: int = 0
  exclude_cut: bool = False

  config_name = "random"

  def __post_init__(self):
    if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
      raise ValueError(f"seed must be an int, got {self.seed!r}")
    _check_bool(self.exclude_cut, "exclude_cut")

  def choose(self, group: Candidates, ok: np.ndarray, context) -> int:
    idx = sorted(np.flatnonzero(ok), key=lambda i: (group.teachers[i], group.sample_indices[i]))
    rng = prompt_rng(int(self.seed), group.prompt_id, salt="selection.random")
    return int(idx[rng.integers(len(idx))])


@registry.register
@dataclasses.dataclass(frozen=True)
class First(PerPromptStrategy):
  """The first sample: smallest (teacher rank, sample_index), ties by candidate index.

  A teacher's rank is the position of its first candidate in the group, which for
  group_candidates is alphabetical order. With one teacher this is sample 0 (or the
  lowest sample_index present). With several, it is the first teacher's first sample,
  unless `teacher` names one: then that teacher's first sample, or Choice(None) when the
  prompt has none from it.
  """
  teacher: str | None = None
  exclude_cut: bool = False

  config_name = "first"

  def __post_init__(self):
    if self.teacher is not None:
      _check_metric(self.teacher, "teacher")
    _check_bool(self.exclude_cut, "exclude_cut")

  def choose(self, group: Candidates, ok: np.ndarray, context) -> int | Choice:
    if self.teacher is not None:
      ok = ok & np.array([t == self.teacher for t in group.teachers])
      if not ok.any():
        return Choice(None, f"no {'uncut ' if self.exclude_cut else ''}sample from teacher "
                      f"{self.teacher!r}")
    rank = {}
    for t in group.teachers:
      rank.setdefault(t, len(rank))
    return int(min(np.flatnonzero(ok), key=lambda i: (
        rank[group.teachers[i]], group.sample_indices[i], i)))


# The built-in config names, in from_config's listing order (registry.known_names() also
# lists strategies registered outside the package after this import).
KNOWN_NAMES = registry.known_names()
