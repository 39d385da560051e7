"""Selection on several metrics at once: a weighted sum, or the Pareto front.

The shared rules of base.py hold: ties go to the lowest candidate index, a candidate needs
a finite value on every metric used (else it is never chosen), and Choice(None, reason)
when no candidate qualifies.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from ai_jax.selection import registry
from ai_jax.selection.base import PerPromptStrategy, _check_bool, _check_metric, plain_dict
from ai_jax.selection.candidates import Candidates

NORMALIZATIONS = ("zscore", "zscore_per_prompt", "rank", "none")
DIRECTIONS = ("max", "min")
TIE_BREAKS = ("weighted", "first")  # or the name of one of the metrics


def _pairs(value, what: str, check) -> tuple[tuple[str, object], ...]:
  """A mapping (or pairs) as a tuple sorted by metric, so equal configs compare equal."""
  items = list(value.items()) if isinstance(value, Mapping) else None
  if items is None:
    try:
      items = [tuple(p) for p in value]
    except TypeError:
      items = None
  if not items or any(len(p) != 2 for p in items):
    raise ValueError(f"{what} must be a non-empty mapping metric -> value, got {value!r}")
  names = [p[0] for p in items]
  if len(set(names)) != len(names):
    raise ValueError(f"{what}: a metric appears twice in {names}")
  for name, v in items:
    _check_metric(name)
    check(name, v)
  return tuple(sorted(items))


def rank01(x: np.ndarray) -> np.ndarray:
  """Average rank scaled to [0, 1] (lowest 0, highest 1, equal values share the mean of
  their ranks); a single value gets 0.5."""
  n = len(x)
  if n == 1:
    return np.full(1, 0.5)
  _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
  start = np.cumsum(counts) - counts
  return ((start + (counts - 1) / 2) / (n - 1))[inverse.reshape(-1)]


def _zscore(x: np.ndarray, mean: float, std: float) -> np.ndarray:
  # A metric constant over the pool says nothing about which candidate is better.
  return (x - mean) / std if std > 0 else np.zeros_like(x)


def _first_best(score: np.ndarray) -> int:
  return int(np.flatnonzero(score == score.max())[0])


def _global_stats(groups, pools, names) -> dict[str, tuple[float, float]]:
  """{metric: (mean, population std)} over the eligible candidates of all prompts."""
  stats = {}
  for m in names:
    vals = [g.metric(m)[ok] for g, (ok, reason) in zip(groups, pools) if not reason]
    vals = np.concatenate(vals) if vals else np.zeros(0)
    stats[m] = (vals.mean(), vals.std()) if len(vals) else (0.0, 0.0)
  return stats


@registry.register
@dataclasses.dataclass(frozen=True)
class Weighted(PerPromptStrategy):
  """The candidate with the highest sum of weight * normalised metric.

  A negative weight minimises its metric; metrics with weight 0 are not read at all.
  `normalize` puts metrics of different scales on one:
  - "zscore": (x - mean) / std, with mean and std (population) over every eligible
    candidate of every prompt in the table (global: one scale for the whole run);
  - "zscore_per_prompt": the same over the prompt's eligible candidates only;
  - "rank": average rank in [0, 1] among the prompt's eligible candidates (robust to
    outliers and to the metric's scale; ties share their mean rank);
  - "none": raw values.
  Eligible = finite on every weighted metric (and not cut, with exclude_cut). A metric
  with std 0 contributes 0. `weights` accepts a mapping; it is kept as sorted pairs.
  """
  weights: tuple[tuple[str, float], ...]
  normalize: str = "zscore"
  exclude_cut: bool = False

  config_name = "weighted"

  def __post_init__(self):
    def check(name, w):
      if isinstance(w, bool) or not isinstance(w, (int, float, np.number)) or \
          not np.isfinite(w):
        raise ValueError(f"weight of {name!r} must be a finite number, got {w!r}")
    pairs = _pairs(self.weights, "weights", check)
    object.__setattr__(self, "weights", tuple((m, float(w)) for m, w in pairs))
    if not self.active():
      raise ValueError(f"all weights are 0: {dict(self.weights)}")
    if self.normalize not in NORMALIZATIONS:
      raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
    _check_bool(self.exclude_cut, "exclude_cut")

  @classmethod
  def from_config_dict(cls, d: dict) -> "Weighted":
    return cls(**{**d, "weights": plain_dict(d["weights"], "weights")})

  def to_config_dict(self) -> dict:
    return {**super().to_config_dict(), "weights": dict(self.weights)}

  def active(self) -> tuple[tuple[str, float], ...]:
    return tuple((m, w) for m, w in self.weights if w != 0)

  def prepare(self, groups, pools) -> dict[str, tuple[float, float]]:
    if self.normalize != "zscore":
      return {}
    return _global_stats(groups, pools, self.required_metrics())

  def choose(self, group: Candidates, ok: np.ndarray,
             context: dict[str, tuple[float, float]]) -> int:
    idx_C = np.flatnonzero(ok)
    total_C = np.zeros(len(idx_C))
    for m, w in self.active():
      x_C = group.metric(m)[idx_C]
      if self.normalize == "zscore":
        x_C = _zscore(x_C, *context[m])
      elif self.normalize == "zscore_per_prompt":
        x_C = _zscore(x_C, x_C.mean(), x_C.std())
      elif self.normalize == "rank":
        x_C = rank01(x_C)
      total_C += w * x_C
    return int(idx_C[_first_best(total_C)])

  def required_metrics(self) -> tuple[str, ...]:
    return tuple(m for m, _ in self.active())


def pareto_front(values_CM: np.ndarray, maximize_M: Sequence[bool]) -> np.ndarray:
  """bool[N]: True for the rows no other row dominates (at least as good on every metric,
  strictly better on one). Identical rows do not dominate each other."""
  v = np.asarray(values_CM, np.float64)
  o = np.where(np.asarray(maximize_M, bool)[None, :], v, -v)  # higher = better
  at_least = (o[:, None, :] >= o[None, :, :]).all(-1)   # [j, i]: j >= i everywhere
  better = (o[:, None, :] > o[None, :, :]).any(-1)
  return ~(at_least & better).any(0)


@registry.register
@dataclasses.dataclass(frozen=True)
class Pareto(PerPromptStrategy):
  """A candidate on the prompt's Pareto front over `metrics` ({metric: "max" | "min"}).

  The front is taken over the eligible candidates (finite on every metric, not cut with
  exclude_cut). `tie_break` picks one candidate of the front:
  - a metric's name: the best on that metric (lexicographic: of two candidates equal on
    it, the dominated one is never chosen);
  - "weighted": the highest sum of z-scores, each oriented so that better is higher, with
    Weighted's global statistics (equal weights; z-scores rather than ranks because on a
    two-metric front the ranks are reversed, so every rank sum ties);
  - "first": the lowest candidate index on the front.
  """
  metrics: tuple[tuple[str, str], ...]
  tie_break: str = "weighted"
  exclude_cut: bool = False

  config_name = "pareto"

  def __post_init__(self):
    def check(name, direction):
      if direction not in DIRECTIONS:
        raise ValueError(f"direction of {name!r} must be 'max' or 'min', got {direction!r}")
    object.__setattr__(self, "metrics", _pairs(self.metrics, "metrics", check))
    names = [m for m, _ in self.metrics]
    if self.tie_break in TIE_BREAKS and self.tie_break in names:
      raise ValueError(f"tie_break {self.tie_break!r} is both a metric and a keyword")
    if self.tie_break not in TIE_BREAKS and self.tie_break not in names:
      raise ValueError(f"tie_break must be one of {TIE_BREAKS} or a metric of {names}, "
                       f"got {self.tie_break!r}")
    _check_bool(self.exclude_cut, "exclude_cut")

  @classmethod
  def from_config_dict(cls, d: dict) -> "Pareto":
    return cls(**{**d, "metrics": plain_dict(d["metrics"], "metrics")})

  def to_config_dict(self) -> dict:
    return {**super().to_config_dict(), "metrics": dict(self.metrics)}

  def prepare(self, groups, pools) -> dict[str, tuple[float, float]]:
    if self.tie_break != "weighted":
      return {}
    return _global_stats(groups, pools, self.required_metrics())

  def choose(self, group: Candidates, ok: np.ndarray,
             context: dict[str, tuple[float, float]]) -> int:
    names = self.required_metrics()
    maximize_M = np.array([d == "max" for _, d in self.metrics])
    idx_C = np.flatnonzero(ok)
    values_CM = np.stack([group.metric(m)[idx_C] for m in names], axis=1)
    on_front_C = pareto_front(values_CM, maximize_M)
    idx_C, values_CM = idx_C[on_front_C], values_CM[on_front_C]
    if self.tie_break == "first":
      best = 0
    elif self.tie_break == "weighted":
      best = _first_best(sum((1.0 if maximize_M[j] else -1.0) *
                             _zscore(values_CM[:, j], *context[m])
                             for j, m in enumerate(names)))
    else:
      oriented_CM = np.where(maximize_M, values_CM, -values_CM)
      best = _first_best(oriented_CM[:, names.index(self.tie_break)])
    return int(idx_C[best])

  def required_metrics(self) -> tuple[str, ...]:
    return tuple(m for m, _ in self.metrics)
