"""Sample-count ablation: how the selected score grows with the number of samples k.

One sampling pass with k_max samples per prompt answers the question for every j <= k_max,
with no further sampling: each sample's randomness is keyed by its index, so a run with
k = j would have drawn the same samples as the first j of this one (`prefix_best_of_j`),
and the samples are i.i.d., so any j of them are distributed as a k = j run. Averaging over
all j-subsets (`expected_best_of_j`, exact from order statistics) is the lower-variance
estimate of the same quantity; the prefix estimate is one draw of it, kept as a check.

NaN rule (a sample the metric could not score): it keeps its slot but can never be
selected, as in a real run where selection ignores unscored samples. For a prompt with n
samples, m of them finite, best-of-j is the best finite score of a uniformly random
j-subset of the n samples, conditioned on the subset holding at least one finite score
(a run whose j samples were all unscored selects nothing for that prompt, and the prompt
drops out). This is defined for every j <= n as soon as m >= 1, needs no special case for
j > m, and reduces to the plain order-statistics formula when m = n. A prompt with no
finite score is excluded and counted. The prefix estimate follows the same rule: the best
finite score of the first j samples, undefined (prompt left out of that row, counted in
`prefix_num_prompts`) when all of them are NaN.

Several teachers: candidates are pooled, and j counts candidates of the pool (prefix order
is (sample_index, teacher), i.e. round robin over teachers). Filter the groups to one
teacher for a per-teacher ablation.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import re
import warnings
from typing import Sequence

import numpy as np

from ai_jax.profiling import stats
from ai_jax.selection.candidates import Candidates
from ai_jax.store.atomic import write_bytes_atomic, write_text_atomic

COLUMNS = ("j", "expected_best", "expected_best_ci_low", "expected_best_ci_high",
           "prefix_best", "prefix_best_ci_low", "prefix_best_ci_high", "prefix_num_prompts",
           "random_baseline", "sample_mean", "num_prompts", "num_excluded",
           "num_excluded_no_score", "num_excluded_too_few", "maximize", "confidence")


# --- exact best-of-j -----------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _scaled_binomials(n: int) -> np.ndarray:
  """R[a, b] = C(a, b) / C(n-1, b) for a, b in [0, n), float64 [n, n], read-only.

  Binomials of a few hundred overflow float64 (C(1100, 550) > 1e308), so each column is
  kept as exact integers and divided by its largest entry; Python's int / int is correctly
  rounded however large the operands, so every entry carries one rounding, all in [0, 1].
  """
  out_JJ = np.zeros((n, n))  # [a, b]: both range over sample counts
  for b in range(n):
    top = math.comb(n - 1, b)
    c = 1  # C(b, b); then C(a+1, b) = C(a, b) * (a+1) / (a+1-b), exact in integers
    for a in range(b, n):
      out_JJ[a, b] = c / top
      c = c * (a + 1) // (a + 1 - b)
  out_JJ.setflags(write=False)
  return out_JJ


def _weights(n: int, m: int) -> np.ndarray:
  """W[j-1, i-1]: probability that the i-th smallest of the m finite scores is the best of a
  random j-subset of the n samples, given the subset holds a finite score; float64 [n, m].

  It is in the subset and the m-i larger finite ones are not: C(n-m+i-1, j-1) subsets of
  C(n, j), of which C(n, j) - C(n-m, j) hold a finite score (with m = n: C(i-1, j-1)/C(n, j)).
  Ties need no care: whichever of equal values counts as the best, the value is the same.
  """
  if not 1 <= m <= n:
    raise ValueError(f"need 1 <= m <= n, got n={n}, m={m}")
  scaled_JJ = _scaled_binomials(n)
  # Denominators on the same per-column scale, again exact integers rounded once.
  den_J = np.array([(math.comb(n, j) - math.comb(n - m, j)) / math.comb(n - 1, j - 1)
                    for j in range(1, n + 1)])
  return scaled_JJ[n - m:, :].T / den_J[:, None]


def _expected_curves(sorted_PC: np.ndarray, n: int) -> np.ndarray:
  """Best-of-j for j = 1..n of prompts sharing (n, m); sorted_PC holds each prompt's m
  finite scores in ascending order (larger = better). Returns float64 [P, n]."""
  curves_PJ = sorted_PC @ _weights(n, sorted_PC.shape[1]).T
  # Pin the known values (j=1: mean of the finite scores; j=n: their max) and the known
  # shape (non-decreasing, within [mean, max]). The formula gets these right up to rounding;
  # pinning them makes the invariants exact, moving values by a few ulps at most.
  max_P = sorted_PC[:, -1]
  # The computed mean of equal values can land an ulp outside them; keep it in range.
  mean_P = np.clip(sorted_PC.mean(axis=1), sorted_PC[:, 0], max_P)
  curves_PJ[:, 0] = mean_P
  curves_PJ[:, -1] = max_P
  np.clip(curves_PJ, mean_P[:, None], max_P[:, None], out=curves_PJ)
  return np.maximum.accumulate(curves_PJ, axis=1)


def _oriented(scores_J, maximize: bool) -> np.ndarray:
  scores_J = np.asarray(scores_J, np.float64)
  if scores_J.ndim != 1:
    raise ValueError(f"expected one prompt's scores (1-D), got shape {scores_J.shape}")
  # Minimising is maximising the negation; negation is exact, so nothing is lost.
  return scores_J if maximize else -scores_J


def expected_best_curve(scores_J, maximize: bool = True) -> np.ndarray:
  """Exact expected best-of-j for every j = 1..k over uniformly random j-subsets (without
  replacement) of one prompt's k samples; float64 [k]. NaN scores follow the module's NaN
  rule; with no finite score the curve is all NaN."""
  oriented_J = _oriented(scores_J, maximize)
  k = oriented_J.shape[0]
  finite_M = np.sort(oriented_J[np.isfinite(oriented_J)])
  if finite_M.size == 0:
    return np.full(k, np.nan)
  curve_J = _expected_curves(finite_M[None, :], k)[0]
  return curve_J if maximize else -curve_J


def expected_best_of_j(scores_J, j: int, maximize: bool = True) -> float:
  """Exact expected best score of a uniformly random j-subset of the k samples (NaN rule in
  the module docstring; NaN when no sample has a finite score)."""
  k = np.shape(scores_J)[0] if np.ndim(scores_J) else 0
  if not 1 <= j <= k:
    raise ValueError(f"j must be in [1, {k}] (the number of samples), got {j}")
  return float(expected_best_curve(scores_J, maximize)[j - 1])


def prefix_best_curve(scores_J, maximize: bool = True) -> np.ndarray:
  """Best finite score among the first j samples for every j = 1..k; scores_J must be in
  sample_index order. NaN where the first j samples are all NaN. float64 [k]."""
  oriented_J = _oriented(scores_J, maximize)
  # fmax ignores NaN unless both sides are NaN: a running best over the finite scores.
  curve_J = np.fmax.accumulate(oriented_J) if oriented_J.size else oriented_J.copy()
  return curve_J if maximize else -curve_J


def prefix_best_of_j(scores_J, j: int, maximize: bool = True) -> float:
  """What a run with k = j would have selected: the best of the first j samples (scores_J
  in sample_index order); NaN when those j samples have no finite score."""
  k = np.shape(scores_J)[0] if np.ndim(scores_J) else 0
  if not 1 <= j <= k:
    raise ValueError(f"j must be in [1, {k}] (the number of samples), got {j}")
  return float(prefix_best_curve(scores_J, maximize)[j - 1])


# --- the table -----------------------------------------------------------------------------


# The resampling is profiling.stats's, shared with every interval of the report: one
# deterministic draw of (P, B, seed), summed per row rather than by a BLAS matmul. The
# draw keeps its former name here.
_bootstrap_counts = stats.resample_counts


def _bootstrap_means(exact_PJ: np.ndarray, prefix_PJ: np.ndarray, num_bootstrap: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Resampled means [Z, J] of the exact values and of the prefix values (NaN = prompt not
  defined at that j, left out of that mean). Both use the same resamples, those of
  stats.bootstrap_counts: a seed gives the same intervals every time."""
  num_prompts, num_j = exact_PJ.shape
  defined_PJ = np.isfinite(prefix_PJ).astype(np.float64)
  prefix_zeroed_PJ = np.where(defined_PJ > 0, prefix_PJ, 0.0)
  # One pass over the resamples for all three: a prefix mean is the resampled sum of the
  # defined values over the resampled number of defined prompts.
  values_PM = np.concatenate([exact_PJ, prefix_zeroed_PJ, defined_PJ], axis=1)  # M = 3J
  sums_ZM = stats.resampled_sums(values_PM, num_bootstrap, seed)
  exact_ZJ = sums_ZM[:, :num_j] / num_prompts
  with np.errstate(invalid="ignore", divide="ignore"):
    prefix_ZJ = sums_ZM[:, num_j:2 * num_j] / sums_ZM[:, 2 * num_j:]
  return exact_ZJ, prefix_ZJ


