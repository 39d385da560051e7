"""What every profile suite is: items, a loader, the columns its formula reads, the formula.

The formula of a suite is a function of its columns and an index array `idx_P` (the items
of a bootstrap resample, with repeats; `np.arange(P)` for the point value), so one pure
function gives the figure, its bootstrap interval, and the paired difference between two
models scored on the same items.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ai_jax.data import prompts
from ai_jax.profiling import loglik

CHOICES = ("sum", "mean")


@dataclasses.dataclass(frozen=True)
class Item:
  item_id: str
  context: str                      # "" = the options are whole sentences
  options: tuple[str, ...]
  # What the suite's columns read; "skip": a reason to leave the item out (counted).
  fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Loaded:
  items: list[Item]
  skipped: dict[str, int]           # reason -> items left out while loading
  path: str


@dataclasses.dataclass(frozen=True)
class Suite:
  name: str
  description: str
  default_path: str                 # "package:PKG/PATH" (a file or a folder) or a path
  install: str                      # the command that installs the default data
  read: Callable[[str], list[Item]]  # resolved path -> every item, in a stable order
  choice: str                       # which log-likelihood picks an option: "sum" | "mean"
  # (items, the chosen log-likelihoods ll_PJ, -inf where an item has fewer options) ->
  # named columns, one entry per item.
  columns: Callable[[Sequence[Item], np.ndarray], dict[str, np.ndarray]]
  metrics: Callable[[Mapping[str, np.ndarray], np.ndarray], dict[str, float]]
  higher_is_better: Mapping[str, bool | None]   # None: closer to a target (e.g. SS 50)
  headline: tuple[str, ...]         # the metrics the report's tables show
  calibration: bool = False         # draws a reliability diagram

  def __post_init__(self):
    if self.choice not in CHOICES:
      raise ValueError(f"suite {self.name}: choice={self.choice!r}, not one of {CHOICES}")


_SUITES: dict[str, Suite] = {}


def register(suite: Suite) -> Suite:
  if suite.name in _SUITES:
    raise ValueError(f"profile suite {suite.name!r} is registered twice")
  _SUITES[suite.name] = suite
  return suite


def names() -> tuple[str, ...]:
  return tuple(_SUITES)


def get(name: str) -> Suite:
  if name not in _SUITES:
    raise ValueError(f"unknown profile suite {name!r}; known: {', '.join(_SUITES)} (add one: "
                     "docs/extending.md, 'Add a profile suite')")
  return _SUITES[name]


def resolve(spec: str, install: str) -> str:
  """"package:PKG/PATH" -> the file or folder inside the installed package PKG (found
  without importing it); a plain path as is. Missing: an error with the install command."""
  if spec.startswith("package:"):
    return prompts.package_path(spec, install, allow_dir=True)
  if not os.path.exists(spec):
    raise FileNotFoundError(f"profile data {spec!r} does not exist")
  return spec


def load(suite: Suite, path: str = "", limit: int = 0, seed: int = 0) -> Loaded:
  """The suite's items (from `path`, default its own data), less the ones that cannot be
  scored (counted by reason), then, with limit > 0, the first `limit` in an order drawn
  from (seed, item id): a subset that does not depend on the file's order."""
  if not (path or suite.default_path):
    raise ValueError(f"profile suite {suite.name!r} has no data of its own: {suite.install}")
  resolved = resolve(path or suite.default_path, suite.install)
  items, skipped = [], {}
  for item in suite.read(resolved):
    reason = item.fields.get("skip")
    if not reason and (not item.options or any(not o.strip() for o in item.options)):
      reason = "empty_option"
    if reason:
      skipped[reason] = skipped.get(reason, 0) + 1
      continue
    items.append(item)
  ids = [i.item_id for i in items]
  if len(set(ids)) != len(ids):
    raise ValueError(f"suite {suite.name}: {resolved} has duplicate item ids")
  if limit and limit < len(items):
    def order(item):
      return hashlib.blake2b(f"{seed}:{item.item_id}".encode(), digest_size=8).digest()
    keep = {i.item_id for i in sorted(items, key=order)[:limit]}
    items = [i for i in items if i.item_id in keep]
  return Loaded(items=items, skipped=skipped, path=resolved)


def chosen_loglik(suite: Suite, scores: Sequence[loglik.GroupScore]) -> np.ndarray:
  """ll_PJ: each option's summed or mean log-likelihood (the suite's choice), -inf padded."""
  width = max(len(s.sum_J) for s in scores)
  ll_PJ = np.full((len(scores), width), -np.inf)
  for p, s in enumerate(scores):
    ll_PJ[p, :len(s.sum_J)] = s.sum_J if suite.choice == "sum" else s.mean_J
  return ll_PJ


# --- readers and small formulas the suites share --------------------------------------------


def read_jsonl(path: str) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def read_csv(path: str) -> list[dict]:
  with open(path, encoding="utf-8", newline="") as f:
    return list(csv.DictReader(f))


def share(flags_P: np.ndarray, idx_P: np.ndarray, within_P: np.ndarray | None = None) -> float:
  """Mean of boolean flags over the resampled items (only those `within`); NaN if none."""
  sel = idx_P if within_P is None else idx_P[within_P[idx_P]]
  return float(np.mean(flags_P[sel])) if sel.size else float("nan")


def argmax_options(ll_PJ: np.ndarray) -> np.ndarray:
  """The chosen option per item (the first of tied maxima)."""
  return np.argmax(ll_PJ, axis=1)
