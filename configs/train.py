"""Supervised fine-tuning of the student on a selected training set.

  python -m ai_jax.train --config configs/train.py --workdir DIR \
      --config.data.path=RUN/selection/best_length_words/train.jsonl
  python -m ai_jax.train --config configs/train.py:lora --workdir DIR --config.data.path=...

Args: "" (full fine-tuning, 2 epochs), "lora" (rank-16 adapters on q/k/v/o), "smoke"
(a few steps on short sequences, for tests and CI).
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = arg or "default"
  if arg not in ("default", "lora", "smoke"):
    raise ValueError(f"configs/train.py takes '', 'lora' or 'smoke', got {arg!r}")
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.mesh_shape = (-1, 1)              # (data, model): FSDP over data, tensor-parallel over model

  c.model = ml_collections.ConfigDict()
  c.model.path = ""                   # "" = embedded SmolLM2-135M-Instruct; or .gguf / HF dir
  c.model.compute_dtype = "float32"   # "bfloat16" on GPU/TPU (f32 master weights either way)

  c.data = ml_collections.ConfigDict()
  c.data.path = ""                    # a selection train.jsonl ({prompt, completion, ...})
  c.data.max_len = 512                # tokens per example, prompt included
  c.data.too_long = "truncate"        # "truncate" (cut the completion's tail) | "skip" | "error"
  c.data.min_bucket = 64              # batches pad to power-of-two lengths >= this
  c.data.chat_template = True

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 8              # examples per optimizer step (global)
  c.train.grad_accum_steps = 1        # micro-batches per step (batch_size must divide)
  c.train.epochs = 2
  c.train.steps = 0                   # > 0 overrides epochs
  c.train.stop_after_steps = 0        # > 0: stop this process after that many steps (resumable)

  c.optim = ml_collections.ConfigDict()
  c.optim.learning_rate = 2e-5
  c.optim.warmup_steps = 10
  c.optim.decay = "cosine"            # "cosine" | "linear" | "constant"
  c.optim.end_lr_fraction = 0.1
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.weight_decay = 0.0
  c.optim.decay_norms_and_embeddings = False
  c.optim.grad_clip_norm = 1.0

  c.lora = ml_collections.ConfigDict()
  c.lora.rank = 0                     # 0 = full fine-tuning
  c.lora.alpha = 32.0
  c.lora.targets = ("q_proj", "k_proj", "v_proj", "o_proj")

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 50
  c.checkpoint.keep = 3

  c.export = ml_collections.ConfigDict()
  c.export.hf = True

  if arg == "lora":
    c.lora.rank = 16
    c.optim.learning_rate = 2e-4
  if arg == "smoke":
    c.data.max_len = 64
    c.data.min_bucket = 16
    c.train.batch_size = 2
    c.train.steps = 4
    c.optim.warmup_steps = 1
    c.optim.learning_rate = 1e-4
    c.checkpoint.every_steps = 2
  return c
