"""The k-sweep on two simulated hosts of 4 fake CPU devices each (8 in all), run together:
per-host prompt shards and writers, shared teacher samples, cells dealt between hosts,
students shared within a host, and one combined table. Teacher and student are a tiny
random model with SmolLM2's tokenizer (conftest.tiny_student_dir): the mechanics are under
test here; tests/test_experiment.py runs the real model."""

import csv
import glob
import json
import os
import subprocess
import sys

from conftest import requires_embedded, subprocess_env
from ai_jax.data.splits import host_shard
from ai_jax.store.records import iter_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _host_env():
  return subprocess_env(num_devices=4)


@requires_embedded
def test_two_hosts_share_samples_split_cells_and_combine(tmp_path, tiny_student_dir):
  workdir = tmp_path / "sweep"
  logs = [open(tmp_path / f"host{i}.log", "w+") for i in range(2)]  # pipes could fill and
  procs = [subprocess.Popen(                                          # block a host
      [sys.executable, "-m", "experiments.sweep", "--config", "configs/sweep.py:smoke",
       "--workdir", str(workdir), "--num_hosts=2", f"--host_index={i}",
       "--config.barrier_timeout_s=600",
       f"--config.experiment.teachers.smollm2_135m={tiny_student_dir}",
       f"--config.experiment.student.path={tiny_student_dir}"],
      cwd=REPO, env=_host_env(), stdout=logs[i], stderr=subprocess.STDOUT)
      for i in range(2)]
  for p, log in zip(procs, logs):
    p.wait(timeout=1200)
    log.seek(0)
    assert p.returncode == 0, log.read()[-4000:]

  teacher = workdir / "shared" / "teacher"
  # One writer per host: each host appended only to its own shards, its own prompts.
  for folder in ("samples", "scores"):
    names = sorted(os.path.basename(p) for p in glob.glob(str(teacher / folder / "shard-*")))
    assert names and all(n.startswith(("shard-h000-", "shard-h001-")) for n in names), names
    for h in range(2):
      for path in glob.glob(str(teacher / folder / f"shard-h{h:03d}-*.jsonl")):
        ids = {json.loads(line)["prompt_id"] for line in open(path)}
        assert all(host_shard(i, 2) == h for i in ids)
  records = list(iter_records(str(teacher / "samples")))
  keys = [(r["prompt_id"], r["sample_index"]) for r in records]
  assert len(keys) == len(set(keys)) == 6 * 2  # 6 prompts at k_max = 2, each once
  assert len({host_shard(p, 2) for p, _ in keys}) == 2  # both hosts had prompts

  # Cells dealt round robin: k1 on host 0, k2 on host 1; each host's students its own.
  for cell in ("k1-longest-s0", "k2-longest-s0"):
    assert (workdir / "cells" / cell / "summary.json").exists(), cell
  h0 = glob.glob(str(workdir / "shared" / "host-000" / "students" / "*" / "trained.json"))
  assert len(h0) == 1  # at k=1 random, first and longest all pick the only sample
  arms_k1 = json.load(open(workdir / "cells" / "k1-longest-s0" / "arms.json"))
  assert len({arms_k1[a]["student"] for a in ("random", "first", "longest")}) == 1
  arms_k2 = json.load(open(workdir / "cells" / "k2-longest-s0" / "arms.json"))
  assert all("host-001" in arms_k2[a]["export"] for a in ("random", "first", "longest"))

  with open(workdir / "sweep.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert [(r["k"], r["target"], r["metric"]) for r in rows] == [
      ("1", "longest", "length_words"), ("2", "longest", "length_words")]
  k1 = rows[0]
  assert k1["targeted"] == k1["first"] == k1["random"] != ""  # one student, same answers
  assert float(k1["targeted_minus_random"]) == 0.0
  assert "| longest | length_words | 0 | 2 |" in (workdir / "sweep.md").read_text()
  assert (workdir / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # Selection at k=2 really saw two samples per prompt, at k=1 one.
  for cell, k in (("k1-longest-s0", 1), ("k2-longest-s0", 2)):
    ablation = json.load(open(workdir / "cells" / cell / "summary.json"))["ablation"]
    assert [r["j"] for r in ablation["rows"]] == list(range(1, k + 1))
