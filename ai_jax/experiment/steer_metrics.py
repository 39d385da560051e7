"""The STEER experiment's metrics stage: every arm's synthetic examples against the task's
held-out real ones, with the corpus metrics of ai_jax.metrics.corpus and all-MiniLM-L6-v2
embeddings (ai_jax.metrics.embedding).

DIR/metrics/<task>.json holds, per arm, each metric's value with a bootstrap interval, the
texts' mean length and the share cut by max_new_tokens, and a digest of what they were
computed from: a rerun recomputes a task only when its texts or the metric settings
changed.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from ai_jax.run import layout
from ai_jax.store.atomic import read_json, write_json_atomic
from ai_jax.store.records import iter_records

# The metrics each arm gets, in the report's order (ai_jax.metrics.corpus names).
METRICS = ("normalised_unique_ngrams", "diversity", "embedding_similarity", "mauve",
           "authenticity")


def _texts(folder: str, teacher: str) -> tuple[list[str], int]:
  """The arm's samples in prompt order, and how many max_new_tokens cut."""
  rows = sorted((r["prompt_id"], r["sample_index"], r["text"], r["finish_reason"])
                for r in iter_records(folder) if r.get("teacher") == teacher
                and r["finish_reason"] not in layout.NOT_SAMPLED)
  return [r[2] for r in rows], sum(r[3] == layout.FINISH_CUT for r in rows)


def _digest(obj) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def metric_options(config) -> dict:
  """name -> options of every metric, from config.metrics."""
  m = config.metrics
  return {"normalised_unique_ngrams": {"n": int(m.ngram_n)}, "diversity": {},
          "embedding_similarity": {}, "mauve": {}, "authenticity": {"num_folds": int(m.folds)}}


def task_metrics(p, task) -> dict:
  from ai_jax.data import prompts as prompts_lib
  from ai_jax.metrics import corpus, embedding
  from ai_jax.metrics.lexical import lexical_tokens
  reference = [r["prompt"] for r in prompts_lib.load_prompt_set(
      p.dirs.data(task.name, "real_reference"))]
  arms = {}
  for arm in p.arms:
    texts, cut = _texts(p.dirs.arm(task.name, arm.name).samples, arm.name)
    if not texts:
      raise FileNotFoundError(f"arm {arm.name!r} of task {task.name!r} has no samples (run "
                              "the sample stage; it resumes)")
    arms[arm.name] = (texts, cut)
  options = metric_options(p.config)
  settings = {"metrics": options, "num_bootstrap": int(p.config.metrics.num_bootstrap),
              "seed": int(p.config.seed), "embedder": embedding.MODEL_NAME}
  inputs = _digest({"reference": reference, "arms": {a: t for a, (t, _) in arms.items()},
                    "settings": settings})
  path = p.dirs.metrics(task.name)
  cached = read_json(path, None)
  if cached is not None and cached.get("inputs") == inputs:
    return cached
  embedder = embedding.default_embedder()
  reference_ND = embedder.embed(reference)
  out = {"inputs": inputs, "settings": settings, "num_reference": len(reference), "arms": {}}
  for arm in p.arms:
    texts, cut = arms[arm.name]
    texts_ND = embedder.embed(texts)
    profile = corpus.corpus_profile(
        texts, reference, metrics=options, embeddings=texts_ND,
        reference_embeddings=reference_ND, num_bootstrap=settings["num_bootstrap"],
        seed=settings["seed"])
    words = np.asarray([len(lexical_tokens(t)) for t in texts], np.float64)
    out["arms"][arm.name] = {
        "model": arm.model, "decoder": arm.decoder, "gamma": arm.gamma, "eta": arm.eta,
        "num_texts": len(texts), "num_empty": int(sum(not t.strip() for t in texts)),
        "mean_words": float(words.mean()), "cut_share": cut / len(texts),
        "metrics": profile}
  write_json_atomic(path, out)
  return out
