"""`python -m ai_jax.profile` end to end on a tiny random model with SmolLM2's tokenizer
(configs/profile.py:smoke: 4 items of each shipped suite): its outputs, a resume that
rescores nothing, and the refusals that come before any weights load."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ai_jax.run import layout
from ai_jax.stages import profile as profile_stage
from configs import profile as profile_config
from conftest import REPO, subprocess_env

SHIPPED = ("stereoset", "crows_pairs", "bbq", "openbookqa", "piqa")


def _run(workdir, *extra):
  return subprocess.run([sys.executable, "-m", "ai_jax.profile", "--config",
                         "configs/profile.py:smoke", "--workdir", str(workdir), *extra],
                        cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                        timeout=900)


def test_cli_profiles_and_resumes(tmp_path, tiny_student_dir):
  out = layout.ProfileDir(str(tmp_path / "p"))
  proc = _run(out.root, f"--config.model.path={tiny_student_dir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.load(open(out.summary))
  assert set(summary["suites"]) == set(SHIPPED)
  for name in SHIPPED:
    fig = summary["suites"][name]["models"][tiny_student_dir]
    assert fig["n_items"] == 4 and fig["skipped"] == {}
    for metric in summary["suites"][name]["headline"]:
      assert metric in fig["metrics"]
  assert summary["suites"]["bbq"]["models"][tiny_student_dir]["metrics"]["accuracy"][
      "value"] is not None
  report = open(out.report).read()
  assert "### stereoset" in report and "| ss (50 = unbiased)" in report
  for name in ("openbookqa", "piqa"):
    assert os.path.getsize(out.reliability_plot(name)) > 1000
  stamps = {n: os.path.getmtime(out.suite(n)) for n in SHIPPED}
  again = _run(out.root, f"--config.model.path={tiny_student_dir}")
  assert again.returncode == 0, again.stderr[-3000:]
  assert "profile " not in again.stdout  # no suite rescored
  assert {n: os.path.getmtime(out.suite(n)) for n in SHIPPED} == stamps
  # Another limit is another subset: that suite alone is scored again.
  third = _run(out.root, f"--config.model.path={tiny_student_dir}",
               "--config.suites.piqa.limit=3")
  assert third.returncode == 0 and "profile piqa: 3 items" in third.stdout
  assert os.path.getmtime(out.suite("stereoset")) == stamps["stereoset"]


def test_refusals_before_loading(tmp_path, monkeypatch):
  c = profile_config.get_config("smoke")
  c.suites.hellaswag.enabled = True
  with pytest.raises(ValueError, match="hellaswag.*no data of its own"):
    profile_stage.run(c, str(tmp_path / "a"))
  c = profile_config.get_config("smoke")
  c.suites.bbq.path = "package:no_such_data_pkg/bbq"
  with pytest.raises(FileNotFoundError, match="no_such_data_pkg.*not installed"):
    profile_stage.run(c, str(tmp_path / "b"))
  c = profile_config.get_config("smoke")
  for s in c.suites.values():
    s.enabled = False
  with pytest.raises(ValueError, match="no profile suite is enabled"):
    profile_stage.run(c, str(tmp_path / "c"))
  c = profile_config.get_config("smoke")
  c.scoring.too_long = "drop"
  with pytest.raises(ValueError, match="too_long='drop'"):
    profile_stage.run(c, str(tmp_path / "d"))
  c = profile_config.get_config("smoke")
  c.suites.stereo = {"enabled": True, "path": "", "limit": 0}
  with pytest.raises(ValueError, match="unknown profile suite 'stereo'"):
    profile_stage.run(c, str(tmp_path / "f"))
  proc = _run(tmp_path / "e", "--config.suites.stereo.enabled=True")
  assert proc.returncode != 0 and "stereo" in proc.stderr
  assert not os.path.exists(tmp_path / "a" / "suites")
