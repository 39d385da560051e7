"""The model families, by name, Hugging Face `model_type` and GGUF architecture.

A family is data plus a few pure functions (`Family`); `models/llama.py`, `qwen2.py` and
`gemma3.py` each build one and `register` it, when `ai_jax.models` (whose `__init__`
imports them) is imported, which any import of this module does first. Everything outside `models/` and `weights/`
goes through `ai_jax.models` (the interface) and never names a family's module.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from ai_jax.models.config import ModelConfig

# Per-layer param path (inside params["layers"]) -> the Hugging Face tensor suffix after
# "model.layers.{i}.", e.g. ("attn", "q_proj"): "self_attn.q_proj.weight".
LayerNames = Mapping[tuple[str, ...], str]


@dataclasses.dataclass(frozen=True)
class Family:
  name: str
  hf_model_types: tuple[str, ...]          # config.json `model_type` values it reads
  gguf_architectures: tuple[str, ...]      # GGUF `general.architecture` values it reads
  config_from_hf: Callable[[dict, str], ModelConfig]    # (config.json dict, dtype)
  to_hf_config: Callable[[ModelConfig], dict]
  # (GGUF metadata getter `get(key, default)` for the architecture's keys, the metadata,
  # tensor shapes by GGUF name in HF order) -> a config.json dict of this family.
  hf_config_from_gguf: Callable[[Callable, dict, dict], dict]
  hf_layer_names: LayerNames
  # GGUF block tensor stem -> HF module suffix, e.g. "attn_q": "self_attn.q_proj".
  gguf_block_names: Mapping[str, str]
  gguf_biases: tuple[str, ...] = ()        # GGUF stems that may carry a .bias
  gguf_permute_qk: bool = False            # llama.cpp permuted q/k rows (llama arch only)
  gguf_norm_offset: float = 0.0            # llama.cpp stored norm weights plus this
  lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                   "up_proj", "down_proj")


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
  if family.name in _FAMILIES:
    raise ValueError(f"model family {family.name!r} is registered twice")
  _FAMILIES[family.name] = family
  return family


def names() -> tuple[str, ...]:
  return tuple(_FAMILIES)


def get(name: str) -> Family:
  if name not in _FAMILIES:
    raise ValueError(f"unknown model family {name!r}; registered: {', '.join(_FAMILIES)}")
  return _FAMILIES[name]


def for_hf_config(hf: dict[str, Any]) -> Family:
  """The family whose `hf_model_types` holds `hf["model_type"]` (default "llama")."""
  model_type = hf.get("model_type", "llama")
  for family in _FAMILIES.values():
    if model_type in family.hf_model_types:
      return family
  supported = sorted(t for f in _FAMILIES.values() for t in f.hf_model_types)
  raise ValueError(
      f"config.json has model_type={model_type!r}; ai_jax reads model_type "
      f"{', '.join(supported)}. Convert the checkpoint, or add a family under "
      "ai_jax/models/ (docs/extending.md, 'Add a model family').")


def for_gguf_architecture(arch: str | None) -> Family:
  for family in _FAMILIES.values():
    if arch in family.gguf_architectures:
      return family
  supported = sorted(a for f in _FAMILIES.values() for a in f.gguf_architectures)
  raise ValueError(f"GGUF architecture {arch!r} is not supported; supported: "
                   f"{', '.join(supported)}")
