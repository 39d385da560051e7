"""The profile's figures, tables and reliability diagrams, for one model or for every arm.

`summarize` turns scored suite files (suite_run) into the summary's "profile" section:
per suite, per model its figures with intervals, and, beside a base model, each model's
change with a paired bootstrap interval over the items both scored. `table_lines` renders
the "what else changed" table; `render_reliability_png` one suite's reliability diagram.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from ai_jax import plotting
from ai_jax.profiling import suite_run
from ai_jax.profiling import suites as suites_lib
from ai_jax.profiling.stats import as_estimate, fmt_num


def summarize(scored: Mapping[str, Mapping[str, dict]], options: suite_run.ProfileOptions,
              base: str | None = None) -> dict:
  """{suite: {"description", "headline", "models": {model: figures},
  "change_vs_base": {model: {metric: Estimate dict}}}} from {model: {suite: scored}}."""
  out = {}
  for run in options.suites:
    suite = suites_lib.get(run.name)
    entry = {"description": suite.description, "headline": list(suite.headline),
             "higher_is_better": dict(suite.higher_is_better), "models": {},
             "change_vs_base": {}}
    for model, by_suite in scored.items():
      entry["models"][model] = suite_run.figures(by_suite[run.name], options)
      if base is not None and model != base:
        entry["change_vs_base"][model] = suite_run.paired_change(
            by_suite[run.name], scored[base][run.name], options)
    out[run.name] = entry
  return out


def _cell(est: dict | None, signed: bool = False) -> str:
  e = as_estimate(est)
  if e is None or e.value is None:
    return "n/a"
  text = fmt_num(e.value, signed=signed)
  if e.low is not None and e.high is not None:
    text += f" [{fmt_num(e.low, signed=signed)}, {fmt_num(e.high, signed=signed)}]"
  return text


def _direction(higher: bool | None, metric: str) -> str:
  if metric.startswith(("ss", "pct_stereotype")):
    return "50 = unbiased"
  if metric.startswith(("s_dis", "s_amb")):
    return "0 = unbiased"
  return {True: "higher is better", False: "lower is better"}.get(higher, "")


def table_lines(profile: Mapping[str, dict], models: Sequence[str], base: str | None,
                confidence: float) -> list[str]:
  """Markdown: one table per suite, a row per model, a column per headline metric: the
  value [CI], and beside a base its change [paired CI]."""
  lines = []
  for name, entry in profile.items():
    head = entry["headline"]
    lines += [f"### {name}: {entry['description']}", ""]
    first = next(iter(entry["models"].values()), {})
    skipped = first.get("skipped") or {}
    lines.append(f"{first.get('n_items', 0)} items"
                 + (f"; left out: {', '.join(f'{k} {v}' for k, v in skipped.items())}"
                    if skipped else "")
                 + (f"; {first['unresolved_target']} with no resolvable target group stay "
                    "out of the bias scores" if first.get("unresolved_target") else "")
                 + f". Value [{100 * confidence:g}% bootstrap CI over items]"
                 + ("; change vs base [paired CI]." if base else "."))
    lines.append("")
    cols = [f"{m} ({d})" if (d := _direction(entry["higher_is_better"].get(m), m)) else m
            for m in head]
    lines.append("| model | " + " | ".join(cols) + " |")
    lines.append("|---|" + "---|" * len(head))
    for model in models:
      fig = entry["models"].get(model)
      if fig is None:
        continue
      cells = []
      for m in head:
        cell = _cell(fig["metrics"].get(m))
        change = (entry["change_vs_base"].get(model) or {}).get(m)
        if change is not None:
          cell += f"; {_cell(change, signed=True)}"
        cells.append(cell)
      lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines.append("")
  return lines


def render_reliability_png(suite: str, bins_by_model: Mapping[str, Sequence[dict]]) -> bytes:
  """Accuracy against mean confidence per equal-mass bin, one line per model, with the
  diagonal of perfect calibration."""
  fig = plotting.new_figure(4.2, 4.0)
  ax = fig.add_subplot(1, 1, 1)
  ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=0.8, label="calibrated")
  for model, bins in bins_by_model.items():
    if bins:
      ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o",
              markersize=3, linewidth=1.0, label=model)
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_xlabel("mean confidence (top option)", fontsize=8)
  ax.set_ylabel("accuracy", fontsize=8)
  ax.set_title(f"{suite}: reliability, 10 equal-mass bins", fontsize=9)
  ax.tick_params(labelsize=7)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=7)
  return plotting.png_bytes(fig)


def reliability_plots(profile: Mapping[str, dict]) -> dict[str, bytes]:
  """{suite: PNG bytes} for each calibration suite."""
  return {name: render_reliability_png(name, {m: f.get("reliability") or []
                                              for m, f in entry["models"].items()})
          for name, entry in profile.items() if suites_lib.get(name).calibration}
