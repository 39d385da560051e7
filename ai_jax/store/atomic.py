"""Whole-file atomic writes: a reader sees the old file or the new one, never a part.

Each write goes to a temp file in the same folder, is fsynced, then renamed over the
target (rename is atomic within a filesystem on POSIX).
"""

from __future__ import annotations

import json
import os
from typing import Iterable


def write_bytes_atomic(path: str, data: bytes) -> None:
  """Replaces path with data; the temp file never outlives a failure (a full disk, a
  kill -TERM mid-write), so a rerun finds the old file or the new one and nothing else."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.tmp.{os.getpid()}"
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text_atomic(path: str, text: str) -> None:
  write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str, obj) -> None:
  write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


_REQUIRED = object()


def read_json(path: str, default=_REQUIRED):
  """The object in a JSON file. A missing file returns `default` when one is given (else
  FileNotFoundError); a malformed one raises ValueError naming the file."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    if default is _REQUIRED:
      raise
    return default
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); delete it and "
                     "rerun the stage that wrote it") from e


def write_jsonl_atomic(path: str, records: Iterable[dict]) -> None:
  # allow_nan=False: NaN is not JSON; writers store null and say why beside it.
  write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n"
                                  for r in records))


def iter_jsonl(path: str, what: str = "row"):
  """(line number, object) for each non-blank line; a malformed line raises ValueError
  naming file:line."""
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{line_no}: not valid JSON ({e.msg}); fix or re-create the "
                         "file (the stage that wrote it can be rerun)") from e
      if not isinstance(row, dict):
        raise ValueError(f"{path}:{line_no}: expected an object (one JSON object per "
                         f"{what}), got {type(row).__name__}")
      yield line_no, row


def read_jsonl(path: str) -> list[dict]:
  """Rows of a JSONL file; a malformed line raises ValueError naming file:line."""
  return [row for _, row in iter_jsonl(path)]
