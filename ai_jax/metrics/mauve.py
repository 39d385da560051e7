"""MAUVE (Pillutla et al., NeurIPS 2021) of two sets of text embeddings, in numpy.

The steps and defaults are those of the `mauve-text` package (0.4.0), which cannot be a
dependency (it needs faiss and torch): the rows of both sets are L2-normalised and stacked
(reference first), PCA (no whitening) keeps the leading components that explain 90% of the
variance, k-means quantises them into num_buckets = max(2, round(min(n_p, n_q) / 10))
clusters (5 restarts, at most 500 Lloyd iterations, the best inertia kept), and the two
cluster histograms P and Q give the divergence curve

  (exp(-c KL(Q || R_w)), exp(-c KL(P || R_w))),  R_w = w P + (1 - w) Q,
  w in linspace(1e-6, 1 - 1e-6, 25), c = 5, plus the end points (0, 1) and (1, 0),

whose area (trapezoids, averaged over both orientations) is MAUVE: 1 when the histograms
agree, near 0 when they share no cluster.

The one part that differs is the clustering: mauve-text runs faiss's k-means (random
points as centres); this runs k-means++ with its own seeded generator. Given the same
histograms the score is the same to rounding (tests/test_corpus_metrics.py); on data with
clear clusters both find the same clusters; elsewhere the two quantisations, and so the
scores, differ by about as much as two faiss seeds do.
"""

from __future__ import annotations

import numpy as np

CURVE_POINTS = 25
SCALING = 5.0
EXPLAINED_VARIANCE = 0.9
NUM_RESTARTS = 5
MAX_ITER = 500


def num_buckets_auto(n_p: int, n_q: int) -> int:
  """mauve-text's 'auto': one cluster per ten texts of the smaller set, at least two."""
  return max(2, int(round(min(n_p, n_q) / 10)))


def _l2_rows(x_ND: np.ndarray) -> np.ndarray:
  norms_N1 = np.linalg.norm(x_ND, axis=1, keepdims=True)
  return x_ND / np.where(norms_N1 == 0, 1.0, norms_N1)  # sklearn leaves zero rows alone


def pca_project(x_ND: np.ndarray, explained_variance: float = EXPLAINED_VARIANCE) -> np.ndarray:
  """x projected on the fewest principal components whose explained variance ratios sum
  to at least `explained_variance` (sklearn PCA, n_components=None, no whitening)."""
  centred_ND = x_ND - x_ND.mean(axis=0)
  _, s_K, vt_KD = np.linalg.svd(centred_ND, full_matrices=False)
  variance_K = s_K ** 2
  total = variance_K.sum()
  if total <= 0:  # every row the same point: one component carries nothing
    return centred_ND[:, :1] * 0.0
  ratio_K = np.cumsum(variance_K / total)
  keep = int(np.argmax(ratio_K >= explained_variance)) + 1
  return centred_ND @ vt_KD[:keep].T


def _sq_dists(x_ND, centres_KD):
  return ((x_ND ** 2).sum(1)[:, None] - 2.0 * x_ND @ centres_KD.T
          + (centres_KD ** 2).sum(1)[None, :]).clip(min=0.0)


def _kmeans_pp(x_ND, k, rng):
  n = x_ND.shape[0]
  centres = [x_ND[rng.integers(n)]]
  d2_N = _sq_dists(x_ND, np.asarray(centres))[:, 0]
  for _ in range(1, k):
    total = d2_N.sum()
    pick = rng.choice(n, p=d2_N / total) if total > 0 else rng.integers(n)
    centres.append(x_ND[pick])
    d2_N = np.minimum(d2_N, _sq_dists(x_ND, x_ND[pick][None])[:, 0])
  return np.asarray(centres)


def kmeans(x_ND: np.ndarray, k: int, *, seed: int, num_restarts: int = NUM_RESTARTS,
           max_iter: int = MAX_ITER) -> np.ndarray:
  """Cluster labels [N] of the best (least inertia) of num_restarts k-means++ runs."""
  x_ND = np.asarray(x_ND, np.float64)
  n = x_ND.shape[0]
  k = min(int(k), n)
  rng = np.random.default_rng(seed)
  best_labels, best_inertia = None, np.inf
  for _ in range(num_restarts):
    centres_KD = _kmeans_pp(x_ND, k, rng)
    labels_N = None
    for _ in range(max_iter):
      d2_NK = _sq_dists(x_ND, centres_KD)
      new_labels_N = d2_NK.argmin(axis=1)
      if labels_N is not None and np.array_equal(new_labels_N, labels_N):
        break
      labels_N = new_labels_N
      for c in range(k):
        members = labels_N == c
        if members.any():  # an empty cluster keeps its centre
          centres_KD[c] = x_ND[members].mean(axis=0)
    inertia = float(_sq_dists(x_ND, centres_KD).min(axis=1).sum())
    if inertia < best_inertia:
      best_labels, best_inertia = _sq_dists(x_ND, centres_KD).argmin(axis=1), inertia
  return best_labels


