"""Selecting one sample per prompt for fine-tuning, plus the random/first baselines.

  python -m ai_jax.select --config configs/select.py --workdir DIR
  python -m ai_jax.select --config configs/select.py --workdir DIR \
      --config.strategy.metric=mtld

The strategy is any of ai_jax.selection.strategies.from_config's: best, worst, random,
first, weighted, pareto, threshold, self_consistency. For a multi-objective strategy,
write a config file that sets e.g.
  c.strategy = {"name": "weighted", "weights": {"length_words": 1.0, "toxicity_offline": -1.0},
                "normalize": "zscore", "exclude_cut": False}

Args: "" (longest answer by words, the paper's length target).
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = arg or "default"
  if arg not in ("default", "smoke"):
    raise ValueError(f"configs/select.py takes '' or 'smoke', got {arg!r}")
  c = ml_collections.ConfigDict()
  c.strategy = ml_collections.ConfigDict(
      {"name": "best", "metric": "length_words", "maximize": True, "exclude_cut": False})
  c.arm_name = ""                    # "" = derived, e.g. "best_length_words"
  c.baselines = ("random", "first")  # reported beside every targeted arm
  c.seed = 0                         # the random baseline's draw (keyed per prompt)
  c.prompts_path = ""                # "" = the prompts in DIR/sample_config.json
  c.ablation = ml_collections.ConfigDict(
      {"enabled": True, "metric": "", "num_bootstrap": 1000})  # metric "" = strategy.metric
  if arg == "smoke":
    c.ablation.num_bootstrap = 200
  return c
