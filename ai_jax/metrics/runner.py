"""Runs scorers over texts with faults kept per row.

A scorer that raises on, or returns NaN/inf/non-numbers for, some texts gives NaN for
those rows with the reason kept; the other rows and the other scorers go on. Only a
MetricError (a configuration fault: unknown option, missing API key, missing
tokenizer) stops the run, since every row would fail the same way.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Sequence

import numpy as np

from ai_jax.metrics import registry

UNDEFINED_PREFIX = registry.UNDEFINED_PREFIX
reason_for = registry.reason_for
_PER_TEXT_CHUNK = 256  # rows per call for scorers that did not ask for a batch size


def is_undefined(reason: str) -> bool:
  return reason.startswith(UNDEFINED_PREFIX)


@dataclasses.dataclass
class ScoreTable:
  """values[column] is float64 [N]; errors[i] maps column -> reason for row i."""
  values: dict[str, np.ndarray]
  errors: list[dict[str, str]]

  def counts(self) -> dict[str, dict[str, int]]:
    out = {}
    for column in self.values:
      reasons = [e[column] for e in self.errors if column in e]
      undefined = sum(map(is_undefined, reasons))
      out[column] = {"rows": len(self.errors), "failed": len(reasons) - undefined,
                     "undefined": undefined}
    return out


def _to_float(value) -> tuple[float, str | None]:
  try:
    x = float(value)
  except (TypeError, ValueError) as e:
    return math.nan, f"scorer returned {type(value).__name__} {str(value)[:50]!r}: {e}"
  if math.isnan(x):
    return math.nan, "scorer returned NaN"
  if math.isinf(x):
    return math.nan, f"scorer returned {x}"
  return x, None


def _sub_context(context: registry.ScoreContext, rows) -> registry.ScoreContext:
  """The context for the given row indices (the prompts follow their texts)."""
  prompts = None if context.prompts is None else [context.prompts[i] for i in rows]
  return dataclasses.replace(context, prompts=prompts)


def _score_chunk(scorer: registry.Scorer, texts, context) -> tuple[list[float], dict[int, str]]:
  try:
    result = scorer.score_batch(texts, context)
  except registry.MetricError:
    raise
  except Exception:  # noqa: BLE001 -- isolate the bad rows below
    if len(texts) == 1:
      raise
    values, errors = [], {}
    for i, text in enumerate(texts):
      try:
        (value,), row_errors = _score_chunk(scorer, [text], _sub_context(context, [i]))
        if row_errors:
          errors[i] = row_errors[0]
      except registry.MetricError:
        raise
      except Exception as e:  # noqa: BLE001
        value, errors[i] = math.nan, reason_for(e)
      values.append(value)
    return values, errors
  errors = {}
  if isinstance(result, registry.Scored):
    errors = {int(i): str(r) for i, r in result.errors.items()}
    result = result.values
  result = list(result)
  if len(result) != len(texts):
    raise registry.MetricError(f"metric {scorer.name!r} returned {len(result)} values for "
                               f"{len(texts)} texts; a scorer must return one per text")
  values = []
  for i, raw in enumerate(result):
    if i in errors:
      values.append(math.nan)
      continue
    value, reason = _to_float(raw)
    if reason:
      errors[i] = reason
    values.append(value)
  return values, errors


def _score_one_scorer(scorer, texts, context, skip, on_rows):
  n = len(texts)
  out = np.full(n, math.nan)
  errors: dict[int, str] = {}
  todo = [i for i in range(n) if i not in skip]
  step = scorer.batch_size or _PER_TEXT_CHUNK
  for lo in range(0, len(todo), step):
    rows = todo[lo:lo + step]
    sub_texts = [texts[i] for i in rows]
    sub_context = _sub_context(context, rows)
    try:
      values, chunk_errors = _score_chunk(scorer, sub_texts, sub_context)
    except registry.MetricError:
      raise
    except Exception as e:  # noqa: BLE001 -- a single-row chunk that raised
      values, chunk_errors = [math.nan], {0: reason_for(e)}
    out[rows] = values
    for j, reason in chunk_errors.items():
      errors[rows[j]] = reason
    if on_rows:
      on_rows(len(rows))
  for i, reason in skip.items():
    errors[i] = reason
  return out, errors


def score_texts(scorers: Mapping[str, registry.Scorer], texts: Sequence[str],
                context: registry.ScoreContext | None = None,
                skip: Mapping[int, str] | None = None,
                on_rows: Callable[[int], None] | None = None) -> ScoreTable:
  """Scores every text with every scorer (column -> Scorer).

  skip: rows not to score (row -> reason, e.g. a sample that was never generated); they
  get NaN with that reason in every column. on_rows(n) is called as rows finish (per
  scorer), for progress bars.
  """
  context = context or registry.ScoreContext()
  texts = list(texts)
  if context.prompts is not None and len(context.prompts) != len(texts):
    raise ValueError(f"{len(context.prompts)} prompts for {len(texts)} texts")
  skip = dict(skip or {})
  for column, scorer in scorers.items():
    if scorer.needs_prompts and context.prompts is None:
      raise registry.MetricError(f"metric {column!r} needs the prompts, but none were given")
  values, errors = {}, [dict() for _ in texts]
  for column, scorer in scorers.items():
    values[column], column_errors = _score_one_scorer(scorer, texts, context, skip, on_rows)
    for i, reason in column_errors.items():
      errors[i][column] = reason
  return ScoreTable(values=values, errors=errors)
