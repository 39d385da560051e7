"""Host side of sampling: tokenise, check lengths, bucket, batch, decode to records.

A record is one sample: {prompt_id, sample_index, text, num_tokens, finish_reason, ...}.
finish_reason is "stop" (a stop token ended it), "length" (cut by max_new_tokens) or
"prompt_too_long" (policy "skip"): a cut sample is never passed off as a finished one.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable, Iterator, Sequence

import jax
import numpy as np

from ai_jax.buckets import bucket_length
from ai_jax.run import layout
from ai_jax.sampling import decode
from ai_jax.sampling import strategies as strategies_lib

TOO_LONG_POLICIES = ("error", "truncate", "skip")


class PromptTooLongError(ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
  num_samples: int = 1                     # k completions per prompt
  max_new_tokens: int = 64
  strategy: Callable = strategies_lib.Greedy()
  seed: int = 0
  batch_size: int = 8                      # prompts per device batch (x k rows)
  min_prompt_bucket: int = 16              # prompt lengths round up to powers of two >= this
  too_long: str = "error"                  # "error" | "truncate" (keep the last tokens) | "skip"
  max_context: int | None = None           # default: the model's max_position_embeddings
  chat_template: bool = True               # render prompts with the model's chat template
  return_token_ids: bool = False
  first_sample_index: int = 0              # draw sample indices first .. first + k - 1

  def __post_init__(self):
    if self.num_samples < 1:
      raise ValueError(f"num_samples (k) must be >= 1, got {self.num_samples}")
    if self.max_new_tokens < 1:
      raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
    if self.too_long not in TOO_LONG_POLICIES:
      raise ValueError(f"too_long={self.too_long!r}; choose one of {TOO_LONG_POLICIES}")


@dataclasses.dataclass(frozen=True)
class Guidance:
  """A decoder over several model streams (`decode.generate_streams`): `processor` turns
  the streams' logits into the logits the strategy samples from. `models[i]` is stream
  model i (0: the teacher being sampled); a per-prompt stream reads the prompt, a per-row
  stream the ids `row_prompt(prompt_id, sample_index) -> (ids, record fields)` gives."""
  processor: Callable
  streams: tuple[decode.Stream, ...]
  models: tuple
  row_prompt: Callable[[str, int], tuple[list[int], dict]] | None = None


def prompt_hash(prompt_id: str) -> int:
  """Stable 32-bit hash of a prompt id (Python's hash() is salted per process)."""
  return int.from_bytes(hashlib.blake2b(str(prompt_id).encode(), digest_size=4).digest(),
                        "little")


@dataclasses.dataclass
class _Encoded:
  index: int
  prompt_id: str
  ids: list[int]
  truncated: int = 0
  skipped: bool = False


def _encode_all(model, prompts: Sequence[dict], options: SamplingOptions) -> list[_Encoded]:
  """Tokenises every prompt and applies the length policy before any compute starts."""
  tok = model.tokenizer
  max_context = options.max_context or model.config.max_position_embeddings
  limit = max_context - options.max_new_tokens
  if limit < 1:
    raise ValueError(f"max_new_tokens={options.max_new_tokens} leaves no room for a prompt in "
                     f"a context of {max_context} tokens; lower max_new_tokens.")
  encoded = []
  for i, p in enumerate(prompts):
    text = p["prompt"]
    ids = tok.encode_chat(text) if options.chat_template else tok.encode(text, add_bos=True)
    e = _Encoded(index=i, prompt_id=str(p["prompt_id"]), ids=list(ids))
    if len(ids) > limit:
      if options.too_long == "error":
        raise PromptTooLongError(
            f"prompt {e.prompt_id!r} (row {i}) has {len(ids)} tokens; with max_new_tokens="
            f"{options.max_new_tokens} it needs {len(ids) + options.max_new_tokens} positions, "
            f"but the context is {max_context}. Shorten the prompt, lower max_new_tokens, or "
            "set too_long='truncate' (keeps the last tokens) or 'skip' (reported, not sampled).")
      if options.too_long == "truncate":
        e.truncated = len(ids) - limit
        e.ids = e.ids[-limit:]
      else:
        e.skipped = True
    encoded.append(e)
  return encoded


def _records_for(e: _Encoded, options: SamplingOptions, rows: dict | None, tok,
                 row_info: Sequence[dict] | None = None) -> list[dict]:
  out = []
  for j in range(options.num_samples):
    rec: dict[str, Any] = {"prompt_id": e.prompt_id,
                           "sample_index": options.first_sample_index + j}
    if rows is None:
      rec.update(text="", num_tokens=0, finish_reason=layout.FINISH_PROMPT_TOO_LONG)
      ids = []
    else:
      n = int(rows["num_tokens_R"][j])
      ids = [int(t) for t in rows["tokens_RA"][j, :n]]
      rec.update(text=tok.decode(ids), num_tokens=n,
                 finish_reason=layout.FINISH_STOP if rows["stopped_R"][j] else layout.FINISH_CUT)
    rec["prompt_tokens"] = len(e.ids)
    if e.truncated:
      rec["prompt_truncated_tokens"] = e.truncated
    if options.return_token_ids:
      rec["token_ids"] = ids
    if row_info is not None:
      rec.update(row_info[j])
    out.append(rec)
  return out


def _normalise_prompts(prompts) -> list[dict]:
  out = []
  for i, p in enumerate(prompts):
    if isinstance(p, str):
      out.append({"prompt_id": str(i), "prompt": p})
    elif isinstance(p, dict) and "prompt" in p:
      out.append({"prompt_id": str(p.get("prompt_id", i)), "prompt": p["prompt"]})
    else:
      raise ValueError(f"prompt {i} must be a string or a dict with 'prompt' (and "
                       f"'prompt_id'); got {type(p).__name__}")
  ids = [p["prompt_id"] for p in out]
  if len(set(ids)) != len(ids):
    dup = sorted({x for x in ids if ids.count(x) > 1})[:5]
    raise ValueError(f"duplicate prompt_id values {dup}: each prompt needs a unique id, since "
                     "ids key the randomness and the output rows.")
  return out


def _left_padded(rows: Sequence[list[int]], T: int, pad_id: int):
  tokens = np.full((len(rows), T), pad_id, np.int32)
  mask = np.zeros((len(rows), T), bool)
  for i, ids in enumerate(rows):
    tokens[i, T - len(ids):] = ids
    mask[i, T - len(ids):] = True
  return tokens, mask


def iter_sample_batches(model, prompts, options: SamplingOptions,
                        guidance: Guidance | None = None
                        ) -> Iterator[tuple[int, list[dict]]]:
  """Yields (prompts_done_in_batch, records) per batch; batches group similar lengths.
  With `guidance` the batch decodes over its streams (model is then guidance.models[0])."""
  prompts = _normalise_prompts(prompts)
  encoded = _encode_all(model, prompts, options)
  tok = model.tokenizer
  skipped = [e for e in encoded if e.skipped]
  if skipped:
    yield len(skipped), [r for e in skipped for r in _records_for(e, options, None, tok)]
  todo = sorted((e for e in encoded if not e.skipped), key=lambda e: (len(e.ids), e.index))
  mesh = model.mesh
  data = mesh.shape["data"] if mesh is not None else 1
  B = -(-options.batch_size // data) * data  # rows must split evenly over the data axis
  spec = decode.DecodeSpec(num_samples=options.num_samples,
                           max_new_tokens=options.max_new_tokens,
                           stop_ids=tuple(sorted(tok.stop_ids)), pad_id=int(tok.pad_id))
  if guidance is None:
    fn = decode.compiled_generate(model.config, spec, options.strategy, mesh)
    params: Any = model.params
  else:
    fn = decode.compiled_generate_streams(
        tuple(m.config for m in guidance.models), guidance.streams, spec, options.strategy,
        type(guidance.processor), mesh)
    params = tuple(m.params for m in guidance.models)
  J = options.num_samples
  for start in range(0, len(todo), B):
    batch = todo[start:start + B]
    # Filler rows (copies of the first prompt) fill the batch; they are dropped below.
    full = [batch[b] if b < len(batch) else batch[0] for b in range(B)]
    T = bucket_length(max(len(e.ids) for e in batch), options.min_prompt_bucket)
    tokens_BT, mask_BT = _left_padded([e.ids for e in full], T, tok.pad_id)
    hashes_B = np.asarray([prompt_hash(e.prompt_id) for e in full], np.uint32)
    seed, first = np.int32(options.seed), np.int32(options.first_sample_index)
    row_info = None
    if guidance is None:
      out = fn(params, tokens_BT, mask_BT, hashes_B, seed, first)
    else:
      tokens, masks = [], []
      if any(s.per_row for s in guidance.streams):
        rows = [guidance.row_prompt(e.prompt_id, options.first_sample_index + j)
                for e in full for j in range(J)]
        row_info = [info for _, info in rows]
        row_T = bucket_length(max(len(ids) for ids, _ in rows), options.min_prompt_bucket)
        per_row = _left_padded([ids for ids, _ in rows], row_T, tok.pad_id)
      for stream in guidance.streams:
        t, m = per_row if stream.per_row else (tokens_BT, mask_BT)
        tokens.append(t)
        masks.append(m)
      out = fn(params, tuple(tokens), tuple(masks), hashes_B, seed, first, guidance.processor)
    out = jax.device_get(out)
    records = []
    for b, e in enumerate(batch):
      rows_b = {k: out[k][b * J:(b + 1) * J] for k in ("tokens_RA", "num_tokens_R",
                                                        "stopped_R")}
      info_b = None if row_info is None else row_info[b * J:(b + 1) * J]
      records.extend(_records_for(e, options, rows_b, tok, info_b))
    yield len(batch), records


def sample_records(model, prompts, options: SamplingOptions) -> list[dict]:
  """All records, ordered by input prompt then sample index."""
  order = {p["prompt_id"]: i for i, p in enumerate(_normalise_prompts(prompts))}
  records = [r for _, batch in iter_sample_batches(model, prompts, options) for r in batch]
  return sorted(records, key=lambda r: (order[r["prompt_id"]], r["sample_index"]))


def sample(model, prompts, *, k: int = 1, max_new_tokens: int = 64, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
           seed: int = 0, **options) -> list[dict]:
  """Notebook entry point: k completions per prompt as a list of records.

  >>> model = ai_jax.load_model()          # the embedded SmolLM2-135M-Instruct
  >>> ai_jax.sample(model, ["Name a colour."], k=4, temperature=0.8)
  """
  strategy = strategies_lib.from_config(temperature=temperature, top_k=top_k, top_p=top_p,
                                        greedy=greedy)
  opts = SamplingOptions(num_samples=k, max_new_tokens=max_new_tokens, strategy=strategy,
                         seed=seed, **options)
  return sample_records(model, prompts, opts)
