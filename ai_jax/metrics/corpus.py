"""Corpus metrics: one value for a set of texts, most of them against a reference set
(STEER's synthetic examples against held-out real ones), with bootstrap intervals.

  normalised_unique_ngrams(n=2)  distinct n-grams / n-grams, the texts pooled (= 1 - rep-n)
  diversity                      prod_{n=2..4} (1 - rep-n) (= lexical.corpus_rep_diversity)
  embedding_similarity           mean cosine similarity over all (text, reference) pairs
  mauve                          MAUVE of the two embedding sets (ai_jax.metrics.mauve)
  authenticity                   cross-validated AUROC, synthetic vs real (0.5 is best;
                                 ai_jax.metrics.authenticity)

A metric registers with `registry.corpus_metric` and reads a `Corpus`; `get_corpus_metric`
(in registry) binds its options. `corpus_profile` computes several with one set of
bootstrap resamples: each resample draws both the texts and the reference with
replacement (seeded by (seed, resample)), and the copies of a row keep its index as a
group, so authenticity never tests a classifier on a copy of a row it was trained on.

    from ai_jax.metrics import corpus, embedding
    profile = corpus.corpus_profile(texts, real, metrics={"mauve": {}, "diversity": {}},
                                    embeddings=embedding.embed(texts),
                                    reference_embeddings=embedding.embed(real))
    profile["mauve"]  # {"value": ..., "low": ..., "high": ..., "num_resamples": ...}
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from ai_jax.metrics import authenticity as authenticity_lib
from ai_jax.metrics import lexical
from ai_jax.metrics import mauve as mauve_lib
from ai_jax.metrics.registry import MetricError, Undefined, corpus_metric, get_corpus_metric


@dataclasses.dataclass(frozen=True)
class Corpus:
  """What a corpus metric reads. groups: the original row of each text (a bootstrap
  resample repeats rows); None means every row is its own."""
  texts: Sequence[str]
  reference: Sequence[str] = ()
  embeddings_ND: np.ndarray | None = None
  reference_embeddings_ND: np.ndarray | None = None
  groups_N: np.ndarray | None = None
  reference_groups_N: np.ndarray | None = None

  def take(self, rows, reference_rows) -> "Corpus":
    """The corpus of the given text rows and reference rows (repeats allowed)."""
    def pick(seq, idx):
      return [seq[i] for i in idx]
    groups = np.arange(len(self.texts)) if self.groups_N is None else self.groups_N
    ref_groups = (np.arange(len(self.reference)) if self.reference_groups_N is None
                  else self.reference_groups_N)
    return Corpus(
        texts=pick(self.texts, rows), reference=pick(self.reference, reference_rows),
        embeddings_ND=None if self.embeddings_ND is None else self.embeddings_ND[rows],
        reference_embeddings_ND=(None if self.reference_embeddings_ND is None
                                 else self.reference_embeddings_ND[reference_rows]),
        groups_N=groups[rows], reference_groups_N=ref_groups[reference_rows])


def _embeddings(corpus: Corpus, metric: str) -> tuple[np.ndarray, np.ndarray]:
  if corpus.embeddings_ND is None or corpus.reference_embeddings_ND is None:
    raise MetricError(f"corpus metric {metric!r} needs the embeddings of both the texts and "
                      "the reference (pass embeddings= and reference_embeddings=, e.g. from "
                      "ai_jax.metrics.embedding.embed)")
  return (np.asarray(corpus.embeddings_ND, np.float64),
          np.asarray(corpus.reference_embeddings_ND, np.float64))


@corpus_metric("normalised_unique_ngrams", higher_means="more diverse", version="1", n=2)
def normalised_unique_ngrams(corpus: Corpus, n: int = 2) -> float:
  """Distinct n-grams / n-grams of the texts pooled (lexical_tokens words; no n-gram spans
  two texts), i.e. 1 - rep-n: 1 when no n-gram repeats anywhere in the corpus."""
  return lexical.corpus_unique_ngram_fraction(corpus.texts, n)


@corpus_metric("diversity", higher_means="more diverse", version="1")
def diversity(corpus: Corpus) -> float:
  """prod over n = 2..4 of (1 - rep-n), rep-n = 1 - distinct n-grams / n-grams of the texts
  pooled (SimCTG's diversity, as STEER reports it)."""
  return lexical.corpus_rep_diversity(corpus.texts)


@corpus_metric("embedding_similarity", higher_means="closer to the reference", version="1",
               needs_reference=True, needs_embeddings=True)
def embedding_similarity(corpus: Corpus) -> float:
  """Mean cosine similarity over all (text, reference text) pairs of sentence embeddings
  (rows normalised here, so any embedder works): mean(u_i) . mean(v_j)."""
  x_ND, r_MD = _embeddings(corpus, "embedding_similarity")
  unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
  return float(unit(x_ND).mean(axis=0) @ unit(r_MD).mean(axis=0))


@corpus_metric("mauve", higher_means="closer to the reference distribution", version="1",
               needs_reference=True, needs_embeddings=True, num_buckets="auto", seed=25)
def mauve(corpus: Corpus, num_buckets="auto", seed: int = 25) -> float:
  """MAUVE of the texts' embeddings against the reference's (mauve-text's defaults: PCA to
  90% variance, k-means into n/10 buckets, 25-point divergence curve, c = 5)."""
  x_ND, r_MD = _embeddings(corpus, "mauve")
  return mauve_lib.mauve(x_ND, r_MD, num_buckets=num_buckets, seed=int(seed))


@corpus_metric("authenticity", higher_means="easier to tell from the reference (0.5 is best)",
               version="1", needs_reference=True, needs_embeddings=True, num_folds=5, c=1.0,
               seed=0)
def authenticity(corpus: Corpus, num_folds: int = 5, c: float = 1.0, seed: int = 0) -> float:
  """Cross-validated AUROC of L2 logistic regression (C = c) telling the texts' embeddings
  from the reference's; stratified folds that keep a row's copies together."""
  x_ND, r_MD = _embeddings(corpus, "authenticity")
  return authenticity_lib.authenticity(x_ND, r_MD, num_folds=num_folds, c=float(c),
                                       seed=int(seed), synthetic_groups=corpus.groups_N,
                                       real_groups=corpus.reference_groups_N)


def _check_rows(name: str, embeddings, texts) -> None:
  if embeddings is not None and np.asarray(embeddings).shape[0] != len(texts):
    raise ValueError(f"{name} has {np.asarray(embeddings).shape[0]} rows for {len(texts)} "
                     "texts: pass one embedding per text, in the same order")


def corpus_profile(texts: Sequence[str], reference: Sequence[str] = (), *,
                   metrics: Mapping[str, Mapping], embeddings=None, reference_embeddings=None,
                   num_bootstrap: int = 200, confidence: float = 0.95,
                   seed: int = 0) -> dict[str, dict]:
  """{name: {"value", "low", "high", "num_resamples", "higher_means", "version", "options"}}
  for the metrics (name -> options). low/high: the percentile interval over the bootstrap
  resamples on which the metric is defined (None when num_bootstrap is 0)."""
  if isinstance(texts, str) or isinstance(reference, str):
    raise MetricError("corpus metrics take sequences of texts, not one string")
  if not texts:
    raise ValueError("corpus_profile needs at least one text")
  if int(num_bootstrap) != num_bootstrap or num_bootstrap < 0:
    raise ValueError(f"num_bootstrap must be an integer >= 0, got {num_bootstrap}")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  _check_rows("embeddings", embeddings, texts)
  _check_rows("reference_embeddings", reference_embeddings, reference)
  bound = {name: get_corpus_metric(name, **dict(options)) for name, options in metrics.items()}
  for metric in bound.values():
    if metric.needs_reference and not reference:
      raise ValueError(f"corpus metric {metric.name!r} needs a non-empty reference set")
  corpus = Corpus(texts=list(texts), reference=list(reference),
                  embeddings_ND=None if embeddings is None else np.asarray(embeddings),
                  reference_embeddings_ND=(None if reference_embeddings is None
                                           else np.asarray(reference_embeddings)))

  # The point values first: a missing input or a bad option stops here, before resampling.
  point, undefined = {}, {}
  for name, metric in bound.items():
    try:
      point[name] = metric(corpus)
    except Undefined as e:
      point[name], undefined[name] = None, str(e)

  def resampled(metric, c):
    try:
      return metric(c)
    except ValueError:  # Undefined, or e.g. a resample with fewer distinct texts than folds
      return float("nan")

  replicates = {name: [] for name in bound}
  for z in range(int(num_bootstrap)):
    rng = np.random.default_rng([int(seed), z])
    rows = rng.integers(0, len(corpus.texts), len(corpus.texts))
    ref_rows = rng.integers(0, len(corpus.reference), len(corpus.reference)) \
        if corpus.reference else np.zeros(0, np.int64)
    resample = corpus.take(rows, ref_rows)
    for name, metric in bound.items():
      replicates[name].append(resampled(metric, resample))
  alpha = (1.0 - confidence) / 2.0
  out = {}
  for name, metric in bound.items():
    reps = np.asarray(replicates[name], np.float64)
    reps = reps[np.isfinite(reps)]
    low, high = (np.quantile(reps, [alpha, 1 - alpha]).tolist() if reps.size
                 else (None, None))
    out[name] = {"value": point[name], "low": low, "high": high,
                 "num_resamples": int(reps.size),
                 **{k: x for k, x in metric.info().items() if k != "name"}}
    if name in undefined:
      out[name]["undefined"] = undefined[name]
  return out
