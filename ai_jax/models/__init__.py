"""The model interface: what the loader, sampler, trainer, LoRA, sharding and export use.

Nothing outside `ai_jax/models/` and `ai_jax/weights/` imports a family's module: a
family (llama, qwen2, gemma3; `registry.py`) is chosen by `ModelConfig.family`, which the
loader sets from `config.json`'s `model_type` or the GGUF architecture.

  apply(params, tokens_BT, positions_BT, mask_BT, cache, write_index, *, config)
      -> (logits_BTV, cache)          the one forward: training, scoring, prefill, decode
  init_cache(config, batch, slots)    a typed, empty KVCache (`cache.logical_axes()`)
  init_params / logical_axes / param_shapes / unstack_layers
  config_from_hf(hf_dict) / to_hf_config(config)    config.json <-> ModelConfig
  family(config)                      its registry entry (HF / GGUF names, LoRA targets)
"""

from __future__ import annotations

from ai_jax.models import gemma3, llama, qwen2  # noqa: F401  (each registers its family)
from ai_jax.models import registry
from ai_jax.models.cache import KVCache, PrefixCache, init_cache
from ai_jax.models.config import ModelConfig
from ai_jax.models.transformer import (Transformer, init_params, logical_axes, param_shapes,
                                       unstack_layers)

__all__ = ["KVCache", "ModelConfig", "PrefixCache", "apply", "config_from_hf", "family",
           "init_cache", "init_params", "logical_axes", "lora_targets", "param_shapes",
           "to_hf_config", "unstack_layers"]


def family(config: ModelConfig) -> registry.Family:
  return registry.get(config.family)


def apply(params, tokens_BT, positions_BT, mask_BT=None, cache: KVCache | None = None,
          write_index=0, *, config: ModelConfig, last_only: bool = False):
  """(logits_BTV, new cache or None). Without a cache, causal attention over the T given
  tokens; with one, the tokens go to slots [write_index, write_index + T)."""
  family(config)  # an unknown family fails here, naming the registered ones
  return Transformer(config).apply({"params": params}, tokens_BT, positions_BT, mask_BT,
                                   cache=cache, write_index=write_index, last_only=last_only)


def config_from_hf(hf: dict, dtype: str = "float32") -> ModelConfig:
  """The config of a Hugging Face `config.json` dict, by the family its `model_type` names
  (an error lists the supported ones)."""
  return registry.for_hf_config(hf).config_from_hf(hf, dtype)


def to_hf_config(config: ModelConfig) -> dict:
  """The `config.json` that transformers loads for this config's family."""
  return family(config).to_hf_config(config)


def lora_targets(config: ModelConfig) -> tuple[str, ...]:
  """The weights a LoRA adapter may target in this family."""
  return family(config).lora_targets