def _percentile_ci(boot_ZJ: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
  if boot_ZJ.shape[0] == 0:
    nan_J = np.full(boot_ZJ.shape[1], np.nan)
    return nan_J, nan_J.copy()
  alpha = (1.0 - confidence) / 2.0
  # nanquantile: a prefix resample can hold no prompt with a defined value (NaN mean); a
  # column of only those gives NaN, which is the right answer, so its warning is dropped.
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    low_J, high_J = np.nanquantile(boot_ZJ, [alpha, 1.0 - alpha], axis=0)
  return low_J, high_J


def ablation_table(groups: Sequence[Candidates], metric: str, maximize: bool = True,
                   k_max: int | None = None, num_bootstrap: int = 1000, seed: int = 0,
                   confidence: float = 0.95) -> list[dict]:
  """One row per j = 1..k_max: the mean over prompts of the exact expected best-of-j and of
  the prefix best-of-j, each with a percentile bootstrap CI (prompts resampled with
  replacement; both estimates share the resamples).

  Prompts with no finite score are excluded (`num_excluded_no_score`). k_max defaults to
  the smallest sample count among the other prompts, so every row averages the same
  prompts; an explicit larger k_max excludes the prompts with fewer samples
  (`num_excluded_too_few`). A prompt with more than k_max samples uses all of them for the
  exact estimate (the same quantity with less variance) and its first j for the prefix.

  `random_baseline` is the expected score of one random sample, the mean over prompts of
  each prompt's mean finite score; it equals the j = 1 expectation. `sample_mean` pools
  all finite scores of the used prompts (the same when prompts have equal counts).
  """
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  if num_bootstrap < 0:
    raise ValueError(f"num_bootstrap must be >= 0, got {num_bootstrap}")
  scored, no_score = [], 0
  for group in groups:
    # Prefix order: sample_index first, so with several teachers j grows round robin.
    order = sorted(range(len(group)), key=lambda i: (group.sample_indices[i], group.teachers[i]))
    values_J = group.metric(metric)[order]
    if not np.isfinite(values_J).any():
      no_score += 1
    else:
      scored.append(values_J)
  if not scored:
    raise ValueError(f"metric {metric!r}: no prompt has a finite score "
                     f"({no_score} prompts without one)")
  if k_max is None:
    k_max = min(v.size for v in scored)
  if k_max < 1:
    raise ValueError(f"k_max must be >= 1, got {k_max}")
  used = [v for v in scored if v.size >= k_max]
  too_few = len(scored) - len(used)
  if not used:
    raise ValueError(f"metric {metric!r}: no prompt has {k_max} samples "
                     f"(most: {max(v.size for v in scored)})")
  num_prompts = len(used)

  oriented = [v if maximize else -v for v in used]
  # Exact curves, batched over prompts sharing (sample count, finite count): one weight
  # matrix and one matmul per batch.
  exact_PJ = np.empty((num_prompts, k_max))
  batches: dict[tuple[int, int], list[int]] = {}
  for p, v in enumerate(oriented):
    batches.setdefault((v.size, int(np.isfinite(v).sum())), []).append(p)
  for (n, _), members in batches.items():
    sorted_PC = np.sort(np.stack([oriented[p][np.isfinite(oriented[p])] for p in members]),
                        axis=1)
    exact_PJ[members] = _expected_curves(sorted_PC, n)[:, :k_max]
  prefix_PJ = np.stack([np.fmax.accumulate(v[:k_max]) for v in oriented])
  pooled = np.concatenate([v[np.isfinite(v)] for v in oriented])
  if not maximize:
    exact_PJ, prefix_PJ, pooled = -exact_PJ, -prefix_PJ, -pooled

  defined_PJ = np.isfinite(prefix_PJ)
  prefix_count_J = defined_PJ.sum(axis=0)
  with np.errstate(invalid="ignore", divide="ignore"):
    prefix_mean_J = np.where(defined_PJ, prefix_PJ, 0.0).sum(axis=0) / prefix_count_J
  exact_mean_J = exact_PJ.mean(axis=0)
  boot_exact_ZJ, boot_prefix_ZJ = _bootstrap_means(exact_PJ, prefix_PJ, num_bootstrap, seed)
  exact_low_J, exact_high_J = _percentile_ci(boot_exact_ZJ, confidence)
  prefix_low_J, prefix_high_J = _percentile_ci(boot_prefix_ZJ, confidence)

  # Column j=1 holds each prompt's mean finite score (pinned in _expected_curves), so the
  # baseline and the j=1 row are one number by construction.
  random_baseline = float(exact_mean_J[0])
  sample_mean = float(pooled.mean())
  rows = []
  for j in range(1, k_max + 1):
    i = j - 1
    rows.append({
        "j": j,
        "expected_best": float(exact_mean_J[i]),
        "expected_best_ci_low": float(exact_low_J[i]),
        "expected_best_ci_high": float(exact_high_J[i]),
        "prefix_best": float(prefix_mean_J[i]),
        "prefix_best_ci_low": float(prefix_low_J[i]),
        "prefix_best_ci_high": float(prefix_high_J[i]),
        "prefix_num_prompts": int(prefix_count_J[i]),
        "random_baseline": random_baseline,
        "sample_mean": sample_mean,
        "num_prompts": num_prompts,
        "num_excluded": no_score + too_few,
        "num_excluded_no_score": no_score,
        "num_excluded_too_few": too_few,
        "maximize": bool(maximize),
        "confidence": float(confidence),
    })
  return rows


# --- output --------------------------------------------------------------------------------


def _csv_cell(value) -> str:
  if isinstance(value, float):
    return "" if math.isnan(value) else repr(value)  # repr: shortest exact round trip
  return str(value)


def _md_num(value: float) -> str:
  return "–" if math.isnan(value) else f"{value:.5g}"


def _render_png(rows: Sequence[dict], metric: str) -> bytes:
  from matplotlib.ticker import MaxNLocator

  from ai_jax import plotting

  j_J = np.array([r["j"] for r in rows], np.float64)
  col = lambda name: np.array([r[name] for r in rows], np.float64)  # noqa: E731
  fig = plotting.new_figure(7.0, 4.5)
  ax = fig.add_subplot(1, 1, 1)
  ax.fill_between(j_J, col("expected_best_ci_low"), col("expected_best_ci_high"),
                  color="C0", alpha=0.25, linewidth=0)
  ax.plot(j_J, col("expected_best"), color="C0", marker="o", markersize=3,
          label="exact E[best of j] (all j-subsets)")
  prefix_J = col("prefix_best")
  yerr_2J = np.abs(np.stack([prefix_J - col("prefix_best_ci_low"),
                             col("prefix_best_ci_high") - prefix_J]))
  ax.errorbar(j_J, prefix_J, yerr=np.nan_to_num(yerr_2J), color="C1", marker="s",
              markersize=3, linestyle="--", capsize=2, label="prefix: best of first j")
  ax.axhline(rows[0]["random_baseline"], color="gray", linestyle=":", label="random sample")
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.set_xlabel("j (samples per prompt)")
  direction = "higher" if rows[0]["maximize"] else "lower"
  ax.set_ylabel(f"{metric} of the selected sample ({direction} is better)")
  ax.set_title(f"Best-of-j ablation: {metric}, {rows[0]['num_prompts']} prompts")
  ax.grid(True, alpha=0.3)
  ax.legend(loc="best", fontsize="small")
  return plotting.png_bytes(fig)


def write_ablation(rows: Sequence[dict], out_dir: str, metric: str) -> dict[str, str]:
  """Writes ablation_<metric>.csv (all columns, one row per j), .md (a readable table) and
  .png (score vs j: the exact expectation with its CI band, the prefix estimate with CI
  bars). Each file is written atomically. Returns {"csv"|"md"|"png": path}."""
  if not rows:
    raise ValueError("no rows to write")
  if not re.fullmatch(r"[A-Za-z0-9_.+-]+", metric):
    raise ValueError(f"metric {metric!r} is not usable in a file name")
  os.makedirs(out_dir, exist_ok=True)
  paths = {ext: os.path.join(out_dir, f"ablation_{metric}.{ext}") for ext in ("csv", "md", "png")}

  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(COLUMNS)
  for row in rows:
    writer.writerow([_csv_cell(row[c]) for c in COLUMNS])
  write_text_atomic(paths["csv"], buf.getvalue())

  first = rows[0]
  pct = f"{100 * first['confidence']:g}% CI"
  lines = [
      f"# Best-of-j ablation: {metric}",
      "",
      f"{'maximised' if first['maximize'] else 'minimised'}; {first['num_prompts']} prompts "
      f"used, {first['num_excluded']} excluded ({first['num_excluded_no_score']} without a "
      f"finite score, {first['num_excluded_too_few']} with too few samples); one random "
      f"sample: {_md_num(first['random_baseline'])}.",
      "",
      f"| j | exact E[best of j] | {pct} | prefix best of first j | {pct} | prefix prompts |",
      "|--:|--:|--:|--:|--:|--:|",
  ]
  for r in rows:
    lines.append(
        f"| {r['j']} | {_md_num(r['expected_best'])} | "
        f"[{_md_num(r['expected_best_ci_low'])}, {_md_num(r['expected_best_ci_high'])}] | "
        f"{_md_num(r['prefix_best'])} | "
        f"[{_md_num(r['prefix_best_ci_low'])}, {_md_num(r['prefix_best_ci_high'])}] | "
        f"{r['prefix_num_prompts']} |")
  write_text_atomic(paths["md"], "\n".join(lines) + "\n")

  write_bytes_atomic(paths["png"], _render_png(rows, metric))
  return paths
