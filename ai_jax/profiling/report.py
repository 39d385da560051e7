"""The experiment's read-out: report.md and PNG plots from its summary dict.

`write_report(summary, distributions, out_dir)` writes, each file atomically:
  out_dir/report.md                 arms, per-mode tables, distribution shift, ablation, times
  out_dir/plots/metrics_<mode>.png  per evaluation mode: a grid with one panel per metric,
                                    one bar per arm, the CI as a whisker
  out_dir/plots/reliability_<suite>.png  per calibration suite of summary["profile"]
  out_dir/plots/shift_<metric>.png  per targeted metric: step histograms and ECDFs of the
                                    per-sample values, one line per arm
and returns {"report": path, "metrics_<mode>": path, "shift_<metric>": path} (names use
the mode and metric as given; file names replace characters outside [A-Za-z0-9_.+-]).

The summary contract (JSON-able; every key below except "arms" and "evaluations" may be
missing, and every value documented as "| None" renders as "n/a"):

  {"title": str,                                   # default "Experiment report"
   "arms": {arm: {                                 # order = bar and row order
       "kind": "base" | "baseline" | "targeted",
       "description": str,
       "selection": None | {"kept": int, "dropped": int,
                            "kept_cut_by_max_new_tokens_share": float,   # in [0, 1]
                            "mean_score_kept_vs_all": {metric: {"kept": float | None,
                                                                "all": float | None}}},
       "train": None | {"steps": int, "examples": int, "final_loss": float | None}}},
   "targeted_metrics": [metric, ...],              # get a shift plot each
   "evaluations": {mode: {                         # e.g. "greedy", "sampled", "toxicity"
       "description": str,
       "metrics": {metric: {
           "higher_means": "more" | "less" | None,
           "arms": {arm: {"estimate": Estimate.to_dict() | None,
                          "vs_base": comparison | None,
                          "vs_random": comparison | None}}}}}},
   "ablation": None | {"metric": str, "png": str (optional; relative to out_dir, or
                       absolute), "rows": [ablation_table rows: "j", "expected_best",
                       "expected_best_ci_low", "expected_best_ci_high", ...]},
   "profile": None | profile_report.summarize(...) with the arms as models and "base"
              as the base: {suite: {"models": {arm: figures}, "change_vs_base": ...}},
   "stage_seconds": {stage: float},
   "confidence": float}                            # default 0.95

A comparison is stats.jsonable(stats.paired_difference(arm, other)) ({"diff", "pct",
"n_paired", ...}); the report shows "vs base" as pct, "vs random" as diff. Estimate
objects are accepted wherever an Estimate dict is. Arms found under a metric but not in
"arms" are appended in order of appearance.

distributions = {metric: {arm: [per-sample values, None for unscored]}} (greedy samples);
a targeted metric without an entry gets a "no data" plot.

Plots and tables show every metric of the mode unless `show_metrics` names a subset
(targeted metrics always kept; summary.json keeps them all): 4 columns, small fonts,
readable up to ~30 panels. Bars start at 0, so a small shift is better read from the
tables. The drawing itself is in plots.py.
"""

from __future__ import annotations

import math
import os
import re
from typing import Mapping, Sequence

from ai_jax.profiling import plots, profile_report
from ai_jax.profiling.stats import as_estimate, fmt_num
from ai_jax.run import layout
from ai_jax.store.atomic import write_bytes_atomic, write_text_atomic

# --- formatting ----------------------------------------------------------------------------


def _fmt_est(d, signed: bool = False, unit: str = "") -> str:
  est = as_estimate(d)
  if est is None or est.value is None:
    return "n/a"
  value = fmt_num(est.value, signed) + unit
  if est.low is None or est.high is None:
    return f"{value} [n/a]"
  return f"{value} [{fmt_num(est.low, signed)}{unit}, {fmt_num(est.high, signed)}{unit}]"


def _fmt_duration(seconds) -> str:
  if seconds is None or not math.isfinite(float(seconds)):
    return "n/a"
  s = float(seconds)
  if s < 60:
    return f"{s:.1f} s"
  if s < 3600:
    return f"{int(s // 60)} min {s % 60:04.1f} s"
  return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def _count(x) -> str:
  return "n/a" if x is None else str(x)


