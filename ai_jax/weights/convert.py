"""Hugging Face state dicts <-> ai_jax params pytrees, for every model family.

HF stores linear weights as [out_features, in_features] per layer; ai_jax stores kernels
as [in, out] with heads split out ([D, N, H] for q) and stacks layers on a leading axis
(the model scans over layers). The names come from the family (`hf_layer_names`); the
layouts from the params' own shapes: a projection has `PROJECTION_INPUT_AXES[name]` input
axes, then output axes; biases and norm scales are flat in HF.
"""

from __future__ import annotations

import math

import numpy as np

from ai_jax import models
from ai_jax.weights.errors import WeightsError

_LAYER = "model.layers.{i}."
# Number of leading input-feature axes of each projection kernel (o_proj reads [N, H]).
PROJECTION_INPUT_AXES = {"q_proj": 1, "k_proj": 1, "v_proj": 1, "o_proj": 2,
                         "gate_proj": 1, "up_proj": 1, "down_proj": 1}
_GLOBAL = {("embed",): "model.embed_tokens.weight", ("final_norm", "scale"): "model.norm.weight",
           ("lm_head",): "lm_head.weight"}


def _hf_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
  """The HF tensor shape of one ai_jax leaf (per layer for stacked ones)."""
  name = path[-1]
  if name in PROJECTION_INPUT_AXES:
    n_in = PROJECTION_INPUT_AXES[name]
    return (math.prod(shape[n_in:]), math.prod(shape[:n_in]))
  if path == ("lm_head",):
    return (shape[1], shape[0])
  if path == ("embed",):
    return shape
  return (math.prod(shape),)


def to_params_layout(hf_w: np.ndarray, path: tuple[str, ...], shape) -> np.ndarray:
  name = path[-1]
  if name in PROJECTION_INPUT_AXES or path == ("lm_head",):
    return hf_w.T.reshape(shape)
  return hf_w.reshape(shape)


def to_hf_layout(w: np.ndarray, path: tuple[str, ...]) -> np.ndarray:
  name = path[-1]
  if name in PROJECTION_INPUT_AXES:
    n_in = PROJECTION_INPUT_AXES[name]
    return w.reshape(math.prod(w.shape[:n_in]), -1).T
  if path == ("lm_head",):
    return w.T
  return w if path == ("embed",) else w.reshape(-1)


def _leaves(tree, prefix=()):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _leaves(value, prefix + (key,))
    else:
      yield prefix + (key,), value


def _set(tree: dict, path, value) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _hf_names(config: models.ModelConfig):
  """(global leaves, per-layer leaves): each a list of (params path, HF name or pattern,
  shape), checked against the family's table so a missing mapping fails loudly."""
  family = models.family(config)
  shapes = models.param_shapes(config)
  layer_table = family.hf_layer_names
  globals_, per_layer = [], []
  for path, shape in _leaves(shapes):
    if path[0] == "layers":
      sub = path[1:]
      if sub not in layer_table:
        raise WeightsError(f"family {family.name!r} maps no HF name to layer param "
                           f"{'/'.join(sub)}; add it to its hf_layer_names")
      per_layer.append((sub, _LAYER + layer_table[sub], shape[1:]))
    else:
      globals_.append((path, _GLOBAL[path], shape))
  return globals_, per_layer


def _take(state_dict: dict, name: str, shape: tuple, family: str) -> np.ndarray:
  if name not in state_dict:
    raise WeightsError(f"checkpoint has no tensor {name!r} (expected shape {shape}); is it a "
                       f"{family}-family checkpoint with the same config?")
  w = np.asarray(state_dict[name])
  if w.shape != tuple(shape):
    raise WeightsError(f"tensor {name!r} has shape {w.shape}, config expects {tuple(shape)}")
  return w


def hf_to_params(state_dict: dict, config: models.ModelConfig, dtype=np.float32) -> dict:
  """The ai_jax params pytree (numpy arrays) from an HF-named state dict of the family."""
  globals_, per_layer = _hf_names(config)
  params: dict = {}
  for path, name, shape in globals_:
    w = _take(state_dict, name, _hf_shape(path, shape), config.family)
    _set(params, path, to_params_layout(w, path, shape).astype(dtype))
  for sub, pattern, shape in per_layer:
    stacked = np.stack([
        to_params_layout(_take(state_dict, pattern.format(i=i), _hf_shape(sub, shape),
                               config.family), sub, shape)
        for i in range(config.num_layers)]).astype(dtype, copy=False)
    _set(params, ("layers",) + sub, stacked)
  return params


def params_to_hf(params: dict, config: models.ModelConfig, dtype=np.float32) -> dict:
  """Inverse of `hf_to_params`: HF-named [out, in] numpy arrays, one entry per layer."""
  globals_, per_layer = _hf_names(config)
  to_np = lambda x: np.asarray(x, dtype=np.float32).astype(dtype)  # noqa: E731
  out = {}
  for path, name, _ in globals_:
    node = params
    for key in path:
      node = node[key]
    out[name] = to_hf_layout(to_np(node), path)
  for sub, pattern, _ in per_layer:
    node = params["layers"]
    for key in sub:
      node = node[key]
    stacked = to_np(node)
    for i in range(config.num_layers):
      out[pattern.format(i=i)] = to_hf_layout(stacked[i], sub)
  # safetensors wants contiguous buffers; transposes above are views.
  return {k: np.ascontiguousarray(v) for k, v in out.items()}
