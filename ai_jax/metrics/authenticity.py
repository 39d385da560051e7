"""Authenticity (STEER, O'Neill et al. 2023): how well a classifier tells synthetic texts
from real ones, as the cross-validated AUROC of an L2-regularised logistic regression on
their embeddings. 0.5 (chance) is best; 1.0 means every synthetic text is recognisable.

In numpy, as scikit-learn would compute `cross_val_score(LogisticRegression(C=1.0), X, y,
cv=folds, scoring="roc_auc").mean()`: the penalty 0.5 ||w||^2 + C * sum(log loss) with an
unpenalised intercept, minimised by Newton's method; AUROC as the Mann-Whitney statistic
(ties count one half). Folds are stratified and seeded; rows that share a `group` (copies
of one text in a bootstrap resample) always fall in the same fold, so a copy is never
scored by a classifier that saw it in training.
"""

from __future__ import annotations

import numpy as np


def auroc(labels_N, scores_N) -> float:
  """Area under the ROC curve: P(score of a positive > score of a negative), ties 1/2."""
  labels_N = np.asarray(labels_N, bool)
  scores_N = np.asarray(scores_N, np.float64)
  n_pos, n_neg = int(labels_N.sum()), int((~labels_N).sum())
  if n_pos == 0 or n_neg == 0:
    raise ValueError("AUROC needs at least one positive and one negative row")
  # Average ranks handle ties exactly as the pairwise count with ties as 1/2.
  order = np.argsort(scores_N, kind="mergesort")
  sorted_scores = scores_N[order]
  ranks_N = np.empty(len(scores_N))
  _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
  avg = first + (counts + 1) / 2.0
  ranks_N[order] = np.repeat(avg, counts)
  return float((ranks_N[labels_N].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def fit_logistic(x_ND, labels_N, *, c: float = 1.0, max_iter: int = 100,
                 tol: float = 1e-10) -> tuple[np.ndarray, float]:
  """(w_D, b) minimising 0.5 ||w||^2 + c * sum(log(1 + exp(-s_i (x_i w + b)))), s = +-1."""
  x_ND = np.asarray(x_ND, np.float64)
  y_N = np.asarray(labels_N, np.float64)
  n, d = x_ND.shape
  if n < d:
    # The gradient of the loss is a combination of the rows and the penalty's is w, so the
    # optimum lies in the rows' span: solve there (an n-wide problem, exact) and map back.
    q_DR, _ = np.linalg.qr(x_ND.T)
    u_R, b = fit_logistic(x_ND @ q_DR, labels_N, c=c, max_iter=max_iter, tol=tol)
    return q_DR @ u_R, b
  xb_ND1 = np.hstack([x_ND, np.ones((n, 1))])
  theta = np.zeros(d + 1)
  reg = np.ones(d + 1)
  reg[-1] = 0.0  # the intercept is not penalised
  for _ in range(max_iter):
    z_N = xb_ND1 @ theta
    p_N = 0.5 * (1.0 + np.tanh(0.5 * z_N))  # sigmoid without overflow
    grad = reg * theta + c * xb_ND1.T @ (p_N - y_N)
    hess = (xb_ND1.T * (c * p_N * (1 - p_N))) @ xb_ND1 + np.diag(reg)
    hess[-1, -1] += 1e-12  # separable data with no penalty on b: keep it invertible
    step = np.linalg.solve(hess, grad)
    theta -= step
    if np.max(np.abs(step)) < tol:
      break
  return theta[:-1], float(theta[-1])


def stratified_folds(labels_N, num_folds: int, *, seed: int, groups_N=None) -> np.ndarray:
  """Fold index [N] per row: each class's groups shuffled (seeded) and dealt round-robin,
  so every fold gets its share of both classes and a group stays in one fold."""
  labels_N = np.asarray(labels_N, bool)
  groups_N = np.arange(len(labels_N)) if groups_N is None else np.asarray(groups_N)
  rng = np.random.default_rng(seed)
  fold_N = np.empty(len(labels_N), np.int64)
  for cls in (False, True):
    rows = np.flatnonzero(labels_N == cls)
    uniq = np.unique(groups_N[rows])
    dealt = dict(zip(uniq[rng.permutation(len(uniq))], np.arange(len(uniq)) % num_folds))
    fold_N[rows] = [dealt[g] for g in groups_N[rows]]
  return fold_N


def cross_validated_auroc(x_ND, labels_N, folds_N, *, c: float = 1.0) -> float:
  """Mean over folds of the AUROC on the fold of a classifier trained on the others."""
  x_ND, labels_N, folds_N = np.asarray(x_ND), np.asarray(labels_N, bool), np.asarray(folds_N)
  out = []
  for f in np.unique(folds_N):
    test = folds_N == f
    w_D, b = fit_logistic(x_ND[~test], labels_N[~test], c=c)
    out.append(auroc(labels_N[test], x_ND[test] @ w_D + b))
  return float(np.mean(out))


def authenticity(synthetic_ND, real_ND, *, num_folds: int = 5, c: float = 1.0, seed: int = 0,
                 synthetic_groups=None, real_groups=None) -> float:
  """Cross-validated AUROC of logistic regression separating synthetic (positive) from real
  embeddings. Groups (optional, one id per row) keep copies of a row in one fold."""
  synthetic_ND, real_ND = np.asarray(synthetic_ND), np.asarray(real_ND)
  if not isinstance(num_folds, (int, np.integer)) or num_folds < 2:
    raise ValueError(f"authenticity's num_folds must be an integer >= 2, got {num_folds!r}")
  for name, rows, groups in (("synthetic", synthetic_ND, synthetic_groups),
                             ("real", real_ND, real_groups)):
    distinct = len(rows) if groups is None else len(set(np.asarray(groups).tolist()))
    if distinct < num_folds:
      raise ValueError(f"authenticity with num_folds={num_folds} needs at least that many "
                       f"distinct {name} texts, got {distinct}: lower num_folds or add texts")
  x_ND = np.vstack([synthetic_ND, real_ND])
  labels_N = np.r_[np.ones(len(synthetic_ND), bool), np.zeros(len(real_ND), bool)]
  syn_g = np.arange(len(synthetic_ND)) if synthetic_groups is None else np.asarray(synthetic_groups)
  real_g = np.arange(len(real_ND)) if real_groups is None else np.asarray(real_groups)
  groups_N = np.r_[syn_g, real_g]  # folds are dealt per class: ids may repeat across them
  folds_N = stratified_folds(labels_N, num_folds, seed=seed, groups_N=groups_N)
  return cross_validated_auroc(x_ND, labels_N, folds_N, c=c)
