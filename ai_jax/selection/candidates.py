"""The scored samples of one prompt, as the selection strategies see them.

A prompt's candidates are all of its samples, pooled over teachers when there are
several; each has a (teacher, sample_index) provenance and one float per metric (NaN
where the metric had no value). Strategies return the index of the chosen candidate, or
None with a reason (the prompt is then reported, never silently dropped).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Candidates:
  prompt_id: str
  teachers: tuple[str, ...]            # [C]
  sample_indices: tuple[int, ...]      # [C]
  scores: Mapping[str, np.ndarray]     # metric -> float64 [C]; NaN = no value
  texts: tuple[str, ...] = ()          # [C] when a strategy reads them (self-consistency)
  finish_reasons: tuple[str, ...] = () # [C] when known ("stop", "length", ...)

  def __post_init__(self):
    n = len(self.teachers)
    if len(self.sample_indices) != n:
      raise ValueError(f"prompt {self.prompt_id!r}: {n} teachers, "
                       f"{len(self.sample_indices)} sample indices")
    for metric, values in self.scores.items():
      if np.shape(values) != (n,):
        raise ValueError(f"prompt {self.prompt_id!r}: metric {metric!r} has shape "
                         f"{np.shape(values)}, expected ({n},)")
    for name in ("texts", "finish_reasons"):
      got = getattr(self, name)
      if got and len(got) != n:
        raise ValueError(f"prompt {self.prompt_id!r}: {len(got)} {name} for {n} candidates")

  def __len__(self) -> int:
    return len(self.teachers)

  def metric(self, name: str) -> np.ndarray:
    if name not in self.scores:
      raise KeyError(f"metric {name!r} was not scored; scored metrics: {sorted(self.scores)}")
    return np.asarray(self.scores[name], np.float64)


@dataclasses.dataclass(frozen=True)
class Choice:
  """The chosen candidate's index into Candidates, or None with the reason."""
  index: int | None
  reason: str = ""


def prompt_rng(seed: int, prompt_id: str, salt: str = "") -> np.random.Generator:
  """A generator keyed by (seed, prompt_id): a prompt's random choice does not depend on
  which other prompts are in the run or their order."""
  digest = hashlib.sha256(f"{seed}\x00{salt}\x00{prompt_id}".encode()).digest()
  return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def group_candidates(rows: Sequence[Mapping], metrics: Sequence[str],
                     with_texts: bool = False) -> list[Candidates]:
  """Groups flat rows {prompt_id, teacher?, sample_index, <metric>: float|None, text?} by
  prompt (first-seen order), candidates sorted by (teacher, sample_index)."""
  by_prompt: dict[str, list[Mapping]] = {}
  for row in rows:
    by_prompt.setdefault(str(row["prompt_id"]), []).append(row)
  out = []
  for prompt_id, group in by_prompt.items():
    group = sorted(group, key=lambda r: (str(r.get("teacher", "")), int(r["sample_index"])))
    scores = {m: np.array([np.nan if r.get(m) is None else float(r[m]) for r in group])
              for m in metrics}
    out.append(Candidates(
        prompt_id=prompt_id, teachers=tuple(str(r.get("teacher", "")) for r in group),
        sample_indices=tuple(int(r["sample_index"]) for r in group), scores=scores,
        texts=tuple(r.get("text", "") for r in group) if with_texts else (),
        finish_reasons=tuple(str(r.get("finish_reason", "")) for r in group)))
  return out
