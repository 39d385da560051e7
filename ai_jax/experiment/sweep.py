r"""A sweep of active-inheritance runs (k x target x seed) that shares what cells share.

  python -m experiments.sweep --config configs/sweep.py:smoke --workdir /tmp/sweep

(ai_jax.run.layout.SweepDir names the folders:)

  SWEEP/shared/      prompts, teacher samples at k_max and their scores (sampled once),
                     students (content-addressed: trained once however many cells use
                     them) and their evaluations
  SWEEP/cells/<k{k}-{target}-s{seed}>/   each cell's selection, arms.json, report.md,
                     summary.json (experiments/active_inheritance.py's layout)
  SWEEP/sweep.csv, sweep.md, sweep.png   one combined table and plot

Multi-host (a TPU pod slice, or several GPU hosts): start the same command on every host
with --distributed; each calls jax.distributed.initialize() (the TPU / SLURM environment
supplies the coordinator, else pass --coordinator=HOST:PORT --num_hosts=N --host_index=I).
Every host then works on its own devices (ai_jax.sharding.mesh.make_mesh defaults to
jax.local_devices()):
  1. teacher sampling and scoring: each host takes its share of the prompts (a stable hash
     of the prompt id, ai_jax.data.splits.host_shard) and appends to its own shard files
     in SWEEP/shared/teacher/ (RecordStore writer "h<index>": one writer per host);
  2. a barrier (multihost_utils.sync_global_devices), after which every host reads all
     samples;
  3. the cells are dealt round robin; a host trains and evaluates its cells' students in
     SWEEP/shared/host-<index>/ (its own writer again);
  4. a barrier; host 0 writes the combined table.
Without --distributed, --num_hosts/--host_index simulate hosts (one process per host,
started together; barriers are files under SWEEP/barriers/), which is how the tests run
two hosts of 4 fake CPU devices each. The shared folder must be one file system all hosts
see (NFS, a GCS FUSE mount).
"""

from __future__ import annotations

import csv
import glob
import io
import os
import time

import ml_collections

from ai_jax.experiment import active_inheritance as experiment
from ai_jax.run import layout
from ai_jax.store.atomic import read_json, write_bytes_atomic, write_text_atomic


# Keys of the experiment section that each cell sets itself -> the sweep key that governs
# them; configs/sweep.py removes them, so setting one is refused naming its governor.
GOVERNED = {
    "experiment.sample.sampling.k": "k_values (the teachers sample max(k_values) once)",
    "experiment.select.k": "k_values",
    "experiment.arms": "targets",
    "experiment.select.ablation_metric": "targets (each cell's target metric)",
    "experiment.seed": "seeds",
    "experiment.shared_dir": "the sweep (SWEEP/shared)",
    "experiment.host": "--num_hosts / --host_index",
}


def cells(config) -> list[dict]:
  out = []
  for seed in config.seeds:
    for target in config.targets:
      for k in config.k_values:
        out.append({"name": f"k{k}-{target}-s{seed}", "k": int(k), "target": target,
                    "seed": int(seed)})
  return out


def cell_config(config, cell: dict, workdir: str, host: tuple[int, int]):
  from ai_jax.config_files import has_key
  for key, by in GOVERNED.items():
    if has_key(config, key):
      raise experiment.ExperimentConfigError(
          f"config.{key} is set by the sweep from config.{by}; set that instead")
  c = ml_collections.ConfigDict(config.experiment.to_dict())
  c.sample.sampling.k = max(int(k) for k in config.k_values)
  c.select.k = cell["k"]
  c.arms = ml_collections.ConfigDict({cell["target"]: config.targets[cell["target"]].to_dict()})
  c.seed = cell["seed"]
  c.select.ablation_metric = ""
  c.shared_dir = layout.SweepDir(workdir).shared
  c.host = ml_collections.ConfigDict({"index": host[0], "num_hosts": host[1]})
  c.name = f"{config.experiment.name} sweep cell {cell['name']}"
  return c


def _barrier(name: str, workdir: str, host: tuple[int, int], distributed: bool,
             timeout_s: float) -> None:
  index, count = host
  if count == 1:
    return
  if distributed:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)
    return
  dirs = layout.SweepDir(workdir)
  folder = dirs.barrier(name)
  os.makedirs(folder, exist_ok=True)
  open(dirs.barrier_arrival(name, index), "w").close()
  deadline = time.time() + timeout_s
  while len([f for f in os.listdir(folder) if f.startswith("h")]) < count:
    failed = sorted(glob.glob(dirs.failed_glob))
    if failed:
      raise RuntimeError(f"barrier {name!r}: another host failed ({', '.join(failed)}: "
                         "its error is inside); fix it and rerun every host (they resume)")
    if time.time() > deadline:
      raise TimeoutError(f"barrier {name!r}: waited {timeout_s:.0f} s for {count} hosts in "
                         f"{folder}; are all hosts running with the same --workdir?")
    time.sleep(0.5)


def run(config, workdir: str, overwrite: bool = False, host: tuple[int, int] = (0, 1),
        distributed: bool = False) -> dict:
  del overwrite  # cells resume; delete the folder to start over
  if host[1] > 1 and not distributed:
    failed = layout.SweepDir(workdir).host_failed(host[0])
    if os.path.exists(failed):
      os.remove(failed)  # this host's failure of an earlier attempt
  try:
    return _run(config, workdir, host, distributed)
  except BaseException as e:
    if host[1] > 1 and not distributed:  # release the other hosts from their barriers
      write_text_atomic(layout.SweepDir(workdir).host_failed(host[0]),
                        f"{type(e).__name__}: {e}\n")
    raise


