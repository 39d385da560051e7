"""Hugging Face checkpoint directories (config.json + safetensors) <-> numpy state dicts.

The reader parses the safetensors header itself rather than using `safe_open(framework=
"numpy")`, because that cannot return bfloat16 (numpy has no such dtype); we map BF16 to
`ml_dtypes.bfloat16`. The writer produces exactly the files `save_pretrained` does
(including `{"format": "pt"}` metadata, without which transformers refuses to load),
and publishes the directory with one rename so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile

import ml_dtypes
import numpy as np
import safetensors.numpy

from ai_jax.weights.errors import WeightsError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"

_DTYPES = {"F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
           "BF16": np.dtype(ml_dtypes.bfloat16), "F64": np.dtype(np.float64)}
_DTYPE_NAMES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def _np_dtype(dtype) -> np.dtype:
  """np.dtype from a numpy/ml_dtypes dtype or a torch-style name ('bfloat16')."""
  return np.dtype(_DTYPE_NAMES.get(dtype, dtype) if isinstance(dtype, str) else dtype)


def _dtype_name(dtype: np.dtype) -> str:
  for name, d in _DTYPE_NAMES.items():
    if np.dtype(d) == dtype:
      return name
  raise WeightsError(f"dtype {dtype} cannot be saved in a HF checkpoint; "
                     f"use one of {sorted(_DTYPE_NAMES)}")


def read_safetensors(path, dtype=np.float32) -> dict:
  """name -> np.ndarray from one .safetensors file; dtype=None keeps the stored dtype."""
  path = os.fspath(path)
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    try:
      (header_len,) = struct.unpack("<Q", f.read(8))
      if header_len > size - 8:
        raise ValueError(f"header length {header_len} exceeds file size {size}")
      header = json.loads(f.read(header_len))
    except (struct.error, ValueError) as e:
      raise WeightsError(f"{path} is not a valid safetensors file ({e})") from e
  data = (np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
          if size > 8 + header_len else np.zeros(0, np.uint8))  # memmap refuses 0 bytes
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    if info["dtype"] not in _DTYPES:
      raise WeightsError(f"{path}: tensor {name!r} has dtype {info['dtype']}; only "
                         f"{', '.join(_DTYPES)} are supported")
    begin, end = info["data_offsets"]
    if end > data.size:
      raise WeightsError(f"{path} is truncated: tensor {name!r} ends at byte {end} of the data "
                         f"section, which has {data.size} bytes")
    arr = data[begin:end].view(_DTYPES[info["dtype"]]).reshape(info["shape"])
    out[name] = np.array(arr, dtype=None if dtype is None else _np_dtype(dtype), copy=True)
  del data
  return out


def read_hf_checkpoint(path, dtype=np.float32) -> tuple[dict, dict]:
  """(config dict, state dict) of a save_pretrained directory, sharded or not.

  `path` may also be a single .safetensors file with config.json beside it.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint not found: {path}")
  directory = os.path.dirname(path) if os.path.isfile(path) else path
  config_path = os.path.join(directory, CONFIG_NAME)
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"{config_path} is missing; a HF checkpoint directory needs the "
                            "model's config.json next to its safetensors files")
  with open(config_path) as f:
    config = json.load(f)
  if os.path.isfile(path):
    return config, read_safetensors(path, dtype)

  single, index_path = os.path.join(path, WEIGHTS_NAME), os.path.join(path, INDEX_NAME)
  if os.path.isfile(single):
    return config, read_safetensors(single, dtype)
  if not os.path.isfile(index_path):
    hint = (" (found pytorch_model.bin: re-save it with safe_serialization=True)"
            if os.path.exists(os.path.join(path, "pytorch_model.bin")) else "")
    raise FileNotFoundError(f"{path} has neither {WEIGHTS_NAME} nor {INDEX_NAME}{hint}")
  with open(index_path) as f:
    weight_map = json.load(f)["weight_map"]
  state_dict = {}
  for shard in sorted(set(weight_map.values())):
    shard_path = os.path.join(path, shard)
    if not os.path.isfile(shard_path):
      raise FileNotFoundError(f"shard {shard_path} named in {index_path} is missing; "
                              "re-download or re-save the checkpoint")
    state_dict.update(read_safetensors(shard_path, dtype))
  missing = sorted(set(weight_map) - set(state_dict))
  if missing:
    raise WeightsError(f"{index_path} lists tensors that are in none of the shards: {missing[:5]}")
  return config, state_dict


