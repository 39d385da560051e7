"""The STEER experiment's report: per task a table (arm x corpus metric, with intervals) and
the diversity-similarity and diversity-authenticity trade-off plots, one point per arm with
its intervals as whiskers on both axes."""

from __future__ import annotations

from typing import Mapping

from ai_jax import plotting
from ai_jax.experiment.steer_metrics import METRICS
from ai_jax.metrics import registry
from ai_jax.profiling.stats import fmt_num
from ai_jax.run import layout
from ai_jax.store.atomic import read_json, write_bytes_atomic, write_text_atomic

LABELS = {"normalised_unique_ngrams": "unique n-grams", "diversity": "diversity",
          "embedding_similarity": "similarity", "mauve": "MAUVE",
          "authenticity": "authenticity AUROC"}
# (x, y, file suffix) of each trade-off plot.
PLOTS = (("embedding_similarity", "diversity", "diversity_similarity"),
         ("authenticity", "diversity", "diversity_authenticity"))


def _higher(metric: str) -> str:
  return registry.get_corpus_metric(metric).higher_means


def summary(p, stage_seconds: Mapping[str, float]) -> dict:
  """summary.json: the plan's settings, each task's metrics and experts, the wall time."""
  tasks = {}
  for task in p.tasks:
    metrics = read_json(p.dirs.metrics(task.name), None)
    if metrics is None:
      raise FileNotFoundError(f"no metrics for task {task.name!r} (run the metrics stage)")
    expert = read_json(p.dirs.expert(task.name).finished_marker, {})
    tasks[task.name] = {"instruction": task.instruction, "real_path": task.real_path,
                        "num_train": task.num_train, "num_reference": task.num_reference,
                        "expert": expert.get("summary", {}), "arms": metrics["arms"],
                        "settings": metrics["settings"]}
  return {"title": f"STEER ({p.config.name})", "base": p.base_path,
          "num_generate": int(p.config.num_generate),
          "sampling": {k: p.config.sample.sampling[k] for k in (
              "temperature", "top_k", "top_p", "max_new_tokens")},
          "num_negatives": int(p.config.sample.steer.num_negatives),
          "tasks": tasks, "stage_seconds": dict(stage_seconds),
          "wall_seconds": round(sum(stage_seconds.values()), 1)}


def _cell(m: Mapping | None) -> str:
  if not m:
    return "n/a"
  value = fmt_num(m.get("value"))
  if m.get("low") is None or m.get("high") is None:
    return value
  return f"{value} [{fmt_num(m['low'])}, {fmt_num(m['high'])}]"


def table(arms: Mapping[str, Mapping]) -> list[str]:
  head = ["arm", "model", "decoder", "γ", "η", *(LABELS[m] for m in METRICS), "words",
          "cut"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for name, a in arms.items():
    steer = a["decoder"] == "steer"
    row = [name, a["model"], a["decoder"], fmt_num(a["gamma"]) if steer else "",
           fmt_num(a["eta"]) if steer else "",
           *(_cell(a["metrics"].get(m)) for m in METRICS),
           fmt_num(a["mean_words"]), f"{a['cut_share']:.0%}"]
    lines.append("| " + " | ".join(row) + " |")
  return lines


def tradeoff_png(task: str, arms: Mapping[str, Mapping], x: str, y: str) -> bytes:
  from ai_jax.profiling.plots import arm_colors
  fig = plotting.new_figure(6.4, 4.6)
  ax = fig.add_subplot(1, 1, 1)
  colors = arm_colors(list(arms))
  for name, a in arms.items():
    mx, my = a["metrics"].get(x) or {}, a["metrics"].get(y) or {}
    if mx.get("value") is None or my.get("value") is None:
      continue

    def err(m):
      if m.get("low") is None or m.get("high") is None:
        return None
      # A percentile interval need not hold the point value (a skewed resampling
      # distribution, e.g. MAUVE's): the whisker then stops at the point.
      return [[max(0.0, m["value"] - m["low"])], [max(0.0, m["high"] - m["value"])]]
    ax.errorbar([mx["value"]], [my["value"]], xerr=err(mx), yerr=err(my), fmt="o",
                color=colors[name], capsize=3, label=name)
    ax.annotate(name, (mx["value"], my["value"]), textcoords="offset points", xytext=(4, 4),
                fontsize=7)
  if x == "authenticity":
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
  ax.set_xlabel(f"{LABELS[x]} (higher: {_higher(x)})")
  ax.set_ylabel(f"{LABELS[y]} (higher: {_higher(y)})")
  ax.set_title(f"{task}: {LABELS[y]} vs {LABELS[x]} (95% CIs)")
  ax.legend(fontsize=7, loc="best")
  return plotting.png_bytes(fig)


def write_report(summary: Mapping, dirs: layout.SteerDir) -> list[str]:
  files = []
  lines = [f"# {summary['title']}", "",
           f"Base model: `{summary['base']}`. Each arm generated {summary['num_generate']} "
           f"examples per task (temperature {summary['sampling']['temperature']}, top-k "
           f"{summary['sampling']['top_k'] or 'off'}, top-p {summary['sampling']['top_p']}, "
           f"at most {summary['sampling']['max_new_tokens']} new tokens); STEER's negative "
           f"prompts hold {summary['num_negatives']} examples each. Metrics compare each "
           "arm's examples with the task's held-out real ones; intervals are 95% bootstrap "
           "intervals over the arm's examples (ai_jax.metrics.corpus). `words` is the "
           "examples' mean length; `cut` the share that max_new_tokens cut, which stay in "
           "the metrics as they are (every arm has the same token budget).", ""]
  for task, t in summary["tasks"].items():
    lines += [f"## {task}", "", f"Instruction: \"{t['instruction']}\" Real data: "
              f"`{t['real_path']}` ({t['num_train']} for the expert and the negative pool, "
              f"{t['num_reference']} held out)."]
    if t["expert"]:
      lines.append(f"Expert: {t['expert'].get('steps')} steps, loss "
                   f"{fmt_num(t['expert'].get('first_loss'))} -> "
                   f"{fmt_num(t['expert'].get('final_loss'))}.")
    lines += ["", *table(t["arms"]), ""]
    for x, y, suffix in PLOTS:
      path = dirs.plot(task, suffix)
      write_bytes_atomic(path, tradeoff_png(task, t["arms"], x, y))
      files.append(path)
      lines += [f"![{task}: {y} vs {x}]({dirs.relative(path)})", ""]
  lines += ["## Wall time", "", "| stage | seconds |", "|---|---|",
            *(f"| {k} | {v:.1f} |" for k, v in summary["stage_seconds"].items()),
            f"| total | {summary['wall_seconds']:.1f} |", "",
            "The report stage's own time is added to stages.json after it ends.", ""]
  write_text_atomic(dirs.report, "\n".join(lines))
  files.insert(0, dirs.report)
  return files
