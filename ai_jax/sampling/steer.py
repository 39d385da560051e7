"""Host side of the STEER decoder (O'Neill et al. 2023, arXiv 2308.07645): its settings,
the pool of negative examples, and the three streams the jitted decoder runs.

The teacher of a sample run (config.model.path) is the expert E; `steer.base_path` is the
base model B it was fine-tuned from. Every step scores

  s = (1 + gamma) log p_E(x | c) - gamma log p_B(x | c) - eta log p_E(x | n + generated)

(`processors.Steer`), where c is the prompt and n a negative prompt made of
`num_negatives` examples drawn from the pool, one negative prompt per sample.

The pool is the task's real examples (`steer.real_path`) plus the synthetic samples
generated so far. So that a resumed, re-batched or extended run draws the same negatives,
"so far" is defined by the prompts' order, not by when a batch ran: prompts are cut, in
their input order, into rounds of `steer.round_prompts`; sample j of a prompt in round r
draws from the real examples plus the samples j' <= j of the prompts in rounds before r.
Rounds run in order, each after the previous one is stored. The draw itself is keyed by
(seed, prompt_id, sample_index) and the pool's size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Sequence

import numpy as np

from ai_jax.sampling import decode, processors

DECODERS = ("plain", "steer")
EXAMPLES_FIELD = "{examples}"


@dataclasses.dataclass(frozen=True)
class SteerSettings:
  """configs/sample.py's `steer` block, checked (no weights read)."""
  base_path: str                  # resolved path of the base model
  gamma: float
  eta: float
  num_negatives: int              # N
  real_path: str
  real_field: str
  negative_template: str          # holds "{examples}"
  negative_separator: str
  round_prompts: int

  def processor(self) -> processors.Steer:
    return processors.Steer(self.gamma, self.eta)


def check_weight(name: str, value) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
      float(value)) or value < 0:
    raise ValueError(f"{name} must be a number >= 0, got {value!r}; the paper sweeps it over "
                     "[0, 1] (defaults gamma 0.2, eta 0.6)")
  return float(value)


def settings_from_config(config) -> SteerSettings | None:
  """The STEER settings when `sampling.decoder` is "steer", None when it is "plain"; a
  changed `steer.*` key under the plain decoder is an error, never ignored."""
  from ai_jax import loading
  decoder = config.sampling.get("decoder", "plain")
  if decoder not in DECODERS:
    raise ValueError(f"sampling.decoder={decoder!r}; choose one of {DECODERS}")
  block = config.get("steer")
  if decoder == "plain":
    if block is not None:
      changed = sorted(k for k, v in block.items() if v != default_block()[k])
      if changed:
        raise ValueError(f"steer.{', steer.'.join(changed)} set but sampling.decoder is "
                         "'plain'; set --config.sampling.decoder=steer or drop them")
    return None
  if block is None:
    raise ValueError("sampling.decoder='steer' needs a `steer` block (configs/sample.py)")
  unknown = sorted(set(block) - set(default_block()))
  if unknown:
    raise ValueError(f"unknown steer keys {unknown}; known: {sorted(default_block())}")
  s = {**default_block(), **block.to_dict()}
  n = s["num_negatives"]
  if isinstance(n, bool) or not isinstance(n, int) or n < 1:
    raise ValueError(f"steer.num_negatives must be an integer >= 1, got {n!r}")
  if EXAMPLES_FIELD not in s["negative_template"]:
    raise ValueError(f"steer.negative_template must contain {EXAMPLES_FIELD}, got "
                     f"{s['negative_template']!r}")
  r = s["round_prompts"]
  if isinstance(r, bool) or not isinstance(r, int) or r < 1:
    raise ValueError(f"steer.round_prompts must be an integer >= 1, got {r!r}")
  if not s["base_path"]:
    raise ValueError("steer.base_path is empty: name the base model the expert "
                     "(config.model.path) was fine-tuned from")
  if not s["real_path"]:
    raise ValueError("steer.real_path is empty: name the task's real examples (a prompt "
                     "file or builtin:NAME), the negative prompts' pool")
  if config.host.num_hosts > 1:
    raise ValueError("sampling.decoder='steer' runs on one host: its pool grows with the "
                     "samples of earlier rounds, which other hosts write concurrently; set "
                     "host.num_hosts=1")
  return SteerSettings(
      base_path=loading.resolve_model_path(s["base_path"]), gamma=check_weight("steer.gamma",
                                                                          s["gamma"]),
      eta=check_weight("steer.eta", s["eta"]), num_negatives=n, real_path=s["real_path"],
      real_field=s["real_field"], negative_template=s["negative_template"],
      negative_separator=s["negative_separator"], round_prompts=r)


def default_block() -> dict:
  """The `steer` block of configs/sample.py, with its defaults."""
  return {"base_path": "", "gamma": 0.2, "eta": 0.6, "num_negatives": 10, "real_path": "",
          "real_field": "", "negative_template": EXAMPLES_FIELD,
          "negative_separator": "\n\n", "round_prompts": 8}


