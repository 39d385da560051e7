"""Training data: {prompt, completion} JSONL -> tokenised, masked, bucketed batches.

Each example is the prompt rendered with the model's chat template (generation prompt
included) followed by the completion's tokens. The loss covers completion tokens only;
the end-of-turn token is appended (and learned) only when the sample finished on its
own. A sample cut by max_new_tokens (finish_reason "length") gets no end-of-turn, so the
student does not learn to stop where the teacher was cut (PAPER_NOTES, pitfalls).

Over-long examples follow `too_long`: "truncate" keeps the whole prompt and cuts the
completion's tail (then no end-of-turn either: the text did not end there), "skip" drops
the example, "error" stops; each is counted. An example whose prompt alone leaves no
room for a completion token is skipped (or an error), and counted.

Batches: a seeded permutation per epoch (np.random.default_rng([seed, epoch])), cut into
batches of `batch_size` examples, each padded to a power-of-two length bucket (at least
`min_bucket`, at most max_len) so a run compiles few shapes. The iterator's position is
(epoch, batch index): two ints that a checkpoint stores and a resume restores.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Sequence

import numpy as np

from ai_jax.buckets import bucket_length
from ai_jax.run import layout
from ai_jax.store.atomic import iter_jsonl

TOO_LONG = ("truncate", "skip", "error")


class TrainingDataError(ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class Example:
  tokens: tuple[int, ...]
  num_prompt_tokens: int       # loss starts at this position's token


@dataclasses.dataclass
class DataStats:
  rows: int = 0
  examples: int = 0
  truncated: int = 0
  skipped_too_long: int = 0
  skipped_prompt_too_long: int = 0
  cut_samples_without_eot: int = 0
  completion_tokens: int = 0


def read_training_rows(path: str) -> list[dict]:
  """Rows of a selection train.jsonl; every row needs a prompt and a string completion."""
  if not os.path.exists(path):
    raise TrainingDataError(f"training set {path!r} does not exist; make one with "
                            "`python -m ai_jax.select --workdir DIR` (DIR/selection/<arm>/"
                            "train.jsonl) or pass --config.data.path")
  rows = []
  try:
    for line_no, row in iter_jsonl(path, what="training example"):
      if "prompt" not in row:
        raise TrainingDataError(f"{path}:{line_no}: a row needs 'prompt' and 'completion'")
      if not isinstance(row.get("completion"), str):
        raise TrainingDataError(f"{path}:{line_no}: 'completion' is missing or not a string; "
                                "every training row needs the text the student learns")
      rows.append(row)
  except TrainingDataError:
    raise
  except ValueError as e:
    raise TrainingDataError(str(e)) from e
  if not rows:
    raise TrainingDataError(f"training set {path!r} is empty: nothing to train on (did "
                            "selection drop every prompt? see its summary.json)")
  return rows


def encode_rows(rows: Sequence[dict], tokenizer, max_len: int, too_long: str = "truncate",
                chat_template: bool = True) -> tuple[list[Example], DataStats]:
  if too_long not in TOO_LONG:
    raise ValueError(f"data.too_long must be one of {TOO_LONG}, got {too_long!r}")
  stats = DataStats(rows=len(rows))
  eot = int(tokenizer.eos_id)
  out = []
  for i, row in enumerate(rows):
    prompt = row["prompt"]
    prompt_ids = (list(tokenizer.encode_chat(prompt)) if chat_template
                  else list(tokenizer.encode(prompt, add_bos=True)))
    completion_ids = list(tokenizer.encode(row["completion"], add_bos=False))
    finished = row.get("finish_reason", layout.FINISH_STOP) != layout.FINISH_CUT
    if not finished:
      stats.cut_samples_without_eot += 1
    tail = [eot] if finished else []
    if len(prompt_ids) >= max_len:
      if too_long == "error":
        raise TrainingDataError(f"row {i} (prompt_id {row.get('prompt_id')!r}): the prompt "
                                f"alone has {len(prompt_ids)} tokens, max_len is {max_len}")
      stats.skipped_prompt_too_long += 1
      continue
    total = len(prompt_ids) + len(completion_ids) + len(tail)
    if total > max_len:
      if too_long == "error":
        raise TrainingDataError(
            f"row {i} (prompt_id {row.get('prompt_id')!r}) has {total} tokens, over "
            f"data.max_len={max_len}; raise max_len or set data.too_long to 'truncate'/'skip'")
      if too_long == "skip":
        stats.skipped_too_long += 1
        continue
      completion_ids = completion_ids[:max_len - len(prompt_ids)]
      tail = []
      stats.truncated += 1
    tokens = prompt_ids + completion_ids + tail
    stats.completion_tokens += len(tokens) - len(prompt_ids)
    out.append(Example(tuple(tokens), len(prompt_ids)))
  stats.examples = len(out)
  if not out:
    raise TrainingDataError(f"no example fits data.max_len={max_len} ({stats})")
  return out, stats


def make_batch(examples: Sequence[Example], pad_id: int, min_bucket: int, max_len: int,
               batch_size: int) -> dict[str, np.ndarray]:
  """tokens_BT (right-padded), input_mask_BT (real tokens), loss_mask_BT: position t is
  True when token t is a completion token (predicted from tokens < t). Rows beyond the
  examples given are all padding with no loss (a short last batch keeps its shape)."""
  T = bucket_length(max(len(e.tokens) for e in examples), min_bucket, max_len)
  tokens_BT = np.full((batch_size, T), pad_id, np.int32)
  input_mask_BT = np.zeros((batch_size, T), bool)
  loss_mask_BT = np.zeros((batch_size, T), bool)
  for b, e in enumerate(examples):
    n = len(e.tokens)
    tokens_BT[b, :n] = e.tokens
    input_mask_BT[b, :n] = True
    loss_mask_BT[b, e.num_prompt_tokens:n] = True
  return {"tokens_BT": tokens_BT, "input_mask_BT": input_mask_BT,
          "loss_mask_BT": loss_mask_BT}


@dataclasses.dataclass
class BatchIterator:
  """Deterministic epochs of shuffled batches; (epoch, index) is the whole state."""
  examples: Sequence[Example]
  batch_size: int
  pad_id: int
  max_len: int
  min_bucket: int = 32
  seed: int = 0
  epoch: int = 0
  index: int = 0
  drop_last: bool = False

  def __post_init__(self):
    if self.batch_size < 1:
      raise ValueError(f"batch size must be >= 1, got {self.batch_size}")

  @property
  def batches_per_epoch(self) -> int:
    n = len(self.examples)
    return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

  def order(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))

  def state(self) -> dict:
    return {"epoch": int(self.epoch), "index": int(self.index)}

  def restore(self, state: dict) -> None:
    self.epoch, self.index = int(state["epoch"]), int(state["index"])

  def __iter__(self) -> Iterator[dict]:
    return self

  def __next__(self) -> dict:
    if self.batches_per_epoch == 0:
      raise TrainingDataError(f"{len(self.examples)} examples make no batch of "
                              f"{self.batch_size} with drop_last")
    if self.index >= self.batches_per_epoch:
      self.epoch, self.index = self.epoch + 1, 0
    ids = self.order(self.epoch)[self.index * self.batch_size:(self.index + 1) * self.batch_size]
    self.index += 1
    batch = make_batch([self.examples[i] for i in ids], self.pad_id, self.min_bucket,
                       self.max_len, self.batch_size)
    batch["example_ids_B"] = np.pad(ids, (0, self.batch_size - len(ids)), constant_values=-1)
    return batch
