"""Row readers for the prompt-file formats: each yields (where, row) pairs.

`where` names the file and the line (or row / record) a row came from, in the form error
messages print ("prompts.csv:12"), so that every problem found later, in any format, can
point at the exact place to fix. Optional backends (pyarrow, tensorflow-datasets) are
imported only when a file of their kind is read: neither is a dependency of ai_jax.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Iterator, NamedTuple

from ai_jax.store.atomic import iter_jsonl


class PromptFileError(ValueError):
  pass


class Where(NamedTuple):
  """A row's place: `prefix` starts an error message, `short` names it in another's."""
  prefix: str
  short: str


def _line(path: str, lineno: int) -> Where:
  return Where(f"{path}:{lineno}", f"line {lineno}")


def read_jsonl(path: str) -> Iterator[tuple[Where, dict]]:
  try:
    for lineno, row in iter_jsonl(path, what="prompt"):
      yield _line(path, lineno), row
  except ValueError as e:  # store.atomic's file:line message, plus what a prompt row is
    raise PromptFileError(f"{e}; each line must be an object like "
                          '{"prompt_id": "p1", "prompt": "..."}') from None


def read_json(path: str) -> Iterator[tuple[Where, dict]]:
  """A JSON array of objects (like the original alpaca_data.json), each element located by
  the line it starts on. A file whose first value is an object is read as JSONL, since
  JSONL is often saved under a .json name."""
  with open(path, encoding="utf-8-sig") as f:
    text = f.read()
  start = len(text) - len(text.lstrip())
  if text[start:start + 1] == "{":
    yield from read_jsonl(path)
    return
  if text[start:start + 1] != "[":
    raise PromptFileError(f"{path}:{text.count(chr(10), 0, start) + 1}: expected a JSON array "
                          "of objects (or one JSON object per line)")
  # raw_decode element by element instead of json.load, which would lose every element's
  # position and could only say "element 4017" of a 50k-element file.
  decoder, pos, index = json.JSONDecoder(), start + 1, 0
  while True:
    pos = _skip_space(text, pos)
    if text[pos:pos + 1] == "]" and index == 0:
      pos += 1
      break
    lineno = text.count("\n", 0, pos) + 1
    try:
      row, pos = decoder.raw_decode(text, pos)
    except json.JSONDecodeError as e:
      raise PromptFileError(f"{path}:{e.lineno}: not valid JSON ({e.msg}) in array element "
                            f"{index}") from None
    if not isinstance(row, dict):
      raise PromptFileError(f"{path}:{lineno}: array element {index} is a "
                            f"{type(row).__name__}, expected an object with a 'prompt' (or "
                            "'instruction') field")
    yield _line(path, lineno), row
    index += 1
    pos = _skip_space(text, pos)
    sep = text[pos:pos + 1]
    if sep == "]":
      pos += 1
      break
    if sep != ",":
      raise PromptFileError(f"{path}:{text.count(chr(10), 0, pos) + 1}: expected ',' or ']' "
                            f"after array element {index - 1}")
    pos += 1
  if text[pos:].strip():
    raise PromptFileError(f"{path}:{text.count(chr(10), 0, pos) + 1}: unexpected text after "
                          "the JSON array")


def _skip_space(text: str, pos: int) -> int:
  while pos < len(text) and text[pos] in " \t\r\n":
    pos += 1
  return pos


def read_csv(path: str, delimiter: str = ",") -> Iterator[tuple[Where, dict]]:
  """A header row, then one prompt per row; quoted cells may span lines, so each row is
  located by the line it starts on."""
  with open(path, encoding="utf-8-sig", newline="") as f:
    reader = csv.reader(f, delimiter=delimiter, strict=True)
    header, start = None, 1
    while True:
      try:
        cells = next(reader)
      except StopIteration:
        break
      except csv.Error as e:
        raise PromptFileError(f"{path}:{start}: malformed CSV ({e})") from None
      lineno, start = start, reader.line_num + 1
      if not cells or (len(cells) == 1 and not cells[0].strip()):
        continue
      if header is None:
        header = [c.strip() for c in cells]
        if len(set(header)) != len(header):
          raise PromptFileError(f"{path}:{lineno}: repeated column names in the header {header}")
        continue
      if len(cells) != len(header):
        raise PromptFileError(f"{path}:{lineno}: row has {len(cells)} cells but the header "
                              f"has {len(header)} ({header})")
      yield _line(path, lineno), dict(zip(header, cells))


def read_parquet(path: str) -> Iterator[tuple[Where, dict]]:
  try:
    import pyarrow.parquet as pq
  except ImportError:
    raise ImportError(f"reading {path} needs pyarrow, which ai_jax does not install: "
                      "pip install pyarrow") from None
  try:
    batches = pq.ParquetFile(path).iter_batches(batch_size=4096)
  except Exception as e:  # pyarrow's errors name no file: add it.
    raise PromptFileError(f"{path}: not a readable Parquet file ({e})") from None
  rownum = 0
  for batch in batches:
    for row in batch.to_pylist():
      rownum += 1
      yield Where(f"{path}:row {rownum}", f"row {rownum}"), row


def parse_tfds_spec(spec: str) -> tuple[str, str]:
  """"tfds:NAME[/CONFIG][:VERSION]:SPLIT" -> (name, split). The split is whatever follows
  the last colon outside brackets, so slices such as "train[:10%]" stay whole."""
  body, depth, cut = spec[len("tfds:"):], 0, -1
  for i, ch in enumerate(body):
    depth += ch == "["
    depth -= ch == "]"
    if ch == ":" and depth == 0:
      cut = i
  if cut <= 0 or cut == len(body) - 1:
    raise ValueError(f"{spec!r}: expected tfds:NAME[/CONFIG]:SPLIT, e.g. tfds:my_alpaca:train")
  return body[:cut], body[cut + 1:]


def read_tfds(spec: str, data_dir: str | None = None) -> Iterator[tuple[Where, dict]]:
  """Rows of a TFDS dataset already prepared in array_record format, through
  tfds.data_source (random access, no TensorFlow needed). Never downloads."""
  name, split = parse_tfds_spec(spec)
  try:
    import tensorflow_datasets as tfds
  except ImportError:
    raise ImportError(f"{spec!r} needs tensorflow-datasets, which ai_jax does not install: "
                      "pip install tensorflow-datasets (TensorFlow itself is not needed)") from None
  where_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # tfds raises several kinds here; all mean "not usable as it is".
    first = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__
    raise FileNotFoundError(
        f"{spec!r}: TFDS could not open {name!r} split {split!r} under {where_dir} ({first}). "
        "ai_jax never downloads: prepare it first in array_record format, e.g. `tfds build "
        f"{name.split(':')[0]} --data_dir {where_dir} --file_format array_record`, or point "
        "data_dir (or $TFDS_DATA_DIR) at where it was prepared.") from e
  n = len(source)
  for start in range(0, n, 1024):
    indices = list(range(start, min(n, start + 1024)))
    rows = (source.__getitems__(indices) if hasattr(source, "__getitems__")
            else [source[i] for i in indices])
    for i, row in zip(indices, rows):
      yield Where(f"{spec}[{i}]", f"record {i}"), _plain(row)


def _plain(value):
  """TFDS hands back bytes and numpy values: make them str / Python values."""
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if hasattr(value, "tolist"):  # numpy scalars and arrays
    return _plain(value.tolist())
  if isinstance(value, list):
    return [_plain(v) for v in value]
  return value