def _split_shards(sizes: dict, max_shard_bytes: int | None) -> list[list[str]]:
  """Greedy in-order split, as huggingface_hub's split_state_dict_into_shards does: a
  tensor larger than the limit gets a shard of its own."""
  if max_shard_bytes is None:
    return [list(sizes)]
  shards, current, current_size = [], [], 0
  for name, size in sizes.items():
    if size > max_shard_bytes:
      shards.append([name])
      continue
    if current and current_size + size > max_shard_bytes:
      shards.append(current)
      current, current_size = [], 0
    current.append(name)
    current_size += size
  if current:
    shards.append(current)
  return shards


def _fsync_write(path: str, text: str) -> None:
  with open(path, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())


def write_hf_checkpoint(path, config: dict, state_dict: dict, *, dtype=None,
                        max_shard_bytes: int | None = None, overwrite: bool = False) -> None:
  """Writes a directory that `transformers.AutoModel.from_pretrained(path)` loads.

  dtype: cast every tensor (np dtype or 'float32'/'float16'/'bfloat16'; config's dtype is
  updated to match); None keeps each array's own dtype. With tied embeddings
  (config['tie_word_embeddings']) lm_head.weight is dropped, as transformers does.
  """
  path = os.path.abspath(os.fspath(path))
  if os.path.isfile(path):
    raise FileExistsError(f"{path} is a file; write_hf_checkpoint needs a directory path")
  if os.path.isdir(path) and os.listdir(path) and not overwrite:
    raise FileExistsError(f"{path} already exists and is not empty; pass overwrite=True to "
                          "replace it")
  config = dict(config)
  tensors = {}
  for name, value in state_dict.items():
    if name == "lm_head.weight" and config.get("tie_word_embeddings", False):
      continue
    arr = np.asarray(value)
    arr = np.ascontiguousarray(arr if dtype is None else arr.astype(_np_dtype(dtype)))
    _dtype_name(arr.dtype)  # refuse int/float64 tensors before writing anything
    tensors[name] = arr
  if dtype is not None:
    config["dtype"] = _dtype_name(_np_dtype(dtype))
    config.pop("torch_dtype", None)  # transformers >= 5 name; the old one would conflict

  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
  try:
    _fsync_write(os.path.join(tmp, CONFIG_NAME),
                 json.dumps(config, indent=2, sort_keys=True) + "\n")
    shards = _split_shards({n: a.nbytes for n, a in tensors.items()}, max_shard_bytes)
    files = ([WEIGHTS_NAME] if len(shards) == 1 else
             [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
    for file, names in zip(files, shards):
      safetensors.numpy.save_file({n: tensors[n] for n in names}, os.path.join(tmp, file),
                                  metadata={"format": "pt"})
    if len(shards) > 1:
      index = {"metadata": {"total_parameters": int(sum(a.size for a in tensors.values())),
                            "total_size": int(sum(a.nbytes for a in tensors.values()))},
               "weight_map": dict(sorted((n, f) for f, names in zip(files, shards)
                                         for n in names))}
      _fsync_write(os.path.join(tmp, INDEX_NAME), json.dumps(index, indent=2) + "\n")
    _publish(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def _publish(tmp: str, path: str) -> None:
  """Renames the finished temp dir to `path`, moving any old checkpoint aside first so the
  destination always holds either the old or the new checkpoint, never a mix."""
  old = None
  if os.path.isdir(path):
    if os.listdir(path):
      old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=os.path.dirname(path))
      os.rmdir(old)
      os.rename(path, old)
    else:
      os.rmdir(path)
  try:
    os.rename(tmp, path)
  except BaseException:
    if old is not None:
      os.rename(old, path)
    raise
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)
