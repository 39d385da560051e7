"""Deduplication and deterministic train / held-out splits of prompt records.

Both work on the *normalised* prompt text, never on ids or positions, so the same prompt
lands on the same side of a split whichever file, format or order it came from, and a
held-out prompt can never leak into training through a second copy in another file.

Normalisation (`normalise_text`): Unicode NFKC (so composed and decomposed accents, or
full-width characters, compare equal), case-folded, every run of whitespace collapsed to a
single space, leading and trailing whitespace dropped. Chat prompts (lists of messages) are
flattened to "role: content" lines first.
"""

from __future__ import annotations

import hashlib
import unicodedata

SPLITS = ("train", "held_out")


def prompt_text(prompt) -> str:
  """The text of a prompt: itself for a string, "role: content" lines for chat messages."""
  if isinstance(prompt, str):
    return prompt
  return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" if isinstance(m, dict)
                   else str(m) for m in prompt)


def normalise_text(text: str) -> str:
  return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def dedupe_prompts(records: list[dict]) -> tuple[list[dict], int]:
  """Drops records whose normalised prompt text was already seen; keeps the first copy.

  Returns (kept, num_dropped); kept preserves the input order.
  """
  seen, kept = set(), []
  for record in records:
    key = normalise_text(prompt_text(record["prompt"]))
    if key not in seen:
      seen.add(key)
      kept.append(record)
  return kept, len(records) - len(kept)


def held_out_score(text: str, salt: str = "") -> float:
  """A number in [0, 1) fixed by the normalised text and the salt alone."""
  digest = hashlib.sha256(f"{salt}\0{normalise_text(text)}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def is_held_out(prompt, held_out_fraction: float, salt: str = "") -> bool:
  return held_out_score(prompt_text(prompt), salt) < held_out_fraction


def split_prompts(records: list[dict], held_out_fraction: float,
                  salt: str = "") -> tuple[list[dict], list[dict]]:
  """(train, held_out): a record is held out when the hash of its normalised text (with the
  salt) falls below held_out_fraction, so about that fraction is held out, each side keeps
  the input order, and a different salt draws an independent split.
  """
  if not 0.0 <= held_out_fraction <= 1.0:
    raise ValueError(f"held_out_fraction must be in [0, 1], got {held_out_fraction}")
  train, held_out = [], []
  for record in records:
    (held_out if is_held_out(record["prompt"], held_out_fraction, salt) else train).append(record)
  return train, held_out


def host_shard(prompt_id: str, num_shards: int) -> int:
  """Which of num_shards hosts owns a prompt: a stable hash of its id, so every host (and
  every later stage) computes the same partition without reading the others' prompts."""
  digest = hashlib.sha256(str(prompt_id).encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") % max(1, int(num_shards))