def _run(config, workdir: str, host: tuple[int, int], distributed: bool) -> dict:
  if not config.k_values or min(int(k) for k in config.k_values) < 1:
    raise experiment.ExperimentConfigError(
        f"config.k_values must be positive integers, got {tuple(config.k_values)}")
  if not config.targets or not config.seeds:
    raise experiment.ExperimentConfigError("config.targets and config.seeds must not be empty")
  grid = cells(config)
  dirs = layout.SweepDir(workdir)
  plans = {c["name"]: experiment.plan(cell_config(config, c, workdir, host),
                                      dirs.cell(c["name"]))
           for c in grid}  # every cell is validated before any compute
  first = plans[grid[0]["name"]]
  experiment.stage_prompts(first)
  # This host's share of the teacher samples and scores (all of them on one host).
  experiment.stage_sample(first)
  experiment.stage_score(first)
  _barrier("teacher", workdir, host, distributed, config.barrier_timeout_s)
  mine = [c for i, c in enumerate(grid) if i % host[1] == host[0]]
  for cell in mine:
    experiment.run(plans[cell["name"]].config, dirs.cell(cell["name"]),
                   stages=("select", "train", "evaluate", "report"))
  _barrier("cells", workdir, host, distributed, config.barrier_timeout_s)
  if host[0] != 0:
    return {"host": list(host), "cells_run": [c["name"] for c in mine]}
  rows = combined_rows(config, grid, workdir)
  files = write_combined(rows, workdir)
  return {"cells": len(grid), "rows": rows, "files": files}


def _cell(estimate) -> tuple:
  e = (estimate or {}).get("estimate") or {}
  return e.get("value"), e.get("low"), e.get("high")


def combined_rows(config, grid, workdir: str) -> list[dict]:
  rows = []
  for cell in grid:
    summary = read_json(layout.ExperimentDir(layout.SweepDir(workdir).cell(cell["name"])).summary)
    metric = config.targets[cell["target"]].get("metric") or ""
    entry = summary["evaluations"][config.table_mode]["metrics"].get(metric, {"arms": {}})
    arms = entry["arms"]
    row = {"cell": cell["name"], "k": cell["k"], "target": cell["target"],
           "seed": cell["seed"], "metric": metric}
    for arm, label in (("base", "base"), ("random", "random"), ("first", "first"),
                       (cell["target"], "targeted")):
      row[label], row[f"{label}_low"], row[f"{label}_high"] = _cell(arms.get(arm))
    vs = (arms.get(cell["target"]) or {}).get("vs_random") or {}
    diff = vs.get("diff") or {}
    row["targeted_minus_random"] = diff.get("value")
    row["targeted_minus_random_low"], row["targeted_minus_random_high"] = (
        diff.get("low"), diff.get("high"))
    rows.append(row)
  return rows


def write_combined(rows: list[dict], workdir: str) -> dict[str, str]:
  from ai_jax.profiling.report import fmt_num
  dirs = layout.SweepDir(workdir)
  paths = {"csv": dirs.table_csv, "md": dirs.table_md, "png": dirs.plot}
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  write_text_atomic(paths["csv"], buf.getvalue())

  def ci(row, name):
    return (f"{fmt_num(row[name])} [{fmt_num(row[name + '_low'])}, "
            f"{fmt_num(row[name + '_high'])}]")
  lines = ["# Sweep: the targeted metric of each cell's students (greedy, held-out prompts)",
           "", "Mean over prompts [95% bootstrap CI]; targeted - random is paired by prompt.",
           "", "| target | metric | seed | k | base | first | random | targeted | "
           "targeted - random |", "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
  for r in rows:
    lines.append(f"| {r['target']} | {r['metric']} | {r['seed']} | {r['k']} | "
                 f"{fmt_num(r['base'])} | {ci(r, 'first')} | {ci(r, 'random')} | "
                 f"{ci(r, 'targeted')} | {ci(r, 'targeted_minus_random')} |")
  lines += ["", f"![sweep]({os.path.relpath(dirs.plot, workdir)})"]
  write_text_atomic(paths["md"], "\n".join(lines) + "\n")
  write_bytes_atomic(paths["png"], _plot(rows))
  return paths


def _plot(rows: list[dict]) -> bytes:
  import numpy as np

  from ai_jax import plotting
  groups = sorted({(r["target"], r["metric"], r["seed"]) for r in rows})
  fig = plotting.new_figure(5.5 * len(groups), 4.2)
  for i, (target, metric, seed) in enumerate(groups):
    ax = fig.add_subplot(1, len(groups), i + 1)
    sel = sorted((r for r in rows if (r["target"], r["metric"], r["seed"]) ==
                  (target, metric, seed)), key=lambda r: r["k"])
    k_J = np.array([r["k"] for r in sel], float)
    for j, label in enumerate(("targeted", "random", "first")):
      v = np.array([np.nan if r[label] is None else r[label] for r in sel], float)
      lo = np.array([np.nan if r[label + "_low"] is None else r[label + "_low"] for r in sel])
      hi = np.array([np.nan if r[label + "_high"] is None else r[label + "_high"] for r in sel])
      ax.errorbar(k_J + (j - 1) * 0.04 * k_J, v, yerr=np.nan_to_num(np.abs([v - lo, hi - v])),
                  marker="o", capsize=3, label=label)
    if sel and sel[0]["base"] is not None:
      ax.axhline(sel[0]["base"], color="gray", linestyle=":", label="base (untuned)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(k_J, [str(int(k)) for k in k_J])
    ax.set_xlabel("k (samples per prompt)")
    ax.set_ylabel(metric)
    ax.set_title(f"{target}, seed {seed}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
  return plotting.png_bytes(fig)