def load_real(s: SteerSettings) -> list[tuple[str, str]]:
  """(pool id, text) of the real examples; an empty set or one smaller than N is refused."""
  from ai_jax.data import prompts as prompts_lib
  rows = prompts_lib.load_prompt_set(s.real_path, field=s.real_field or None)
  real = [(f"real:{r['prompt_id']}", prompts_lib.prompt_text(r["prompt"])) for r in rows]
  if not real:
    raise ValueError(f"steer.real_path {s.real_path!r} holds no examples; the negative pool "
                     "needs the task's real data")
  if s.num_negatives > len(real):
    raise ValueError(f"steer.num_negatives={s.num_negatives} is larger than the pool: "
                     f"steer.real_path {s.real_path!r} has {len(real)} examples (the first "
                     "round draws from them alone); lower steer.num_negatives")
  return real


def real_digest(real: Sequence[tuple[str, str]]) -> str:
  h = hashlib.sha256()
  for pool_id, text in real:
    h.update(f"{pool_id}\x00{text}\x01".encode())
  return h.hexdigest()[:16]


def check_tokenizers(expert_path: str, base_path: str) -> None:
  """Expert and base must share a tokenizer (their logits are added token by token)."""
  from ai_jax import loading
  expert, _ = loading.load_tokenizer(expert_path)
  base, _ = loading.load_tokenizer(base_path)
  same = (expert.backend.get_vocab(with_added_tokens=True)
          == base.backend.get_vocab(with_added_tokens=True)
          and (expert.bos_id, expert.eos_id, expert.pad_id) == (base.bos_id, base.eos_id,
                                                                  base.pad_id))
  if not same:
    raise ValueError(f"the expert (config.model.path = {expert_path}) and the base model "
                     f"(steer.base_path = {base_path}) have different tokenizers; STEER adds "
                     "their log-probabilities token by token, so the base must be the model "
                     "the expert was fine-tuned from")


def fingerprint_fields(s: SteerSettings, real: Sequence[tuple[str, str]]) -> dict:
  from ai_jax import loading
  return {"name": "steer", **s.processor().settings(), "num_negatives": s.num_negatives,
          "base": loading.model_identity(s.base_path),
          "real": {"path": s.real_path, "field": s.real_field, "num_examples": len(real),
                   "digest": real_digest(real)},
          "negative_template": s.negative_template,
          "negative_separator": s.negative_separator, "round_prompts": s.round_prompts}


def rounds(prompts: Sequence[dict], round_prompts: int) -> list[list[dict]]:
  return [list(prompts[i:i + round_prompts]) for i in range(0, len(prompts), round_prompts)]


@dataclasses.dataclass(frozen=True)
class NegativePool:
  """The pool one round draws from: the real examples, then the earlier rounds' samples
  as (prompt_id, sample_index, text), in input order."""
  real: tuple[tuple[str, str], ...]
  synthetic: tuple[tuple[str, int, str], ...]

  def candidates(self, sample_index: int) -> list[tuple[str, str]]:
    return list(self.real) + [(f"{p}/{j}", text) for p, j, text in self.synthetic
                              if j <= sample_index]

  def draw(self, seed: int, prompt_id: str, sample_index: int, n: int
           ) -> list[tuple[str, str]]:
    from ai_jax.sampling.sampler import prompt_hash
    pool = self.candidates(sample_index)
    # A generator of its own per sample, keyed like the decoder's randomness.
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, prompt_hash(prompt_id),
                                 int(sample_index), 0x57EE])
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]


def negative_text(s: SteerSettings, examples: Sequence[tuple[str, str]]) -> str:
  return s.negative_template.replace(
      EXAMPLES_FIELD, s.negative_separator.join(text for _, text in examples))


def streams(s: SteerSettings, expert, base, pool: NegativePool, options) -> Any:
  """The sampler's `Guidance` for one round: expert and base on the prompt, the expert on
  each sample's negative prompt (rendered like the prompts, tail kept if too long)."""
  from ai_jax.sampling import sampler
  tok = expert.tokenizer
  limit = (options.max_context or expert.config.max_position_embeddings) - options.max_new_tokens

  def row_prompt(prompt_id: str, sample_index: int):
    examples = pool.draw(options.seed, prompt_id, sample_index, s.num_negatives)
    text = negative_text(s, examples)
    ids = tok.encode_chat(text) if options.chat_template else tok.encode(text, add_bos=True)
    info: dict[str, Any] = {"steer_negatives": [pool_id for pool_id, _ in examples]}
    if len(ids) > limit:
      info["steer_negative_truncated_tokens"] = len(ids) - limit
      ids = ids[-limit:]
    return ids, info

  return sampler.Guidance(
      processor=s.processor(),
      streams=(decode.Stream(0), decode.Stream(1), decode.Stream(0, per_row=True)),
      models=(expert, base), row_prompt=row_prompt)
