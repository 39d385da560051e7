"""Host-side scorers: `score(texts, ["mtld", "length_words"])` -> ScoreTable.

See registry.py for the scorer contract and runner.py for per-row fault isolation.
"""

from __future__ import annotations

from typing import Sequence

from ai_jax.metrics import registry, runner
from ai_jax.metrics.registry import MetricError, Scorer, ScoreContext, Scored, Undefined


def score(texts: Sequence[str], metrics: Sequence[str], *, prompts=None,
          tokenizer=None) -> runner.ScoreTable:
  """Scores texts with metric specs ("name", "column=name", "name(key=value)", "pkg.mod:fn")."""
  scorers = registry.scorers_from_specs(list(metrics))
  return runner.score_texts(scorers, texts, ScoreContext(prompts=prompts, tokenizer=tokenizer))


__all__ = ["MetricError", "Scorer", "ScoreContext", "Scored", "Undefined", "score"]