def histograms(p_ND, q_ND, num_buckets: int, *, seed: int = 25,
               explained_variance: float = EXPLAINED_VARIANCE) -> tuple[np.ndarray, np.ndarray]:
  """(P, Q): the share of each set's rows in each of num_buckets clusters of both sets."""
  data_ND = _l2_rows(np.vstack([np.asarray(q_ND, np.float64), np.asarray(p_ND, np.float64)]))
  labels_N = kmeans(pca_project(data_ND, explained_variance), num_buckets, seed=seed)
  q_counts = np.bincount(labels_N[:len(q_ND)], minlength=num_buckets).astype(np.float64)
  p_counts = np.bincount(labels_N[len(q_ND):], minlength=num_buckets).astype(np.float64)
  return p_counts / p_counts.sum(), q_counts / q_counts.sum()


def _kl(a_K, b_K) -> float:
  if np.any((a_K != 0) & (b_K == 0)):
    return np.inf
  both = (a_K != 0) & (b_K != 0)
  return float(np.sum(a_K[both] * np.log(a_K[both] / b_K[both])))


def divergence_curve(p_K, q_K, *, num_points: int = CURVE_POINTS,
                     scaling: float = SCALING) -> np.ndarray:
  """[num_points + 2, 2]: (exp(-c KL(Q||R_w)), exp(-c KL(P||R_w))) and the end points."""
  p_K, q_K = np.asarray(p_K, np.float64), np.asarray(q_K, np.float64)
  points = [[0.0, np.inf]]
  for w in np.linspace(1e-6, 1 - 1e-6, num_points):
    r_K = w * p_K + (1 - w) * q_K
    points.append([_kl(q_K, r_K), _kl(p_K, r_K)])
  points.append([np.inf, 0.0])
  return np.exp(-scaling * np.asarray(points))


def _area(x, y) -> float:
  order = np.argsort(x)
  x, y = x[order], y[order]
  return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def mauve_from_histograms(p_K, q_K, *, num_points: int = CURVE_POINTS,
                          scaling: float = SCALING) -> float:
  x, y = divergence_curve(p_K, q_K, num_points=num_points, scaling=scaling).T
  return 0.5 * (_area(x, y) + _area(y, x))


def mauve(p_ND, q_ND, *, num_buckets: int | str = "auto", seed: int = 25,
          explained_variance: float = EXPLAINED_VARIANCE, num_points: int = CURVE_POINTS,
          scaling: float = SCALING) -> float:
  """MAUVE of embeddings p (e.g. synthetic) against q (e.g. real), in [0, 1]."""
  p_ND, q_ND = np.asarray(p_ND), np.asarray(q_ND)
  if p_ND.ndim != 2 or q_ND.ndim != 2 or p_ND.shape[1] != q_ND.shape[1]:
    raise ValueError(f"mauve needs two [N, D] arrays of one width, got {p_ND.shape} and "
                     f"{q_ND.shape}")
  if min(len(p_ND), len(q_ND)) < 1:
    raise ValueError("mauve needs at least one row in each set")
  if num_buckets == "auto":
    num_buckets = num_buckets_auto(len(p_ND), len(q_ND))
  if not isinstance(num_buckets, (int, np.integer)) or num_buckets < 2:
    raise ValueError(f"mauve's num_buckets must be 'auto' or an integer >= 2, got "
                     f"{num_buckets!r}")
  if not 0.0 < explained_variance < 1.0:
    raise ValueError(f"mauve's explained_variance must be in (0, 1), got {explained_variance}")
  p_K, q_K = histograms(p_ND, q_ND, int(num_buckets), seed=seed,
                        explained_variance=explained_variance)
  return mauve_from_histograms(p_K, q_K, num_points=num_points, scaling=scaling)
