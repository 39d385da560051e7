"""What every selection strategy shares: the per-prompt rules and the base classes.

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

PerPromptStrategy applies these rules once, before a strategy's own `choose`; StrategyBase
gives every strategy its config form (registry.py finds a strategy by its config name).
`required_metrics()` and `needs_texts()` say what group_candidates must provide.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence

import numpy as np

from ai_jax.imports import resolve_import_path
from ai_jax.selection.candidates import Candidates, Choice

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


def resolve_callable(path: str, what: str = "callable") -> Callable:
  """'package.module:function' (or 'package.module:Class.method') -> the callable."""
  obj = resolve_import_path(path, what)
  if not callable(obj):
    raise ValueError(f"{what} {path!r} is a {type(obj).__name__}, not a callable")
  return obj


# ------------------------------------------------------------------ config form

def plain_dict(cfg: Any, what: str) -> dict:
  """A ConfigDict or mapping as a dict (nested ConfigDicts too); `what` names it in the
  error for anything else."""
  if hasattr(cfg, "to_dict"):  # ConfigDict / FrozenConfigDict
    return cfg.to_dict()
  if isinstance(cfg, Mapping):
    return {k: plain_dict(v, what) if hasattr(v, "to_dict") else v for k, v in cfg.items()}
  raise ValueError(f"{what} must be a ConfigDict or a mapping, got {cfg!r}")


def _config_value(value: Any) -> Any:
  # numpy scalars pass validation (np.bool_, np.int64) but are not config values.
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, np.floating):
    return float(value)
  return value


class StrategyBase:
  """A strategy with a config form: {name: config_name, <its dataclass fields>}.

  A subclass is a frozen dataclass decorated with @registry.register. Its config keys are
  its fields, required when the field has no default; a field whose value is None is left
  out of the config (its default is None). Override `from_config_dict` / `to_config_dict`
  for a field whose config value is not the field value (a nested strategy, a mapping, a
  callable recorded by path).
  """
  config_name: ClassVar[str] = ""
  # Other config names for this class with some fields fixed, e.g. {"worst": {"maximize":
  # False}}: those fields are then not keys of that config.
  config_variants: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

  @classmethod
  def config_keys(cls) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required keys, optional keys), in field order; "name" is not among them."""
    required, optional = [], []
    for f in dataclasses.fields(cls):
      if not f.init:
        continue
      has_default = f.default is not dataclasses.MISSING or \
          f.default_factory is not dataclasses.MISSING
      (optional if has_default else required).append(f.name)
    return tuple(required), tuple(optional)

  @classmethod
  def from_config_dict(cls, d: dict) -> "StrategyBase":
    """The strategy from its config keys (the registry has checked their names)."""
    return cls(**d)

  def to_config_dict(self) -> dict:
    """Its config keys and values, which from_config_dict turns back into an equal one."""
    out = {}
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      if f.init and value is not None:
        out[f.name] = _config_value(value)
    return out

  def required_metrics(self) -> tuple[str, ...]:
    return ()

  def needs_texts(self) -> bool:
    return False


class PerPromptStrategy(StrategyBase):
  """A strategy that picks each prompt's candidate on its own, under the shared rules.

  `select` checks the cut policy, computes each prompt's eligible candidates (sampled, not
  cut with exclude_cut, finite on every required metric) and drops the prompts without
  one with the reason; `choose` then sees only prompts with at least one eligible
  candidate. A subclass declares a field `exclude_cut: bool = False` and writes `choose`;
  `prepare` is for statistics over the whole table (Weighted's global z-scores).
  """

  def select(self, groups: Sequence[Candidates]) -> list[Choice]:
    check_cut_recorded(groups, self.exclude_cut)
    metrics = self.required_metrics()
    pools = [eligible(g, metrics, self.exclude_cut) for g in groups]
    context = self.prepare(groups, pools)
    out = []
    for g, (ok, reason) in zip(groups, pools):
      if reason:
        out.append(Choice(None, reason))
        continue
      picked = self.choose(g, ok, context)
      out.append(self._checked(g, ok, picked))
    return out

  def prepare(self, groups: Sequence[Candidates],
              pools: Sequence[tuple[np.ndarray, str]]) -> Any:
    """What `choose` needs from the whole table, given each group's (eligible mask,
    reason) from `eligible`; passed to every `choose` call as `context`."""
    return None

  def choose(self, group: Candidates, ok: np.ndarray, context: Any) -> int | Choice:
    """The index of the chosen candidate among those where `ok` (bool[N], at least one
    True), or Choice(None, reason) to drop the prompt."""
    raise NotImplementedError(f"{type(self).__name__} must define choose(group, ok, context)")

  def _checked(self, group: Candidates, ok: np.ndarray, picked: int | Choice) -> Choice:
    # The shared rules hold only if choose stays within `ok`; a slip here would train on
    # an unsampled or cut candidate without any sign in the report.
    c = picked if isinstance(picked, Choice) else Choice(int(picked))
    if c.index is None:
      if not c.reason:
        raise RuntimeError(f"{type(self).__name__}.choose dropped prompt {group.prompt_id!r} "
                           "without a reason; return Choice(None, reason)")
    elif not (0 <= c.index < len(group) and ok[c.index]):
      raise RuntimeError(f"{type(self).__name__}.choose picked candidate {c.index} of prompt "
                         f"{group.prompt_id!r}, which is not eligible; choose among ok")
    return c
