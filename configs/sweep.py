r"""A grid of active-inheritance runs: samples per prompt k x targeted metric x seed.

  python -m experiments.sweep --config configs/sweep.py:smoke --workdir /tmp/sweep
  python -m experiments.sweep --config configs/sweep.py --workdir runs/sweep \
      --config.k_values="(1,2,4)" --config.seeds="(0,1,2)"

The teachers sample once, at k_max = max(k_values); each cell selects from the first k of
those samples (what a k run would have drawn: each sample's randomness is keyed by its
index). A seed changes the training order and the random baseline's draw, not the
teacher samples nor the evaluation's sampling. Students with equal training sets and
settings are trained and evaluated once (k=1 makes every arm the first sample).

Args: "" (the default experiment, k in {1, 2, 4}, length and MTLD targets, one seed),
"smoke" (tiny; tests and CI).
"""

import importlib.util
import os

import ml_collections

from ai_jax.experiment import plan, sweep


def _experiment_config(arg: str):
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "active_inheritance.py")
  spec = importlib.util.spec_from_file_location("_ai_jax_config_active_inheritance", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = arg or "default"
  if arg not in ("default", "smoke"):
    raise ValueError(f"configs/sweep.py takes '' or 'smoke', got {arg!r}")
  c = ml_collections.ConfigDict()
  c.experiment = _experiment_config("smoke" if arg == "smoke" else "default")
  c.k_values = (1, 2, 4)
  c.seeds = (0,)
  # Target name -> selection strategy; each cell trains one targeted arm beside the
  # random and first-sample baselines (and reports the untuned student).
  c.targets = ml_collections.ConfigDict({
      "longest": {"name": "best", "metric": "length_words", "maximize": True},
      "most_diverse": {"name": "best", "metric": "mtld", "maximize": True}})
  c.table_mode = "greedy"      # the evaluation mode the combined table reads
  c.barrier_timeout_s = 24 * 3600.0  # file barrier between simulated hosts
  if arg == "smoke":
    c.k_values = (1, 2)
    c.targets = ml_collections.ConfigDict({
        "longest": {"name": "best", "metric": "length_words", "maximize": True}})
    for mode in ("sampled", "toxicity"):
      c.experiment.eval.modes[mode].enabled = False
    c.experiment.train.mesh_shape = (2, 1)
  # What each cell sets itself (ai_jax.experiment.sweep.GOVERNED) is not a key here.
  return plan.remove_governed(c, sweep.GOVERNED)