def _cell(text) -> str:
  # A "|" or newline in free text would break the table row.
  return str(text).replace("|", "\\|").replace("\n", " ")


def _slug(name: str, used: set[str]) -> str:
  slug = re.sub(r"[^A-Za-z0-9_.+-]", "_", str(name)) or "_"
  out, i = slug, 1
  while out in used:  # two names that differ only in odd characters must not overwrite
    i += 1
    out = f"{slug}_{i}"
  used.add(out)
  return out


def _arm_order(summary: Mapping) -> list[str]:
  found = [arm for mode in (summary.get("evaluations") or {}).values()
           for metric in ((mode or {}).get("metrics") or {}).values()
           for arm in ((metric or {}).get("arms") or {})]
  return list(dict.fromkeys([*(summary.get("arms") or {}), *found]))


# --- markdown ------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence], align: str) -> list[str]:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("--:" if a == "r" else "---" for a in align) + "|"]
  lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
  return lines


def _arms_section(summary: Mapping, arms: Sequence[str], keep: set | None) -> list[str]:
  info = summary.get("arms") or {}
  rows, score_rows = [], []
  targeted = list(summary.get("targeted_metrics") or [])
  for arm in arms:
    a = info.get(arm) or {}
    sel = a.get("selection") or {}
    train = a.get("train") or {}
    share = sel.get("kept_cut_by_max_new_tokens_share")
    rows.append([arm, a.get("kind") or "n/a", a.get("description") or "",
                 _count(sel.get("kept")), _count(sel.get("dropped")),
                 "n/a" if share is None else f"{fmt_num(100 * share)}%",
                 _count(train.get("steps")), _count(train.get("examples")),
                 fmt_num(train.get("final_loss"))])
    means = sel.get("mean_score_kept_vs_all") or {}
    # Targeted metrics first: they are what the selection was meant to move.
    for metric in [m for m in targeted if m in means] + [m for m in means if m not in targeted
                                                         and (keep is None or m in keep)]:
      kept, all_ = (means[metric] or {}).get("kept"), (means[metric] or {}).get("all")
      gap = None if kept is None or all_ is None else kept - all_
      score_rows.append([arm, metric, fmt_num(kept), fmt_num(all_), fmt_num(gap, True)])
  lines = ["## Arms", ""]
  if not rows:
    return lines + ["n/a (no arms)", ""]
  lines += _table(["arm", "kind", "description", "kept", "dropped",
                   "kept cut by max_new_tokens", "train steps", "train examples",
                   "final loss"], rows, "lllrrrrrr")
  lines.append("")
  lines += _teachers_section(summary, arms)
  if score_rows:
    lines += ["Selection: mean score of the kept samples against all samples of the pool.",
              ""]
    lines += _table(["arm", "metric", "mean kept", "mean all", "kept - all"], score_rows,
                    "llrrr")
    lines.append("")
  return lines


def _teachers_section(summary: Mapping, arms: Sequence[str]) -> list[str]:
  """With several teachers: each arm's kept samples by teacher (share of its kept)."""
  teachers = list(summary.get("teachers") or {})
  lines = []
  tokenizer = summary.get("score_tokenizer")
  if tokenizer:
    lines += [f"Token counts (length_tokens) use the student's tokenizer ({tokenizer}) on "
              "every teacher's samples; the student trains on their text, re-tokenised by "
              "it.", ""]
  if len(teachers) < 2:
    return lines
  rows = []
  for arm in arms:
    kept = ((summary.get("arms") or {}).get(arm) or {}).get("selection") or {}
    by_teacher = kept.get("kept_teachers") or {}
    total = sum(by_teacher.values())
    if not kept:
      continue
    cells = []
    for t in teachers:
      n = by_teacher.get(t, 0)
      cells.append(f"{_count(n)} ({fmt_num(100 * n / total)}%)" if total else "0")
    rows.append([arm] + cells)
  lines += ["Kept samples by teacher (count and share of the arm's kept samples):", ""]
  lines += _table(["arm"] + teachers, rows, "l" + "r" * len(teachers)) + [""]
  return lines


