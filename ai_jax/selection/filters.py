"""Strategies that keep a prompt only when a test passes: Threshold (a bar on the value
of another strategy's choice), FromTeachers (another strategy over some teachers' samples
only) and SelfConsistency (agreement among the candidates' answers). The shared rules of
base.py hold.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from ai_jax.selection import registry
from ai_jax.selection.base import (PerPromptStrategy, Strategy, StrategyBase, _check_bool,
                                   _check_metric, plain_dict, resolve_callable)
from ai_jax.selection.candidates import Candidates, Choice


@registry.register
@dataclasses.dataclass(frozen=True)
class Threshold(StrategyBase):
  """Runs `inner`, then drops the prompt when its chosen candidate misses the bar.

  Bounds are inclusive (value == min passes). A chosen candidate that is NaN (or inf) on
  `metric` misses the bar. The inner strategy's own drops pass through unchanged. This filters the
  choice; it does not fall back to another candidate that would pass.
  """
  inner: Strategy
  metric: str
  min: float | None = None
  max: float | None = None

  config_name = "threshold"

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

  @classmethod
  def from_config_dict(cls, d: dict) -> "Threshold":
    return cls(**{**d, "inner": registry.from_config(d["inner"])})

  def to_config_dict(self) -> dict:
    return {**super().to_config_dict(), "inner": registry.to_config(self.inner).to_dict()}

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


@registry.register
@dataclasses.dataclass(frozen=True)
class FromTeachers(StrategyBase):
  """Runs `inner` on each prompt's samples from `teachers` only: with a pool of teachers,
  one teacher alone (or a subset) beside the pooled arm. A prompt none of whose samples
  comes from them is dropped ("no sample from <teachers>"). `exclude_cut` is the inner
  strategy's (given here, it is passed down; the two must agree)."""
  inner: Strategy
  teachers: tuple[str, ...]
  exclude_cut: bool = False

  config_name = "from_teachers"

  def __post_init__(self):
    if not callable(getattr(self.inner, "select", None)):
      raise ValueError(f"inner must be a strategy, got {self.inner!r}")
    teachers = (self.teachers,) if isinstance(self.teachers, str) else tuple(self.teachers)
    if not teachers or not all(isinstance(t, str) and t for t in teachers):
      raise ValueError(f"from_teachers needs teachers: a list of teacher names, got "
                       f"{self.teachers!r}")
    object.__setattr__(self, "teachers", teachers)
    _check_bool(self.exclude_cut, "exclude_cut")
    inner_cut = getattr(self.inner, "exclude_cut", self.exclude_cut)
    if inner_cut != self.exclude_cut:
      raise ValueError(f"from_teachers has exclude_cut={self.exclude_cut} but its inner "
                       f"strategy has exclude_cut={inner_cut}; set them alike")

  @classmethod
  def from_config_dict(cls, d: dict) -> "FromTeachers":
    inner = plain_dict(d["inner"], "from_teachers.inner")
    if "exclude_cut" in d and registry.accepts_key(inner.get("name", ""), "exclude_cut"):
      inner.setdefault("exclude_cut", d["exclude_cut"])
    return cls(**{**d, "inner": registry.from_config(inner), "teachers": tuple(d["teachers"])})

  def to_config_dict(self) -> dict:
    return {**super().to_config_dict(), "inner": registry.to_config(self.inner).to_dict(),
            "teachers": list(self.teachers)}

  def select(self, groups: Sequence[Candidates]) -> list[Choice]:
    keep = set(self.teachers)
    subsets, index_maps = [], []
    for g in groups:
      idx = [i for i, t in enumerate(g.teachers) if t in keep]
      index_maps.append(idx)
      pick = lambda values: tuple(values[i] for i in idx) if values else ()  # noqa: E731
      subsets.append(dataclasses.replace(
          g, teachers=pick(g.teachers), sample_indices=pick(g.sample_indices),
          scores={m: np.asarray(v)[idx] for m, v in g.scores.items()},
          texts=pick(g.texts), finish_reasons=pick(g.finish_reasons)))
    present = [i for i, idx in enumerate(index_maps) if idx]
    inner = self.inner.select([subsets[i] for i in present]) if present else []
    out = [Choice(None, f"no sample from {', '.join(self.teachers)}")] * len(groups)
    for i, choice in zip(present, inner, strict=True):
      out[i] = choice if choice.index is None else Choice(index_maps[i][choice.index])
    return out

  def required_metrics(self) -> tuple[str, ...]:
    return tuple(self.inner.required_metrics())

  def needs_texts(self) -> bool:
    return self.inner.needs_texts()


def _callable_path(fn: Callable) -> str:
  path = f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', '')}"
  try:
    if resolve_callable(path, "answer_fn") is fn:
      return path
  except ValueError:
    pass
  raise ValueError(f"answer_fn {fn!r} is not importable by path; give it as "
                   "'package.module:function' to record it in a config")


@registry.register
@dataclasses.dataclass(frozen=True)
class SelfConsistency(PerPromptStrategy):
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

  config_name = "self_consistency"

  def __post_init__(self):
    if isinstance(self.answer_fn, str):
      resolve_callable(self.answer_fn, "answer_fn")  # fail at construction, not after sampling
    elif not callable(self.answer_fn):
      raise ValueError(f"answer_fn must be a callable or 'package.module:function', "
                       f"got {self.answer_fn!r}")
    m = self.min_agreement
    if isinstance(m, bool) or not isinstance(m, (int, float, np.number)) or not 0 <= m <= 1:
      raise ValueError(f"min_agreement must be a number in [0, 1], got {m!r}")
    _check_bool(self.exclude_cut, "exclude_cut")

  def to_config_dict(self) -> dict:
    fn = self.answer_fn if isinstance(self.answer_fn, str) else _callable_path(self.answer_fn)
    return {**super().to_config_dict(), "answer_fn": fn,
            "min_agreement": float(self.min_agreement)}

  def prepare(self, groups, pools) -> Callable[[str], str | None]:
    if isinstance(self.answer_fn, str):
      return resolve_callable(self.answer_fn, "answer_fn")
    return self.answer_fn

  def choose(self, group: Candidates, ok: np.ndarray,
             context: Callable[[str], str | None]) -> int | Choice:
    answer_fn = context
    if not group.texts:
      raise ValueError(f"SelfConsistency reads texts; prompt {group.prompt_id!r} has none "
                       "(group_candidates(..., with_texts=True))")
    votes: dict[str, list[int]] = {}  # insertion order = first occurrence
    considered_C = np.flatnonzero(ok)
    for i in considered_C:
      try:
        answer = answer_fn(group.texts[i])
      except Exception as e:
        raise RuntimeError(f"answer_fn failed on prompt {group.prompt_id!r}, candidate {i} "
                           f"(teacher {group.teachers[i]!r}, sample {group.sample_indices[i]})"
                           ) from e
      if answer is not None and answer != "":
        votes.setdefault(str(answer), []).append(int(i))
    if not votes:
      return Choice(None, "no answer extracted")
    top = max(votes.values(), key=len)  # max keeps the first of equal lengths
    if len(top) / len(considered_C) < self.min_agreement:
      return Choice(None, f"agreement below {self.min_agreement:g}")
    return top[0]

  def needs_texts(self) -> bool:
    return True
