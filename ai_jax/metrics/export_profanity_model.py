r"""Exports alt-profanity-check's model to the numpy file `toxicity_offline` reads.

  pip install alt-profanity-check==1.9.1   # pins scikit-learn and joblib exactly
  python -m ai_jax.metrics.export_profanity_model

alt-profanity-check pins exact scikit-learn/joblib versions and unpickles its model with
them, which would force those pins on every ai_jax user. Its model is linear (TF-IDF
features, five sigmoid-calibrated linear SVMs averaged), so ai_jax ships the arrays
(MIT licence, see data/PROFANITY_MODEL.md) and evaluates them with numpy instead.
Run this only to refresh ai_jax/metrics/data/profanity_linear.npz.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import os

import numpy as np

OUT_PATH = os.path.join(os.path.dirname(__file__), "data", "profanity_linear.npz")


def export(out_path: str = OUT_PATH) -> dict:
  import joblib
  root = importlib.resources.files("profanity_check") / "data"
  vectorizer = joblib.load(root / "vectorizer.joblib")
  model = joblib.load(root / "model.joblib")
  params = vectorizer.get_params()
  # The numpy evaluator hard-codes these; refuse a model that needs anything else.
  expected = {"analyzer": "word", "lowercase": True, "ngram_range": (1, 1), "norm": "l2",
              "sublinear_tf": False, "use_idf": True, "strip_accents": None,
              "token_pattern": r"(?u)\b\w\w+\b", "binary": False}
  for key, want in expected.items():
    if params[key] != want:
      raise ValueError(f"profanity vectorizer has {key}={params[key]!r}, expected {want!r}")
  if model.method != "sigmoid" or list(model.classes_) != [0, 1]:
    raise ValueError("expected a binary sigmoid-calibrated classifier")

  words = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
  coef_CV, intercept_C, slope_C, offset_C = [], [], [], []
  for calibrated in model.calibrated_classifiers_:
    svm = calibrated.estimator
    (calibrator,) = calibrated.calibrators
    coef_CV.append(np.asarray(svm.coef_, np.float64).reshape(-1))
    intercept_C.append(float(np.asarray(svm.intercept_).reshape(-1)[0]))
    slope_C.append(float(calibrator.a_))
    offset_C.append(float(calibrator.b_))
  arrays = dict(
      vocab_V=np.array(words), idf_V=np.asarray(vectorizer.idf_, np.float64),
      coef_CV=np.stack(coef_CV), intercept_C=np.array(intercept_C),
      calib_slope_C=np.array(slope_C), calib_offset_C=np.array(offset_C),
      source=np.array(f"alt-profanity-check=={importlib.metadata.version('alt-profanity-check')}"
                      f" scikit-learn=={importlib.metadata.version('scikit-learn')}"))
  tmp = out_path + ".tmp.npz"
  np.savez_compressed(tmp, **arrays)
  os.replace(tmp, out_path)
  return {k: v.shape for k, v in arrays.items()}


if __name__ == "__main__":
  print(export())