def _evaluation_section(mode: str, entry: Mapping, arms: Sequence[str], plot: str | None,
                        confidence: float, keep: set | None) -> list[str]:
  lines = [f"## Evaluation: {mode}", ""]
  if entry.get("description"):
    lines += [str(entry["description"]), ""]
  if plot:
    lines += [f"![metrics, {mode}]({plot})", ""]
  metrics = _shown(entry.get("metrics") or {}, keep)
  if not metrics:
    return lines + ["n/a (no metrics)", ""]
  ci = f"{100 * confidence:g}% CI"
  rows = []
  for metric, m in metrics.items():
    m = m or {}
    by_arm = m.get("arms") or {}
    label = metric + (f" (higher = {m['higher_means']})" if m.get("higher_means") else "")
    for arm in arms:
      a = by_arm.get(arm) or {}
      est = as_estimate(a.get("estimate"))
      n = "n/a" if est is None else (f"{est.n}" + (f" ({est.n_missing} missing)"
                                                    if est.n_missing else ""))
      vs_base = (a.get("vs_base") or {}).get("pct")
      vs_random = (a.get("vs_random") or {}).get("diff")
      rows.append([label, arm, _fmt_est(est), n, _fmt_est(vs_base, True, "%"),
                   _fmt_est(vs_random, True)])
  lines += _table(["metric", "arm", f"mean [{ci}]", "prompts", f"vs base, % [{ci}]",
                   f"vs random, difference [{ci}]"], rows, "llrrrr")
  return lines + [""]


def _shift_section(targeted: Sequence[str], plot_paths: Mapping[str, str]) -> list[str]:
  lines = ["## Distribution shift of the targeted metrics (greedy samples)", ""]
  if not targeted:
    return lines + ["n/a (no targeted metric)", ""]
  # The plots' legends carry each arm's sample count and mean.
  for metric in targeted:
    lines += [f"![shift, {metric}]({plot_paths[metric]})", ""]
  return lines


def _ablation_section(ablation, out_dir: str) -> list[str]:
  if not ablation:
    return ["## Sample-count ablation", "", "n/a (not run)", ""]
  metric = ablation.get("metric") or "n/a"
  lines = [f"## Sample-count ablation: {metric}", ""]
  png = ablation.get("png")
  if png:
    rel = os.path.relpath(png, out_dir) if os.path.isabs(png) else png
    lines += [f"![ablation, {metric}]({rel})", ""]
  rows = ablation.get("rows") or []
  if not rows:
    return lines + ["n/a (no rows)", ""]
  lines += ["Expected best score of j samples per prompt (exact over all j-subsets), "
            "mean over prompts.", ""]
  body = [[r.get("j", "n/a"),
           _fmt_est({"value": r.get("expected_best"), "low": r.get("expected_best_ci_low"),
                     "high": r.get("expected_best_ci_high")})] for r in rows]
  return lines + _table(["j", "expected best [CI]"], body, "rr") + [""]


def _times_section(stage_seconds: Mapping | None) -> list[str]:
  lines = ["## Stage wall times", ""]
  if not stage_seconds:
    return lines + ["n/a", ""]
  rows = [[stage, _fmt_duration(s)] for stage, s in stage_seconds.items()]
  finite = [float(s) for s in stage_seconds.values() if s is not None and math.isfinite(s)]
  rows.append(["total", _fmt_duration(sum(finite))])
  return lines + _table(["stage", "wall time"], rows, "lr") + [""]


def _shown(metrics: Mapping, keep: set | None) -> dict:
  return dict(metrics) if keep is None else {k: v for k, v in metrics.items() if k in keep}


def _profile_section(profile: Mapping | None, arms: Sequence[str], confidence: float,
                     plots_rel: Mapping[str, str]) -> list[str]:
  """What else changed: every arm's student on the bias, calibration and accuracy suites,
  beside the untuned student (paired over items)."""
  if not profile:
    return []
  lines = ["## What else changed: bias, calibration, accuracy", "",
           "Every arm's student on the profile suites (log-likelihood scoring, "
           "configs/profile.py); the change vs base is paired by item (both students on the "
           "same items and resamples). Shares of pairs and SS/LMS/ICAT are in percent.", ""]
  lines += profile_report.table_lines(profile, arms, "base", confidence)
  for suite, rel in plots_rel.items():
    lines += [f"![{suite} reliability]({rel})", ""]
  return lines


