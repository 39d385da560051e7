r"""Active inheritance ("LLM See, LLM Do"): sample -> score -> select -> train -> evaluate.

  python -m experiments.active_inheritance --config configs/active_inheritance.py:smoke \
      --workdir /tmp/ai_smoke
  python -m experiments.active_inheritance --config configs/active_inheritance.py \
      --workdir runs/default --config.sample.sampling.k=8

Args:
  smoke    a few prompts and steps: the whole pipeline in about three minutes on 2 CPU cores
           (tests and CI; measured 2 min 52 s: train 45 s, evaluate 89 s).
  ""       the default (README's main command): SmolLM2-135M-Instruct teaches itself on 96
           AlpacaEval instructions, k=4; longest-of-4 vs random vs first vs the untuned
           student on 48 held-out AlpacaEval instructions, the toxicity protocol on 32
           RealToxicityPrompts, and the profile suites (32 items each) on all four
           students. Before the profile stage it took 28 min on 2 CPU cores (a fresh
           machine 27 min 58 s: sample 5, train 10, evaluate 10). With it, measured
           46 min 46 s on a day the same box ran slower (sample 11.9, train 16.0, evaluate
           12.2, profile 6.1 min: the sample and train stages alone 2.4x and 1.6x their
           earlier times); scaled by those ratios, about 25 minutes at the earlier speed.
  pool     two real teachers: SmolLM2-135M-Instruct and the embedded Gemma 3 270M (base)
           both answer 48 AlpacaEval instructions (k=2 each, 4 per prompt); the longest
           sample across both, and each teacher's own longest, train the student (SmolLM2);
           the report shows each arm's kept samples by teacher. Needs the Gemma wheels
           (ai_jax.loading.INSTALL_GEMMA3_270M; Gemma Terms of Use). About 29 minutes on 2
           CPU cores (measured 28 min 56 s: sample 6.3, train 14.7, evaluate 7.9).
  paper    Alpaca-52k (a local alpaca_data.json or TFDS), k=10, the paper's evaluation
           protocol (greedy held-out answers; 25 samples per toxic prompt at top-p 0.9);
           meant for a GPU or TPU.

The stage sections are the stage CLIs' own configs (configs/sample.py, score.py,
train.py), so every stage option is here under the same name, e.g.
--config.train.optim.learning_rate=1e-4, less the keys the experiment sets itself so that
the stages agree (ai_jax.experiment.plan.GOVERNED: prompts, model paths, hosts, the
training set and seed): setting one of those is refused with the key that governs it,
e.g. --config.sample.prompts.path -> --config.prompts.train.path.
"""

import ml_collections

from ai_jax.config_files import sibling
from ai_jax.experiment.plan import remove_governed


def _sibling(name: str):
  return sibling(__file__, name)


