"""The experiment's PNG plots (matplotlib, Agg canvas; no pyplot state): per-mode bar grids
with CI whiskers and per-metric distribution-shift panels. `report.write_report` decides
what to plot and where the bytes go."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ai_jax import plotting
from ai_jax.profiling.stats import as_estimate, fmt_num

_GRID_COLS = 4
_MAX_BINS = 60


def _finite(values) -> np.ndarray:
  values_R = np.array([np.nan if v is None else v for v in (values or [])], np.float64)
  return values_R[np.isfinite(values_R)]


def arm_colors(arms: Sequence[str]) -> dict[str, Any]:
  import matplotlib
  cmap = matplotlib.colormaps["tab10" if len(arms) <= 10 else "tab20"]
  return {arm: cmap(i % cmap.N) for i, arm in enumerate(arms)}


def render_metrics_png(mode: str, metrics: Mapping[str, Mapping], arms: Sequence[str],
                       colors: Mapping[str, Any], confidence: float) -> bytes:
  from matplotlib.patches import Patch
  names = list(metrics)
  ncols = max(1, min(_GRID_COLS, len(names)))
  nrows = max(1, math.ceil(len(names) / ncols))
  legend_rows = math.ceil(max(1, len(arms)) / 5)
  top_in = 0.45 + 0.2 * legend_rows
  height = 2.3 * nrows + top_in
  # Wide enough for the legend title when there are only one or two panels.
  fig = plotting.new_figure(max(3.0 * ncols, 6.5), height)
  if not names:
    fig.text(0.5, 0.5, f"{mode}: no metrics (n/a)", ha="center", va="center")
  for i, metric in enumerate(names):
    entry = metrics[metric] or {}
    by_arm = entry.get("arms") or {}
    ax = fig.add_subplot(nrows, ncols, i + 1)
    drawn = 0
    for x, arm in enumerate(arms):
      est = as_estimate((by_arm.get(arm) or {}).get("estimate"))
      if est is None or est.value is None:
        # An empty slot reads as a missing bar, not as a value of 0.
        ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=6,
                transform=ax.get_xaxis_transform())
        continue
      drawn += 1
      ax.bar(x, est.value, width=0.8, color=colors[arm])
      if est.low is not None and est.high is not None:
        # Whiskers drawn from low to high, not as +-err: a percentile interval need not
        # be symmetric, nor even contain the point estimate.
        ax.vlines(x, est.low, est.high, color="black", linewidth=1.0)
        ax.hlines([est.low, est.high], x - 0.15, x + 0.15, color="black", linewidth=1.0)
      if arm == "base":
        ax.axhline(est.value, color="gray", linestyle="--", linewidth=0.7)
    if not drawn:
      ax.text(0.5, 0.5, "n/a (no data)", ha="center", va="center", fontsize=8,
              transform=ax.transAxes)
    higher = entry.get("higher_means")
    # Two lines: "higher = ..." descriptions are as long as a panel is wide.
    ax.set_title(metric + (f"\n(higher = {higher})" if higher else ""), fontsize=8)
    ax.set_xticks([])
    ax.set_xlim(-0.6, max(len(arms), 1) - 0.4)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(True, axis="y", alpha=0.3)
  handles = [Patch(color=colors[a], label=a) for a in arms]
  if handles:
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 5), fontsize=7,
               title=f"{mode}: mean over prompts, whiskers = {100 * confidence:g}% CI "
                     "(dashed: base)", title_fontsize=8, frameon=False)
  fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - top_in / height))
  return plotting.png_bytes(fig, tight=False)


def _bin_edges(pooled_R: np.ndarray) -> np.ndarray:
  lo, hi = float(pooled_R.min()), float(pooled_R.max())
  if np.all(pooled_R == np.round(pooled_R)):
    # Integer-valued (word counts): bins aligned on integers, else they alias into combs.
    width = max(1, math.ceil((hi - lo + 1) / _MAX_BINS))
    return np.arange(lo - 0.5, hi + 0.5 + width, width)
  edges = np.histogram_bin_edges(pooled_R, bins="auto")
  return edges if edges.size <= _MAX_BINS + 1 else np.linspace(lo, hi, _MAX_BINS + 1)


def render_shift_png(metric: str, by_arm: Mapping[str, Sequence], arms: Sequence[str],
                     colors: Mapping[str, Any]) -> bytes:
  fig = plotting.new_figure(11.0, 4.2)
  ax_hist = fig.add_subplot(1, 2, 1)
  ax_cdf = fig.add_subplot(1, 2, 2)
  series = [(arm, _finite(by_arm.get(arm))) for arm in arms if arm in by_arm]
  series = [(arm, v) for arm, v in series if v.size]
  if not series:
    for ax in (ax_hist, ax_cdf):
      ax.text(0.5, 0.5, "n/a (no data)", ha="center", va="center", transform=ax.transAxes)
  else:
    edges = _bin_edges(np.concatenate([v for _, v in series]))
    for arm, values_R in series:
      # Base drawn thicker: it is the reference the shift is read against.
      width = 2.2 if arm == "base" else 1.3
      label = f"{arm} (n={values_R.size}, mean={fmt_num(values_R.mean())})"
      ax_hist.hist(values_R, bins=edges, density=True, histtype="step", color=colors[arm],
                   linewidth=width, label=label)
      sorted_R = np.sort(values_R)
      ax_cdf.step(sorted_R, np.arange(1, sorted_R.size + 1) / sorted_R.size, where="post",
                  color=colors[arm], linewidth=width, label=label)
    ax_hist.legend(fontsize=7, loc="best")
  for ax, ylabel, title in ((ax_hist, "density", f"{metric}: per-sample distribution"),
                            (ax_cdf, "share of samples <= x", "ECDF")):
    ax.set(xlabel=metric, ylabel=ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
  fig.tight_layout()
  return plotting.png_bytes(fig, tight=False)
