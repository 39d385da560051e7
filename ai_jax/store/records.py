"""Append-only, crash-safe record files: JSONL shards keyed by (prompt_id, teacher, sample_index).

A folder holds shard-00000.jsonl, shard-00001.jsonl, ...; only the last one is appended
to, and a shard is closed once it holds `records_per_shard` records. Each append is one
write() of whole lines followed by fsync, so after a crash (even `kill -9` in the middle
of a write, which Linux may leave short) a shard ends in zero or more complete lines and
possibly one torn line without its newline. Opening the folder keeps every complete
record, moves a torn tail to `<shard>.torn` (for inspection) and truncates it away,
ignores a record whose key is already present (reported), and refuses a damaged line
in the middle of a shard, which no crash of this writer can produce.

Each line is the record itself, so the files stay readable by anything that reads JSONL.

Several processes (the hosts of a pod) may write into one folder, one writer each: a
store opened with `writer="h001"` names its shards shard-h001-00000.jsonl, ... and opens,
repairs and appends only those; `iter_records` reads every writer's shards.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
from typing import Iterable, Iterator, Sequence

from ai_jax.run.layout import KEY_FIELDS  # noqa: F401  (re-exported: the store is keyed by it)

SHARD_GLOB = "shard-*.jsonl"


def record_key(record: dict, key_fields: Sequence[str] = KEY_FIELDS) -> tuple:
  return tuple(record.get(k) for k in key_fields)


@dataclasses.dataclass
class OpenReport:
  """What opening a folder found: complete records, torn bytes dropped, duplicates."""
  num_records: int = 0
  num_shards: int = 0
  torn_bytes: int = 0
  torn_files: list[str] = dataclasses.field(default_factory=list)
  duplicates_ignored: int = 0


class CorruptRecordFile(ValueError):
  pass


def _scan_shard(path: str, report: OpenReport) -> tuple[list[dict], int]:
  """(records, size of the good prefix). Truncates a torn tail in place."""
  with open(path, "rb") as f:
    data = f.read()
  records, pos, line_no = [], 0, 0
  while pos < len(data):
    end = data.find(b"\n", pos)
    line_no += 1
    if end < 0:
      break  # no newline: the tail of a write that did not finish
    line = data[pos:end]
    if line.strip():
      try:
        record = json.loads(line)
      except ValueError as e:
        raise CorruptRecordFile(
            f"{path}:{line_no}: a complete line that is not JSON ({e}); this writer never "
            "leaves one (it only appends whole lines), so the file was changed by something "
            "else. Restore it or remove the shard and resume to recompute its records.") from e
      if not isinstance(record, dict):
        raise CorruptRecordFile(f"{path}:{line_no}: expected a JSON object")
      records.append(record)
    pos = end + 1
  if pos < len(data):
    torn = data[pos:]
    with open(path + ".torn", "ab") as f:
      f.write(torn)
    with open(path, "r+b") as f:
      f.truncate(pos)
      f.flush()
      os.fsync(f.fileno())
    report.torn_bytes += len(torn)
    report.torn_files.append(path)
  return records, pos


class RecordStore:
  """Append-only record shards in one folder, with a key index for resuming."""

  def __init__(self, folder: str, records_per_shard: int = 1000,
               key_fields: Sequence[str] = KEY_FIELDS, writer: str = ""):
    if writer and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", writer):
      raise ValueError(f"writer name {writer!r} must be a letter then letters, digits or '_'")
    self.folder = folder
    self.writer = writer
    self.records_per_shard = max(1, int(records_per_shard))
    self.key_fields = tuple(key_fields)
    self.keys: set[tuple] = set()
    self.report = OpenReport()
    os.makedirs(folder, exist_ok=True)
    own = re.compile(rf"shard-{writer + '-' if writer else ''}\d+\.jsonl")
    self._shards = sorted(p for p in glob.glob(os.path.join(folder, SHARD_GLOB))
                          if own.fullmatch(os.path.basename(p)))
    self._last_count = 0
    for path in self._shards:
      records, _ = _scan_shard(path, self.report)
      for record in records:
        key = record_key(record, self.key_fields)
        if key in self.keys:
          self.report.duplicates_ignored += 1
        else:
          self.keys.add(key)
      self._last_count = len(records)
    self.report.num_records = len(self.keys)
    self.report.num_shards = len(self._shards)

  def __contains__(self, key: tuple) -> bool:
    return key in self.keys

  def __len__(self) -> int:
    return len(self.keys)

  def _shard_path(self, index: int) -> str:
    prefix = f"shard-{self.writer}-" if self.writer else "shard-"
    return os.path.join(self.folder, f"{prefix}{index:05d}.jsonl")

  def append(self, records: Iterable[dict]) -> int:
    """Appends the records whose key is new; returns how many were written."""
    new, new_keys = [], set()
    for record in records:
      key = record_key(record, self.key_fields)
      if key not in self.keys and key not in new_keys:
        new.append(record)
        new_keys.add(key)
    pos = 0
    while pos < len(new):
      if not self._shards or self._last_count >= self.records_per_shard:
        self._shards.append(self._shard_path(len(self._shards)))
        self._last_count = 0
      room = self.records_per_shard - self._last_count
      chunk = new[pos:pos + room]
      payload = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n"
                        for r in chunk).encode("utf-8")
      with open(self._shards[-1], "ab") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
      # Keys are added only after the data is durable, so a failed write is retried.
      self.keys.update(record_key(r, self.key_fields) for r in chunk)
      self._last_count += len(chunk)
      pos += len(chunk)
    return len(new)

  def shard_paths(self) -> list[str]:
    return list(self._shards)

  def records(self) -> Iterator[dict]:
    """Every record once, in file order (a repeated key yields its first record)."""
    yield from iter_records(self.folder, self.key_fields)


def iter_records(folder: str, key_fields: Sequence[str] = KEY_FIELDS) -> Iterator[dict]:
  """Reads a store folder without repairing it: complete lines only, first of each key."""
  seen = set()
  for path in sorted(glob.glob(os.path.join(folder, SHARD_GLOB))):
    with open(path, "rb") as f:
      data = f.read()
    cut = data.rfind(b"\n") + 1  # a torn tail (no newline) is not a record yet
    for line_no, line in enumerate(data[:cut].split(b"\n")[:-1], 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except ValueError as e:
        raise CorruptRecordFile(f"{path}:{line_no}: not JSON ({e})") from e
      key = record_key(record, key_fields)
      if key not in seen:
        seen.add(key)
        yield record


def has_records(folder: str) -> bool:
  """Whether folder holds any record shard (of any writer)."""
  return bool(glob.glob(os.path.join(folder, SHARD_GLOB)))
