"""GGUF (llama.cpp) files -> Hugging Face-named numpy state dicts and configs.

Everything downstream of this module (convert.py, the models) speaks Hugging Face: tensor
names, [out_features, in_features] layout, rotate_half RoPE. So this is the one place that
knows llama.cpp's conventions, and it undoes all of them, as the model family of the
file's `general.architecture` (models/registry.py) describes them:

* names: `blk.N.attn_q.weight` -> `model.layers.N.self_attn.q_proj.weight`, etc., from the
  family's `gguf_block_names` (and which tensors may carry biases);
* layout: GGUF lists dims fastest-first (ne0 = in_features), so GGUFReader's row-major
  view of the data is already HF's [out, in]; we only check it.
* RoPE: llama.cpp's converter permutes the rows of q_proj/k_proj so that GGML's interleaved
  (GPT-J style) RoPE matches HF's rotate_half, for the llama architecture only
  (`gguf_permute_qk`); `unpermute_qk` puts them back.
* norms: for gemma llama.cpp stores 1 + w (`gguf_norm_offset`), HF stores w.
* quantisation: blocks are dequantised with gguf-py's reference numpy code.

The header is parsed by gguf_file.py (gguf-py's reader takes ~10 s on a 49k-token vocabulary).
"""

from __future__ import annotations

import dataclasses
import os
import re

import gguf
import numpy as np

from ai_jax.models import registry
from ai_jax.weights import gguf_file
from ai_jax.weights.errors import WeightsError

_T = gguf.GGMLQuantizationType
# Types we dequantise (via gguf.quants, except F64 which it lacks). Integer tensor types
# and the IQ*/TQ* codebook formats are refused rather than trusted untested.
SUPPORTED_TYPES = ("F32", "F16", "BF16", "F64", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                   "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_RE = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")
_REQUIRED = object()