def _render_markdown(summary: Mapping, plot_paths: Mapping[str, Mapping[str, str]],
                     out_dir: str, keep: set | None = None) -> str:
  """report.md's text; plot_paths = {"metrics": {mode: rel path},
  "shift": {metric: rel path}}."""
  confidence = float(summary.get("confidence") or 0.95)
  arms = _arm_order(summary)
  pct = f"{100 * confidence:g}%"
  lines = [f"# {summary.get('title') or 'Experiment report'}", "",
           f"Values are means over prompts; brackets are {pct} percentile bootstrap CIs over "
           "prompts (prompts resampled with replacement). \"vs base\" (change in % of the "
           "base mean) and \"vs random\" (difference in the metric's units) are paired by "
           "prompt: both arms on the same prompts and resamples. n/a = not available.", ""]
  lines += _arms_section(summary, arms, keep)
  for mode, entry in (summary.get("evaluations") or {}).items():
    lines += _evaluation_section(mode, entry or {}, arms, plot_paths["metrics"].get(mode),
                                 confidence, keep)
  lines += _shift_section(list(summary.get("targeted_metrics") or []), plot_paths["shift"])
  lines += _profile_section(summary.get("profile"), arms, confidence,
                            plot_paths.get("reliability") or {})
  lines += _ablation_section(summary.get("ablation"), out_dir)
  lines += _times_section(summary.get("stage_seconds"))
  return "\n".join(lines)


def write_report(summary: Mapping, distributions: Mapping | None, out_dir: str, *,
                 show_metrics: Sequence[str] | None = None) -> dict[str, str]:
  """Writes report.md and the plots under out_dir (contract in the module docstring);
  returns {"report" | "metrics_<mode>" | "shift_<metric>": path}. show_metrics limits the
  metric plots and tables to these metrics plus the targeted ones (default: every metric)."""
  if not isinstance(summary, Mapping):
    raise TypeError(f"summary must be a dict, got {type(summary).__name__}")
  missing = [k for k in ("arms", "evaluations") if k not in summary]
  if missing:
    raise ValueError(f"summary lacks {missing}; see ai_jax.profiling.report for the contract")
  distributions = distributions or {}
  confidence = float(summary.get("confidence") or 0.95)
  arms = _arm_order(summary)
  extra = [a for by_arm in distributions.values() for a in (by_arm or {}) if a not in arms]
  # One color per arm across every plot, arms only found in distributions included.
  colors = plots.arm_colors(arms + list(dict.fromkeys(extra)))
  dirs = layout.ExperimentDir(out_dir)
  plot_dir = dirs.plots
  os.makedirs(plot_dir, exist_ok=True)
  targeted = list(summary.get("targeted_metrics") or [])
  keep = None if show_metrics is None else set(show_metrics) | set(targeted)

  paths: dict[str, str] = {}
  rel: dict[str, dict[str, str]] = {"metrics": {}, "shift": {}, "reliability": {}}
  used: dict[str, set[str]] = {"metrics": set(), "shift": set(), "reliability": set()}

  def emit(kind: str, name: str, png: bytes) -> None:
    file_name = f"{kind}_{_slug(name, used[kind])}.png"
    path = os.path.join(plot_dir, file_name)
    write_bytes_atomic(path, png)
    paths[f"{kind}_{name}"] = path
    rel[kind][name] = dirs.relative(path)

  for mode, entry in (summary.get("evaluations") or {}).items():
    metrics = _shown((entry or {}).get("metrics") or {}, keep)
    emit("metrics", mode, plots.render_metrics_png(mode, metrics, arms, colors, confidence))
  for metric in targeted:
    by_arm = distributions.get(metric) or {}
    order = [a for a in arms if a in by_arm] + [a for a in by_arm if a not in arms]
    emit("shift", metric, plots.render_shift_png(metric, by_arm, order, colors))
  if summary.get("profile"):
    for suite, png in profile_report.reliability_plots(summary["profile"]).items():
      emit("reliability", suite, png)

  report = dirs.report
  write_text_atomic(report, _render_markdown(summary, rel, out_dir, keep) + "\n")
  paths["report"] = report
  return paths
