"""Sampling k completions per prompt from a teacher.

  python -m ai_jax.sample --config configs/sample.py:smoke --workdir /tmp/run
  python -m ai_jax.sample --config configs/sample.py --workdir /tmp/run --config.sampling.k=4

Args: "" (default: k=10 for the 36 built-in prompts), "smoke" (seconds; tests and CI).
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = arg or "default"
  if arg not in ("default", "smoke"):
    raise ValueError(f"configs/sample.py takes '' or 'smoke', got {arg!r}")
  c = ml_collections.ConfigDict()

  c.model = ml_collections.ConfigDict()
  c.model.path = ""            # "" = embedded SmolLM2-135M-Instruct; or a .gguf / HF dir
  c.model.name = ""            # the teacher's name in the records; "" = the model file's name
  c.model.dtype = "float32"    # compute dtype: "float32" or "bfloat16"
  c.mesh_shape = (-1, 1)       # (data, model); -1 = all remaining devices

  c.prompts = ml_collections.ConfigDict()
  # A .jsonl/.json/.csv/.parquet file, "builtin:NAME" (default_prompts, alpaca_eval,
  # self_instruct_seed, rtp_toxic) or "tfds:NAME[/CONFIG]:SPLIT" (ai_jax.data.prompts).
  c.prompts.path = "builtin:default_prompts"
  c.prompts.limit = 0          # 0 = all prompts in the file
  c.prompts.field = ""         # "" = "prompt" (or Alpaca's instruction+input); a column name
  c.prompts.split = ""         # "" = all; "train" / "held_out": a hash split of the text
  c.prompts.held_out_fraction = 0.1  # share of prompts in the "held_out" split
  c.prompts.split_salt = ""    # salts the split's hash: another salt, another split

  c.sampling = ml_collections.ConfigDict()
  c.sampling.k = 10             # samples per prompt
  c.sampling.max_new_tokens = 256  # a sample cut here gets finish_reason "length"
  c.sampling.temperature = 1.0  # 0 = greedy
  c.sampling.top_k = 0          # 0 = off
  c.sampling.top_p = 1.0        # 1.0 = off
  c.sampling.seed = 0           # randomness keyed by (seed, prompt_id, sample_index)
  c.sampling.batch_size = 8     # prompts per batch; rows per batch = batch_size * k
  c.sampling.min_prompt_bucket = 32  # prompts pad to power-of-two lengths >= this
  # A prompt longer than the model's context: "error" stops the run, "truncate" keeps its
  # tail, "skip" records it with finish_reason "prompt_too_long".
  c.sampling.too_long = "error"
  c.sampling.chat_template = True  # wrap prompts in the model's chat template
  # "plain", or "steer": STEER (O'Neill et al. 2023) with config.model as the expert and the
  # settings below (ai_jax/sampling/steer.py); the paper samples it with top_k=10 at T=1.
  c.sampling.decoder = "plain"

  # Used only with sampling.decoder="steer"; under "plain" a changed key is an error.
  c.steer = ml_collections.ConfigDict()
  c.steer.base_path = ""        # the base model the expert was fine-tuned from (required)
  c.steer.gamma = 0.2           # contrastive expert guidance: (1+gamma) log p_E - gamma log p_B
  c.steer.eta = 0.6             # negative-prompt weight: - eta log p_E(x | negatives)
  c.steer.num_negatives = 10    # N examples per negative prompt, drawn per sample
  c.steer.real_path = ""        # the task's real examples (prompt file / builtin:NAME; required)
  c.steer.real_field = ""       # their text column ("" = "prompt")
  c.steer.negative_template = "{examples}"  # the negative prompt; {examples} = the N joined
  c.steer.negative_separator = "\n\n"
  # The pool (real + samples so far) grows per round of this many prompts, in input order.
  c.steer.round_prompts = 8

  c.output = ml_collections.ConfigDict()
  c.output.records_per_shard = 1000  # sample records per shard file of DIR/samples/

  # A host's share in a multi-host run (experiments/sweep.py sets it): the prompts whose
  # stable hash falls to this host, into its own shard files.
  c.host = ml_collections.ConfigDict({"index": 0, "num_hosts": 1})

  if arg == "smoke":
    c.prompts.limit = 4
    c.sampling.k = 2
    c.sampling.max_new_tokens = 8
    c.sampling.batch_size = 4
    c.output.records_per_shard = 4
  return c
