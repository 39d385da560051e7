"""Selecting one sample per prompt for fine-tuning, plus the random/first baselines.

  python -m ai_jax.select --config configs/select.py --workdir DIR
  python -m ai_jax.select --config configs/select.py --workdir DIR \
      --config.strategy.metric=mtld

The strategy is any of ai_jax.selection.strategies.from_config's: best, worst, random,
first, weighted, pareto, threshold, from_teachers, self_consistency. For a multi-objective strategy,
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
  # One targeted arm: any strategy of ai_jax.selection.strategies.from_config ({} when
  # config.arms is set). exclude_cut=True drops samples cut by max_new_tokens, for the
  # baselines too.
  c.strategy = ml_collections.ConfigDict(
      {"name": "best", "metric": "length_words", "maximize": True, "exclude_cut": False})
  c.arm_name = ""                    # the arm's name; "" = derived, e.g. "best_length_words"
  # Several targeted arms {name: strategy} instead of config.strategy (then set
  # strategy = {}); their exclude_cut must agree. Set in a config file or by the experiment.
  c.arms = ml_collections.ConfigDict()
  c.baselines = ("random", "first")  # reported beside every targeted arm
  c.seed = 0                         # the random baseline's draw (keyed per prompt)
  c.prompts_path = ""                # "" = the prompts in DIR/sample_config.json
  c.max_samples_per_prompt = 0       # > 0: select among sample indices below it (a k-sweep)
  c.output_dir = ""                  # "" = DIR/selection
  # The best-of-j table and plot for j = 1..k; metric "" = the first targeted arm's (and
  # its direction).
  c.ablation = ml_collections.ConfigDict(
      {"enabled": True, "metric": "", "num_bootstrap": 1000})
  if arg == "smoke":
    c.ablation.num_bootstrap = 200
  return c