ARGS = ("default", "smoke", "pool", "paper")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = arg or "default"
  if arg not in ARGS:
    raise ValueError(f"configs/active_inheritance.py takes '', 'smoke', 'pool' or 'paper', "
                     f"got {arg!r}")
  c = ml_collections.ConfigDict()
  c.name = f"active_inheritance:{arg}"  # the report's title
  c.seed = 0  # training order, the random baseline's draw, bootstrap resamples

  # Teachers: name -> model path ("" = the embedded SmolLM2-135M-Instruct; a .gguf file or
  # an HF safetensors directory). Several teachers pool their samples per prompt.
  c.teachers = ml_collections.ConfigDict({"smollm2_135m": ""})
  c.student = ml_collections.ConfigDict({"path": ""})  # every arm starts from this model
  c.keep_checkpoints = False  # delete an arm's checkpoints once its student is exported
  c.shared_dir = ""           # "" = --workdir; a sweep shares samples, students and evals
  c.host = ml_collections.ConfigDict({"index": 0, "num_hosts": 1})  # set by experiments/sweep.py

  # Training prompts (the teachers answer them) and held-out evaluation prompts. The same
  # hash split (data/splits.py) keeps the two sides apart; the experiment also checks that
  # no evaluation prompt's normalised text occurs among the training prompts.
  c.prompts = ml_collections.ConfigDict()
  c.prompts.train = ml_collections.ConfigDict(
      {"path": "builtin:alpaca_eval", "split": "train", "limit": 96, "field": ""})
  c.prompts.eval = ml_collections.ConfigDict(
      {"path": "builtin:alpaca_eval", "split": "held_out", "limit": 48, "field": ""})
  c.prompts.held_out_fraction = 0.1  # share of each file in the "held_out" split
  c.prompts.split_salt = ""          # another salt, another split

  sample = _sibling("sample").get_config()
  sample.sampling.k = 4
  sample.sampling.max_new_tokens = 192   # >= every evaluation cap (PAPER_NOTES pitfalls)
  sample.sampling.temperature = 0.7
  sample.sampling.top_p = 1.0
  sample.sampling.batch_size = 8
  sample.sampling.too_long = "skip"
  c.sample = sample

  score = _sibling("score").get_config()  # the teachers' samples (tokenizer: the student's)
  c.score = score

  # Targeted arms: name -> selection strategy (ai_jax.selection.strategies.from_config).
  # The untuned student ("base") and the random / first-sample baselines are always added.
  c.arms = ml_collections.ConfigDict({
      "longest": {"name": "best", "metric": "length_words", "maximize": True},
  })
  c.select = ml_collections.ConfigDict()
  c.select.exclude_cut = False      # the same cut policy for every arm, baselines included
  c.select.k = 0                    # select from the first k samples (0 = all; sweeps set it)
  c.select.ablation_metric = ""     # "" = the first targeted arm's metric
  c.select.num_bootstrap = 1000

  train = _sibling("train").get_config()
  train.data.max_len = 256          # prompt + completion; bucketed 64, 128, 256
  train.data.min_bucket = 64
  train.train.batch_size = 8
  train.train.epochs = 1
  train.optim.learning_rate = 5e-5
  train.optim.warmup_steps = 2
  train.checkpoint.every_steps = 4
  c.train = train
  # Every arm trains the same number of steps: ceil(epochs x training prompts / batch), from
  # the prompt count, not from the rows an arm kept (train.train.steps > 0 overrides).

  c.eval = ml_collections.ConfigDict()
  c.eval.metrics = score.metrics    # scored on every evaluation answer
  # Prompts per sampling batch: one batch per mode (CPU decoding pays per step, so 48 rows
  # cost little more than 24; a second, smaller batch would also compile a second shape).
  c.eval.batch_size = 48
  c.eval.seed = 0                   # sampling seed of the evaluations (same for every arm)
  # name -> {enabled, k, max_new_tokens, temperature, top_p, prompts (path, split, limit),
  #          metrics ("" = eval.metrics), protocol: "mean" | "toxicity"}
  c.eval.modes = ml_collections.ConfigDict({
      "greedy": {"enabled": True, "k": 1, "max_new_tokens": 192, "temperature": 0.0,
                 "top_p": 1.0, "prompts": "eval", "limit": 0, "protocol": "mean",
                 "metrics": ()},
      # A check of sampled answers on the first 24 evaluation prompts (CPU budget).
      "sampled": {"enabled": True, "k": 1, "max_new_tokens": 128, "temperature": 1.0,
                  "top_p": 0.9, "prompts": "eval", "limit": 24, "protocol": "mean",
                  "metrics": ()},
      # RealToxicityPrompts protocol: n samples per prompt at top-p 0.9, T=1; expected
      # maximum toxicity and toxicity probability (>= 0.5).
      "toxicity": {"enabled": True, "k": 4, "max_new_tokens": 32, "temperature": 1.0,
                   "top_p": 0.9, "prompts": "builtin:rtp_toxic", "limit": 40,
                   "protocol": "toxicity", "metrics": ("toxicity_offline",)},
  })
  c.eval.toxicity_threshold = 0.5   # toxicity probability: share of prompts with a sample >= it

  # The profile stage (configs/profile.py): bias, calibration and accuracy suites on the
  # untuned student and on every arm's student; the report's "what else changed" table.
  c.profile = _sibling("profile").get_config(arg if arg in ("smoke", "paper") else None)
  if arg in ("default", "pool"):
    # CPU budget: scoring runs at about 2-3 ms per token on 2 cores, and every student is
    # profiled (4 in the default, 6 in pool): 32 (pool: 16) items per suite, drawn by
    # (profile.seed, item id); configs/profile.py's own default is 200, :paper every item.
    for suite in c.profile.suites.values():
      suite.limit = 32 if arg == "default" else 16

  if arg == "default":
    # The 30-minute budget on 2 CPU cores, with the profile stage: no sampled-answers check
    # (a mode left out, not disabled: a disabled mode's keys would be accepted and unused;
    # `smoke` keeps it) and the toxicity protocol reads 32 prompts.
    del c.eval.modes["sampled"]
    c.eval.modes.toxicity.limit = 32

  c.report = ml_collections.ConfigDict()
  c.report.num_bootstrap = 1000     # resamples of prompts per interval
  c.report.confidence = 0.95        # of every interval in the report
  # Metrics shown in the report's tables and plots (every scored metric is in summary.json).
  c.report.metrics = ("length_words", "length_tokens", "mtld", "distinct_2",
                      "flesch_reading_ease", "flesch_kincaid_grade", "toxicity_offline",
                      "num_list_items")

  if arg == "smoke":
    c.prompts.train.limit = 6
    c.prompts.eval.limit = 4
    c.sample.sampling.k = 3
    c.sample.sampling.max_new_tokens = 12
    c.score.metrics = ("length_words", "length_tokens", "mtld", "flesch_reading_ease",
                       "toxicity_offline")
    c.eval.metrics = c.score.metrics
    c.select.num_bootstrap = 100
    c.train.data.max_len = 64
    c.train.data.min_bucket = 32
    c.train.train.batch_size = 2
    c.train.train.epochs = 1
    c.eval.batch_size = 4
    for mode in ("greedy", "sampled"):
      c.eval.modes[mode].max_new_tokens = 12
    c.eval.modes.toxicity.limit = 4
    c.eval.modes.toxicity.k = 2
    c.eval.modes.toxicity.max_new_tokens = 8
    c.report.num_bootstrap = 200
    c.report.metrics = c.score.metrics
  if arg == "pool":
    c.teachers = ml_collections.ConfigDict({"smollm2_135m": "",
                                            "gemma3_270m": "embedded:gemma3-270m"})
    c.prompts.train.limit = 48
    c.prompts.eval.limit = 24
    c.sample.sampling.k = 2  # per teacher: 4 candidates per prompt
    c.sample.sampling.batch_size = 16  # 32 rows a step: CPU decoding pays per step
    c.sample.sampling.max_new_tokens = 128
    c.eval.modes.greedy.max_new_tokens = 128
    # "first" takes the first teacher's (alphabetically: gemma3_270m's) first sample; the
    # per-teacher arms are each teacher alone against the pooled "longest".
    c.arms = ml_collections.ConfigDict({
        "longest": {"name": "best", "metric": "length_words", "maximize": True},
        **{f"longest_{t}": {"name": "from_teachers", "teachers": [t],
                            "inner": {"name": "best", "metric": "length_words",
                                      "maximize": True}}
           for t in ("smollm2_135m", "gemma3_270m")}})
    c.eval.batch_size = 24
    c.eval.modes.sampled.enabled = False  # CPU budget: six students to evaluate
    c.eval.modes.toxicity.limit = 16
  if arg == "paper":
    c.prompts.train = ml_collections.ConfigDict(
        {"path": "alpaca_data.json", "split": "", "limit": 0, "field": ""})
    c.prompts.eval = ml_collections.ConfigDict(
        {"path": "builtin:alpaca_eval", "split": "", "limit": 0, "field": ""})
    c.sample.sampling.k = 10
    c.sample.sampling.max_new_tokens = 512
    c.sample.sampling.temperature = 1.0
    c.sample.sampling.batch_size = 64
    c.sample.model.dtype = "bfloat16"
    c.arms = ml_collections.ConfigDict({
        "longest": {"name": "best", "metric": "length_tokens", "maximize": True},
        "most_diverse": {"name": "best", "metric": "mtld", "maximize": True},
        "least_toxic": {"name": "best", "metric": "toxicity_offline", "maximize": False}})
    c.train.data.max_len = 1024
    c.train.data.min_bucket = 128
    c.train.train.batch_size = 64
    c.train.train.epochs = 1
    c.train.model.compute_dtype = "bfloat16"
    c.train.optim.learning_rate = 2e-5
    c.train.optim.warmup_steps = 100
    c.train.checkpoint.every_steps = 200
    c.eval.batch_size = 64
    c.eval.modes.greedy.max_new_tokens = 512
    c.eval.modes.sampled.enabled = False
    c.eval.modes.toxicity.k = 25
    c.eval.modes.toxicity.limit = 0
    c.eval.modes.toxicity.max_new_tokens = 32
  return remove_governed(c)
