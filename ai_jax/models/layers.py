"""The small layers every family shares: params with logical axes, RMSNorm, RoPE, the MLP."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ai_jax.models.config import ModelConfig

Array = jax.Array


def param(module: nn.Module, name: str, shape, axes, init=None):
  init = init or nn.initializers.normal(stddev=0.02)
  return module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)


class RMSNorm(nn.Module):
  """x / rms(x) * scale; with `unit_offset` (gemma) * (1 + scale), scale initialised 0,
  which is how Hugging Face stores gemma's norm weights."""
  eps: float
  unit_offset: bool = False
  axis_name: str = "embed"

  @nn.compact
  def __call__(self, x):
    init = nn.initializers.zeros if self.unit_offset else nn.initializers.ones
    scale = param(self, "scale", (x.shape[-1],), (self.axis_name,), init).astype(jnp.float32)
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return ((1.0 + scale if self.unit_offset else scale) * normed).astype(x.dtype)


def apply_rope(x_BTNH: Array, positions_BT: Array, inv_freq_F) -> Array:
  """Rotary embedding in Hugging Face's rotate-half layout (GGUF weights are un-permuted)."""
  angles_BTF = positions_BT[..., None].astype(jnp.float32) * inv_freq_F
  cos = jnp.cos(angles_BTF)[:, :, None, :]
  sin = jnp.sin(angles_BTF)[:, :, None, :]
  x = x_BTNH.astype(jnp.float32)
  x1, x2 = jnp.split(x, 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_BTNH.dtype)


def softcap(x, cap: float | None):
  """cap * tanh(x / cap) (gemma's logit soft-capping); x itself when cap is None."""
  if not cap:
    return x
  return jnp.float32(cap) * jnp.tanh(x / jnp.float32(cap))


class MLP(nn.Module):
  """down(act(gate(x)) * up(x)): SwiGLU (silu) or GeGLU (tanh-approximated GELU)."""
  config: ModelConfig

  @nn.compact
  def __call__(self, x_BTD):
    cfg = self.config
    dt = cfg.compute_dtype
    D, F = cfg.hidden_size, cfg.intermediate_size
    gate_DF = param(self, "gate_proj", (D, F), ("embed", "mlp"))
    up_DF = param(self, "up_proj", (D, F), ("embed", "mlp"))
    down_FD = param(self, "down_proj", (F, D), ("mlp", "embed"))
    # 2-D matmuls over flattened tokens: with 3-D einsums the weight gradients contract
    # over (b, t) and XLA:CPU writes transposed copies of the [B*T, F] activation
    # gradients (~16% of a SmolLM2 training step, benchmarks/RESULTS.md).
    B, T, _ = x_BTD.shape
    x_UD = x_BTD.reshape(B * T, D)
    gate_UF = x_UD @ gate_DF.astype(dt)
    up_UF = x_UD @ up_DF.astype(dt)
    if cfg.mlp_activation == "gelu_tanh":
      act_UF = jax.nn.gelu(gate_UF, approximate=True)
    else:
      act_UF = jax.nn.silu(gate_UF)
    return ((act_UF * up_UF) @ down_FD.astype(dt)).reshape(B, T, D)
