"""No config key is accepted and dropped: every leaf of configs/active_inheritance.py and
of each stage config, changed alone, reaches the resolved stage configs or is refused by
name; keys the experiment sets itself and keys that do not exist are refused in one line."""

import dataclasses
import os
import subprocess
import sys

import ml_collections
import pytest

from ai_jax import config_files
from ai_jax.experiment import plan as plan_lib
from ai_jax.stages import sample as sample_stage
from ai_jax.stages import score as score_stage
from ai_jax.stages import select as select_stage
from ai_jax.training import trainer
from config_leaves import assert_every_leaf_reaches
from config_leaves import leaves as _leaves
from conftest import requires_embedded, subprocess_env
from configs import active_inheritance as ai_config
from configs import sample as sample_config
from configs import score as score_config
from configs import select as select_config
from configs import train as train_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _walk(config, resolve, errors, tmp_path):
  assert_every_leaf_reaches(config, lambda c: resolve(c, tmp_path), errors,
                            section_prefix="config.")


# ---------------------------------------------------------------- the experiment

def _resolved_plan(config, tmp_path) -> dict:
  p = plan_lib.plan(config, str(tmp_path / "run"))
  return {"stages": p.stages.to_dict(), "arms": p.arms, "modes": p.modes,
          "train_steps": p.train_steps, "dirs": dataclasses.asdict(p.dirs),
          "prompt_sets": {k: [r["prompt_id"] for r in v] for k, v in p.prompt_sets.items()}}


@requires_embedded
@pytest.mark.parametrize("arg", ["smoke", "default"])
def test_every_experiment_leaf_reaches_a_stage_or_is_refused(arg, tmp_path):
  _walk(ai_config.get_config(arg), _resolved_plan, plan_lib.ExperimentConfigError, tmp_path)


def test_experiment_config_has_no_governed_key():
  flat = dict(_leaves(ai_config.get_config("smoke").to_dict()))
  for key in plan_lib.GOVERNED:
    assert not any(k == key or k.startswith(key + ".") for k in flat), key


@requires_embedded
def test_governed_key_put_back_is_refused_naming_its_governor(tmp_path):
  c = ai_config.get_config("smoke")
  c.sample.prompts = ml_collections.ConfigDict({"path": "mine.jsonl"})
  with pytest.raises(plan_lib.ExperimentConfigError, match=r"config\.prompts\.train"):
    plan_lib.plan(c, str(tmp_path))


def test_select_refuses_strategy_and_arms_together():
  c = select_config.get_config()
  c.arms = ml_collections.ConfigDict({"a": {"name": "best", "metric": "mtld"}})
  with pytest.raises(ValueError, match="both set"):
    select_stage.settings(c)
  c.strategy = ml_collections.ConfigDict()
  assert list(select_stage.settings(c).arms) == ["a", "random", "first"]


# ---------------------------------------------------------------- stage configs

def _plain(settings) -> dict:
  d = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
  if "options" in d:
    d["options"] = dataclasses.asdict(d["options"])
  if "scorers" in d:
    d["scorers"] = settings.columns()
  if "arms" in d and isinstance(settings, select_stage.SelectSettings):
    d["arms"] = settings.arm_configs()
  return d


STAGE_CONFIGS = {
    "sample": (sample_config, sample_stage.settings, (ValueError, FileNotFoundError)),
    "score": (score_config, score_stage.settings, (ValueError, KeyError)),
    "select": (select_config, select_stage.settings, ValueError),
    "train": (train_config, trainer.settings, ValueError),
}


@requires_embedded
@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_every_stage_config_leaf_reaches_its_settings(stage, tmp_path):
  module, settings, errors = STAGE_CONFIGS[stage]
  _walk(module.get_config(), lambda c, _: _plain(settings(c)), errors, tmp_path)


# ---------------------------------------------------------------- command lines

def test_unknown_override_is_one_line_naming_the_keys():
  with pytest.raises(config_files.ConfigKeyError) as e:
    config_files.check_key(sample_config.get_config(), "sampling.kk")
  assert "config.sampling has no key 'kk'" in str(e.value)
  assert "max_new_tokens" in str(e.value)  # the keys that do exist there


@pytest.mark.parametrize("argv, expected", [
    (["-m", "ai_jax.sample", "--config", "configs/sample.py:smoke", "--config.sampling.kk=3"],
     "config.sampling has no key 'kk'"),
    (["-m", "experiments.active_inheritance", "--config", "configs/active_inheritance.py:smoke",
      "--config.sample.prompts.path=mine.jsonl"],
     "config.sample.prompts.path is set by the experiment from config.prompts.train"),
])
def test_cli_refuses_bad_override_in_one_line(argv, expected, tmp_path):
  proc = subprocess.run([sys.executable, *argv, "--workdir", str(tmp_path)], cwd=REPO,
                        env=subprocess_env(), capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode != 0
  assert expected in proc.stderr
  assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_sweep_config_has_no_key_a_cell_sets_itself():
  from ai_jax.experiment import sweep
  from configs import sweep as sweep_config
  c = sweep_config.get_config("smoke")
  flat = dict(_leaves(c.to_dict()))
  for key in sweep.GOVERNED:
    assert not any(k == key or k.startswith(key + ".") for k in flat), key
  c.experiment.seed = 3  # put back by a config file: refused, naming what governs it
  with pytest.raises(plan_lib.ExperimentConfigError, match=r"config\.seeds"):
    sweep.cell_config(c, sweep.cells(c)[0], "/tmp/unused", (0, 1))
