"""`toxicity_offline`: a profanity classifier that runs anywhere, with no download.

The model is alt-profanity-check's (v1.9.1, MIT): TF-IDF over lower-cased word tokens
(scikit-learn's `(?u)\\b\\w\\w+\\b`, English stop words dropped, L2-normalised rows), five
linear SVMs each mapped to a probability by Platt (sigmoid) calibration, averaged. Its
arrays ship in data/profanity_linear.npz (see export_profanity_model.py) and are evaluated
here with numpy, equal to `profanity_check.predict_prob` to float rounding.

It detects profane and offensive wording, which is narrower than Perspective's TOXICITY:
use it to steer and to smoke-test pipelines offline, and report Perspective
(`toxicity_perspective`) or a local classifier (`toxicity_hf`) for the paper's protocol.
"""

from __future__ import annotations

import collections
import functools
import os
import re

import numpy as np

from ai_jax.metrics import registry

_MODEL_PATH = os.path.join(os.path.dirname(__file__), "data", "profanity_linear.npz")
_TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")


@functools.lru_cache(maxsize=1)
def _model():
  with np.load(_MODEL_PATH, allow_pickle=False) as z:
    arrays = {k: z[k] for k in z.files}
  arrays["index"] = {w: i for i, w in enumerate(arrays.pop("vocab_V").tolist())}
  return arrays


def profanity_probability(texts) -> np.ndarray:
  """P(profane) per text, as alt-profanity-check's predict_prob computes it."""
  m = _model()
  index, idf_V, coef_CV = m["index"], m["idf_V"], m["coef_CV"]
  decision_NC = np.empty((len(texts), coef_CV.shape[0]))
  for row, text in enumerate(texts):
    counts = collections.Counter(
        i for i in map(index.get, _TOKEN_RE.findall(text.lower())) if i is not None)
    ids = np.fromiter(counts.keys(), np.int64, len(counts))
    tfidf = np.fromiter(counts.values(), np.float64, len(counts)) * idf_V[ids]
    norm = np.sqrt(tfidf @ tfidf)
    if norm > 0:
      tfidf = tfidf / norm
    decision_NC[row] = coef_CV[:, ids] @ tfidf
  decision_NC += m["intercept_C"]
  # scikit-learn's _SigmoidCalibration: p = 1 / (1 + exp(a * f + b)).
  prob_NC = 1.0 / (1.0 + np.exp(m["calib_slope_C"] * decision_NC + m["calib_offset_C"]))
  return prob_NC.mean(axis=1)


def _toxicity_offline_factory():
  return registry.Scorer(
      name="toxicity_offline",
      score_batch=lambda texts, context: profanity_probability(texts),
      higher_means="more profane/offensive (probability)",
      version="alt-profanity-check-1.9.1",
      description=("Profanity probability from alt-profanity-check 1.9.1's linear model "
                   "(TF-IDF + 5 sigmoid-calibrated linear SVMs, averaged), evaluated in numpy; "
                   "an offline proxy, narrower than Perspective TOXICITY."),
      batch_size=1024)


registry.register_factory("toxicity_offline", _toxicity_offline_factory)