@dataclasses.dataclass(frozen=True)
class GGUFContents:
  """A GGUF file translated to Hugging Face terms.

  metadata: every GGUF key/value as plain Python values (tokenizer arrays included).
  hf_config: a config.json dict of the family (`transformers.AutoConfig.for_model(**it)`).
  state_dict: HF tensor name -> np.ndarray in HF layout (no lm_head when embeddings are tied).
  """
  path: str
  metadata: dict
  hf_config: dict
  state_dict: dict


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
  """HF rotate_half rows -> llama.cpp interleaved rows (what convert_hf_to_gguf.py does).

  Within each head the HF rows are [first half | second half]; llama.cpp wants the pairs
  (i, i + half) adjacent. Works for weights [n_head * head_dim, in] and 1-D biases.
  """
  head_rows = _head_rows(w, n_head)
  return (w.reshape(n_head, 2, head_rows // 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
  """Inverse of `permute_qk`: llama.cpp interleaved rows -> HF rotate_half rows."""
  head_rows = _head_rows(w, n_head)
  return (w.reshape(n_head, head_rows // 2, 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def _head_rows(w: np.ndarray, n_head: int) -> int:
  if n_head <= 0 or w.shape[0] % (2 * n_head):
    raise WeightsError(f"cannot split {w.shape[0]} rows into {n_head} heads of even size "
                       "(q/k RoPE permutation needs head_dim divisible by 2)")
  return w.shape[0] // n_head


def _open(path) -> gguf_file.GGUFFile:
  """The parsed file, its format errors turned into one clear WeightsError."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"GGUF file not found: {path}")
  if os.path.isdir(path):
    raise WeightsError(f"{path} is a directory, expected a .gguf file")
  try:
    return gguf_file.read(path)
  except gguf_file.GGUFFormatError as e:
    raise WeightsError(f"{path} is not a valid/complete GGUF file ({e})") from e


def read_gguf_metadata(path) -> dict:
  """All key/value metadata of a GGUF file as plain Python values (str/int/float/bool or a
  flat list of them); tensor data is memory-mapped, never read."""
  return _open(path).metadata


def _family(metadata: dict):
  arch = metadata.get("general.architecture")
  try:
    return arch, registry.for_gguf_architecture(arch)
  except ValueError as e:
    raise WeightsError(str(e)) from None


def gguf_to_hf_config(metadata: dict, tensor_shapes: dict | None = None) -> dict:
  """A Hugging Face config.json dict (of the family the GGUF architecture names) from GGUF
  metadata.

  GGUF has no key for tied embeddings or attention biases; those are visible only in the
  tensor list. Pass `tensor_shapes` (GGUF tensor name -> HF-order shape) to set them (and
  to fall back on token_embd's shape for vocab_size); without it both default to False.
  """
  arch, family = _family(metadata)

  def get(key, default=_REQUIRED):
    value = metadata.get(f"{arch}.{key}", default)
    if value is _REQUIRED:
      raise WeightsError(f"GGUF metadata lacks required key '{arch}.{key}'")
    if isinstance(value, list):
      raise WeightsError(f"GGUF key '{arch}.{key}' is per-layer ({len(value)} values); "
                         "only a single value is supported")
    return value

  try:
    return family.hf_config_from_gguf(get, metadata, tensor_shapes or {})
  except ValueError as e:
    if isinstance(e, WeightsError):
      raise
    raise WeightsError(f"GGUF ({arch}): {e}") from None


def hf_name(gguf_name: str, family=None) -> str:
  """The Hugging Face name of a GGUF tensor of `family` (default llama); WeightsError for
  anything unknown."""
  family = family or registry.get("llama")
  if gguf_name in _GLOBAL_NAMES:
    return _GLOBAL_NAMES[gguf_name]
  if gguf_name == "rope_freqs.weight":
    raise WeightsError("GGUF has a 'rope_freqs.weight' tensor (llama3-style RoPE frequency "
                       "scaling); llama3-style rope frequency tensors are not supported yet")
  m = _BLOCK_RE.fullmatch(gguf_name)
  if m and m.group(2) in family.gguf_block_names and (
      m.group(3) == "weight" or m.group(2) in family.gguf_biases):
    return f"model.layers.{m.group(1)}.{family.gguf_block_names[m.group(2)]}.{m.group(3)}"
  raise WeightsError(f"unknown GGUF tensor {gguf_name!r} for a {family.name} model")


def _expected_shape(name: str, cfg: dict) -> tuple:
  D, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
  q = cfg["num_attention_heads"] * cfg["head_dim"]
  kv = cfg["num_key_value_heads"] * cfg["head_dim"]
  table = {"embed_tokens": (V, D), "lm_head": (V, D), "norm": (D,), "layernorm": (D,),
           "q_norm": (cfg["head_dim"],), "k_norm": (cfg["head_dim"],),
           "q_proj": (q, D), "k_proj": (kv, D), "v_proj": (kv, D), "o_proj": (D, q),
           "gate_proj": (F, D), "up_proj": (F, D), "down_proj": (D, F)}
  parts = name.split(".")
  key = "layernorm" if parts[-2].endswith("layernorm") else parts[-2]
  shape = table[key]
  return shape[:1] if parts[-1] == "bias" else shape


def _check_tensor(t, name: str, shape: tuple, cfg: dict, path: str) -> None:
  """Type and shape checks that need no tensor data, run on every tensor before any
  dequantising so that an unusable file fails in milliseconds."""
  if t.tensor_type.name not in SUPPORTED_TYPES:
    raise WeightsError(f"{path}: tensor {t.name!r} has GGML type {t.tensor_type.name}, which "
                       f"is not supported; supported types: {', '.join(SUPPORTED_TYPES)}")
  want = _expected_shape(name, cfg)
  if shape != want:
    raise WeightsError(f"{path}: tensor {t.name!r} ({name}) has shape {shape}, "
                       f"the metadata implies {want}")


def _dequantize(t, path: str) -> np.ndarray:
  """float32 copy of tensor `t` in row-major HF order (GGML dims reversed)."""
  if t.tensor_type == _T.F64:
    out = np.asarray(t.data, dtype=np.float32)
  else:
    out = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
  shape = tuple(reversed(t.shape))
  if out.shape != shape:  # should not happen; guards against a gguf-py layout change
    raise WeightsError(f"{path}: tensor {t.name!r} dequantised to {out.shape}, "
                       f"expected {shape} (GGML dims {list(t.shape)} reversed)")
  return np.array(out, dtype=np.float32, copy=True)  # detach from the memory map


def read_gguf(path, dtype=np.float32) -> GGUFContents:
  """Reads a GGUF file of a registered family fully: metadata, HF config, dequantised HF state dict.

  Names, types and shapes are all validated before any tensor is dequantised.
  """
  path = os.fspath(path)
  reader = _open(path)
  metadata = reader.metadata
  shapes = {t.name: tuple(reversed(t.shape)) for t in reader.tensors}
  cfg = gguf_to_hf_config(metadata, shapes)
  _, family = _family(metadata)
  names = {t.name: hf_name(t.name, family) for t in reader.tensors}
  for t in reader.tensors:
    _check_tensor(t, names[t.name], shapes[t.name], cfg, path)
  heads = ({"q_proj": cfg["num_attention_heads"], "k_proj": cfg["num_key_value_heads"]}
           if family.gguf_permute_qk else {})

  state_dict = {}
  for t in reader.tensors:
    name = names[t.name]
    w = _dequantize(t, path)
    if not np.isfinite(w).all():
      raise WeightsError(f"{path}: tensor {t.name!r} ({name}) has NaN/inf values after "
                         f"dequantising {t.tensor_type.name}; the file is corrupt")
    proj = name.split(".")[-2]
    if proj in heads:
      w = unpermute_qk(w, heads[proj])
    if family.gguf_norm_offset and name.endswith("norm.weight"):
      w -= np.float32(family.gguf_norm_offset)
    state_dict[name] = w if np.dtype(dtype) == np.float32 else w.astype(dtype)
  return GGUFContents(path=path, metadata=metadata, hf_config=cfg, state_dict=state_dict)
