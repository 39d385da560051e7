"""A GGUF file's header (key/values, tensor infos) parsed in one pass over its bytes.

gguf-py's `GGUFReader` builds a numpy memmap view per header element: on SmolLM2's
tokenizer (49152 tokens, 48900 merges) that is about 250k views and 10 s of CPU for every
load, more than dequantising the weights. This parser reads the same format with `struct`
over the header bytes (0.3 s on SmolLM2) and memory-maps the tensor data exactly as GGUFReader
does (same dtypes, same byte shapes for quantised blocks), so `gguf.quants.dequantize`
sees what it saw before. tests/test_weights_io.py checks it against GGUFReader.

Format (github.com/ggml-org/ggml docs/gguf.md): magic "GGUF", version (2 or 3), tensor
count, key/value count, key/values, tensor infos, padding to `general.alignment`, data.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import struct

import gguf
import numpy as np

_MAGIC = b"GGUF"
_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32
_V = gguf.GGUFValueType
_SCALARS = {  # value type -> struct code
    _V.UINT8: "B", _V.INT8: "b", _V.UINT16: "H", _V.INT16: "h", _V.UINT32: "I",
    _V.INT32: "i", _V.FLOAT32: "f", _V.UINT64: "Q", _V.INT64: "q", _V.FLOAT64: "d",
    _V.BOOL: "?",
}
_Q = gguf.GGMLQuantizationType
_PLAIN_TENSOR_DTYPES = {_Q.F16: np.float16, _Q.F32: np.float32, _Q.F64: np.float64,
                        _Q.I8: np.int8, _Q.I16: np.int16, _Q.I32: np.int32, _Q.I64: np.int64}


class GGUFFormatError(ValueError):
  """The bytes are not a (complete) GGUF file; the message says where parsing stopped."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  """One tensor: `shape` in GGML order (fastest dim first), `data` a read-only view of the
  file: the element dtype for plain types, uint8 [..., bytes per row] for quantised ones."""
  name: str
  tensor_type: gguf.GGMLQuantizationType
  shape: tuple[int, ...]
  n_bytes: int
  data_offset: int
  data: np.ndarray


@dataclasses.dataclass(frozen=True)
class GGUFFile:
  metadata: dict          # key -> str | int | float | bool | list of those
  tensors: list           # TensorInfo, in file order
  version: int


class _Cursor:
  """Reads little- or big-endian values from a buffer, failing clearly past its end."""

  def __init__(self, buf, order: str):
    self.buf, self.order, self.pos = buf, order, 0

  def take(self, n: int):
    end = self.pos + n
    if end > len(self.buf):
      raise GGUFFormatError(f"the file ends at byte {len(self.buf)}, the header needs "
                            f"bytes up to {end}")
    view = self.buf[self.pos:end]
    self.pos = end
    return view

  def unpack(self, code: str, count: int = 1):
    size = struct.calcsize(code) * count
    return struct.unpack(f"{self.order}{count}{code}", self.take(size))

  def string(self) -> str:
    (n,) = self.unpack("Q")
    return bytes(self.take(n)).decode("utf-8", errors="replace")


def _scalar(cursor: _Cursor, vtype, count: int = 1) -> list:
  values = cursor.unpack(_SCALARS[vtype], count)
  if vtype == _V.FLOAT32:
    # The shortest decimal that round-trips through float32 (1e-05, not 9.99e-06), as
    # `float(str(np.float32(x)))` gives: what the metadata's writer meant.
    return [float(str(v)) for v in np.array(values, dtype=np.float32)]
  return [bool(v) for v in values] if vtype == _V.BOOL else list(values)


def _value(cursor: _Cursor, raw_type: int, key: str):
  try:
    vtype = _V(raw_type)
  except ValueError:
    raise GGUFFormatError(f"key {key!r} has unknown value type {raw_type}") from None
  if vtype == _V.STRING:
    return cursor.string()
  if vtype in _SCALARS:
    return _scalar(cursor, vtype)[0]
  (item_type,), (count,) = cursor.unpack("I"), cursor.unpack("Q")
  try:
    item_vtype = _V(item_type)
  except ValueError:
    raise GGUFFormatError(f"array {key!r} has unknown item type {item_type}") from None
  if item_vtype == _V.STRING:
    return [cursor.string() for _ in range(count)]
  if item_vtype in _SCALARS:
    return _scalar(cursor, item_vtype, count)
  # Nested arrays: flattened, as GGUFReader does.
  return [x for _ in range(count) for x in _as_list(_value(cursor, item_type, key))]


def _as_list(value):
  return value if isinstance(value, list) else [value]


def read(path) -> GGUFFile:
  """Parses `path`; GGUFFormatError if it is not a complete GGUF file of version 2 or 3."""
  path = os.fspath(path)
  size = os.path.getsize(path)
  if size == 0:
    raise GGUFFormatError("the file is empty")
  with open(path, "rb") as f:
    mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
  buf = memoryview(mapped)
  if bytes(buf[:4]) != _MAGIC:
    raise GGUFFormatError("GGUF magic invalid (the file does not start with b'GGUF')")
  version = int.from_bytes(buf[4:8], "little") if size >= 8 else 0
  order = "<"
  if version & 0xFFFF == 0:  # written on a machine of the other byte order
    order, version = ">", int.from_bytes(buf[4:8], "big")
  if version not in _VERSIONS:
    raise GGUFFormatError(f"GGUF version {version} is not supported (2 or 3)")
  cursor = _Cursor(buf, order)
  cursor.pos = 8
  tensor_count, kv_count = cursor.unpack("Q", 2)

  metadata = {}
  for _ in range(kv_count):
    key = cursor.string()
    if key in metadata:
      raise GGUFFormatError(f"duplicate key {key!r}")
    (raw_type,) = cursor.unpack("I")
    metadata[key] = _value(cursor, raw_type, key)

  infos = []
  for _ in range(tensor_count):
    name = cursor.string()
    (n_dims,) = cursor.unpack("I")
    dims = cursor.unpack("Q", n_dims)
    (raw_type,), (offset,) = cursor.unpack("I"), cursor.unpack("Q")
    infos.append((name, tuple(int(d) for d in dims), raw_type, offset))

  alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
  if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
    raise GGUFFormatError(f"general.alignment {alignment!r} is not a power of two")
  start = -(-cursor.pos // alignment) * alignment

  data = np.frombuffer(mapped, dtype=np.uint8)  # read-only: a copy is made on dequantising
  tensors, names = [], set()
  for name, dims, raw_type, offset in infos:
    if name in names:
      raise GGUFFormatError(f"duplicate tensor {name!r}")
    names.add(name)
    try:
      qtype = _Q(raw_type)
    except ValueError:
      raise GGUFFormatError(f"tensor {name!r} has unknown GGML type {raw_type}") from None
    n_elements = int(np.prod(dims, dtype=np.int64))
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_bytes = n_elements * type_size // block_size
    begin = start + offset
    if begin + n_bytes > size:
      raise GGUFFormatError(f"tensor {name!r} needs bytes up to {begin + n_bytes}, the file "
                            f"has {size}")
    np_dims = tuple(reversed(dims))
    raw = data[begin:begin + n_bytes]
    if qtype in _PLAIN_TENSOR_DTYPES:
      view = raw.view(_PLAIN_TENSOR_DTYPES[qtype]).reshape(np_dims)
    else:
      try:
        view = raw.reshape(gguf.quants.quant_shape_to_byte_shape(np_dims, qtype))
      except ValueError as e:
        raise GGUFFormatError(f"tensor {name!r}: {e}") from None
    if order == ">":
      view = view.view(view.dtype.newbyteorder(">"))
    tensors.append(TensorInfo(name=name, tensor_type=qtype, shape=dims, n_bytes=n_bytes,
                              data_offset=begin, data=view))
  return GGUFFile(metadata=metadata, tensors=tensors, version=version)
