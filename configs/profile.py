r"""Profile one model: social bias, calibration and accuracy by log-likelihood.

  python -m ai_jax.profile --config configs/profile.py --workdir runs/profile
  python -m ai_jax.profile --config configs/profile.py --workdir DIR \
      --config.model.path=DIR/students/<id>/export/hf --config.suites.mmlu.enabled=True

Args:
  ""       the default: 200 items of each shipped suite (StereoSet, CrowS-Pairs, BBQ,
           OpenBookQA, PIQA), drawn by (seed, item id); about 6 minutes for
           SmolLM2-135M on 2 CPU cores.
  smoke    4 items per suite, 50 resamples (tests and CI: few items, few shapes to compile).
  paper    every item of every suite, MMLU included (HellaSwag too once its path is set).

The suites and their formulas: ai_jax/profiling/suites/ (one module per family of suites);
where each data set comes from: ai_jax/data/builtin/README.md. The experiment
(configs/active_inheritance.py) runs this config's suites on every arm's student as its
`profile` stage, under `profile`.
"""

import ml_collections

ARGS = ("default", "smoke", "paper")
SHIPPED = ("stereoset", "crows_pairs", "bbq", "openbookqa", "piqa")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = arg or "default"
  if arg not in ARGS:
    raise ValueError(f"configs/profile.py takes '', 'smoke' or 'paper', got {arg!r}")
  c = ml_collections.ConfigDict()
  c.model = ml_collections.ConfigDict()
  c.model.path = ""            # "" = embedded SmolLM2-135M-Instruct; or a .gguf / HF dir
  c.model.dtype = "float32"    # compute dtype: "float32" or "bfloat16"
  c.mesh_shape = (-1, 1)       # (data, model); -1 = all remaining devices
  # name -> {enabled, path ("" = the suite's shipped data), limit (0 = every item)}
  c.suites = ml_collections.ConfigDict()
  for name in SHIPPED:
    c.suites[name] = {"enabled": True, "path": "", "limit": 200}
  c.suites.mmlu = {"enabled": False, "path": "", "limit": 200}
  # HellaSwag ships with labels nowhere offline: give a labelled JSONL to enable it.
  c.suites.hellaswag = {"enabled": False, "path": "", "limit": 200}
  c.scoring = ml_collections.ConfigDict()
  c.scoring.batch_tokens = 2048  # tokens per device batch (bounds the [rows, tokens, vocab] logits)
  c.scoring.max_contexts = 32    # contexts per device batch
  # An item longer than the model's context: "skip" (counted and reported), "truncate"
  # (drops the context's first tokens, as lm-eval-harness does) or "error".
  c.scoring.too_long = "skip"
  c.seed = 0                     # which items a limit keeps, and the bootstrap resamples
  c.num_bootstrap = 1000         # resamples of items per interval
  c.confidence = 0.95
  if arg == "smoke":
    for name in SHIPPED:
      c.suites[name].limit = 4
    c.num_bootstrap = 50
  if arg == "paper":
    for name in SHIPPED + ("mmlu", "hellaswag"):
      c.suites[name].limit = 0
    c.suites.mmlu.enabled = True
  return c
