"""LoRA adapters for every model family: low-rank deltas on the stacked projection weights.

For a target weight W (stacked over layers, e.g. q_proj [L, D, N, H]) each layer l gets
A_l [in..., r] and B_l [r, out...]; the layer's weight becomes

  W_l + (alpha / r) * reshape(flat(A_l) @ flat(B_l), W_l.shape)

where flat(A_l) is [prod(in), r] and flat(B_l) is [r, prod(out)]. "in" is the weight's
input feature axes (D for q/k/v/gate/up, (N, H) for o_proj, F for down_proj), "out" the
rest. A ~ N(0, 1/in_features) (a gain-1 Kaiming/LeCun normal; Hugging Face peft uses
kaiming_uniform(a=sqrt(5)), i.e. U(+-1/sqrt(in)), variance 1/(3 in)) and B = 0, so the
merged model is exactly the base model at init and only B gets a gradient at step one.

The adapters tree mirrors the params tree down to the target, where an `Adapter(a, b,
scale)` sits in place of the weight: {"layers": {"attn": {"q_proj": Adapter}, ...}}.
The scale is static pytree metadata, not a leaf, so `merge(adapters, base)` needs no
config (it is the `MergeFn` train_step takes) and the optimizer never sees it.

Trade-off: `merge` runs inside the loss and materialises the full-size delta (and the
merged weight) of every target at every step, forward and backward. That costs about one
extra copy of the targeted weights in memory plus an L*in*r*out matmul per target, which
is fine up to ~1B params on CPU/GPU. Beyond that the next step is a low-rank-matmul path
(x @ W + scale * (x @ A) @ B inside the model), which never forms the delta.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp

Params = Any

# target -> (module group under params["layers"], number of input feature axes of W_l).
TARGETS: dict[str, tuple[str, int]] = {
    "q_proj": ("attn", 1),     # [D | N, H]
    "k_proj": ("attn", 1),     # [D | K, H]
    "v_proj": ("attn", 1),     # [D | K, H]
    "o_proj": ("attn", 2),     # [N, H | D]
    "gate_proj": ("mlp", 1),   # [D | F]
    "up_proj": ("mlp", 1),     # [D | F]
    "down_proj": ("mlp", 1),   # [F | D]
}


@dataclasses.dataclass(frozen=True)
class LoraConfig:
  rank: int
  alpha: float = 16.0
  targets: tuple[str, ...] = ("q_proj", "v_proj")
  init_seed: int = 0

  def __post_init__(self):
    if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
      raise ValueError(f"lora rank must be an int >= 1, got {self.rank!r} (rank 0 means "
                       "full fine-tuning: do not build adapters then)")
    if not self.alpha > 0:
      raise ValueError(f"lora alpha must be > 0, got {self.alpha!r}")
    targets = tuple(self.targets)
    if not targets:
      raise ValueError(f"lora targets is empty; pick from {', '.join(TARGETS)}")
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
      raise ValueError(f"unknown lora target(s) {unknown}; valid targets: "
                       f"{', '.join(TARGETS)}")
    if len(set(targets)) != len(targets):
      raise ValueError(f"lora targets {targets} list a weight more than once")
    object.__setattr__(self, "targets", targets)  # a list from a config file -> tuple

  @property
  def scale(self) -> float:
    return float(self.alpha) / self.rank


@flax.struct.dataclass
class Adapter:
  """One target's adapter: a [L, in..., r], b [L, r, out...]; scale is static."""
  a: Any
  b: Any
  scale: float = flax.struct.field(pytree_node=False, default=1.0)


def _is_adapter(x) -> bool:
  return isinstance(x, Adapter)


def init_adapters(base_params: Params, config: LoraConfig) -> Params:
  """f32 adapters for `config.targets` of `base_params` (A Gaussian, B zero)."""
  try:
    layers = base_params["layers"]
  except (KeyError, TypeError) as e:
    raise ValueError("base params have no 'layers' subtree; LoRA expects the stacked "
                     "params of an ai_jax.models family") from e
  key = jax.random.PRNGKey(config.init_seed)
  out: dict[str, dict[str, Adapter]] = {}
  for target in config.targets:
    group, n_in = TARGETS[target]
    if group not in layers or target not in layers[group]:
      raise ValueError(f"base params have no layers.{group}.{target} to adapt")
    w_shape = tuple(layers[group][target].shape)
    L, in_shape, out_shape = w_shape[0], w_shape[1:1 + n_in], w_shape[1 + n_in:]
    fan_in = math.prod(in_shape)
    # Folding in the target's fixed index keeps each target's init independent of which
    # other targets are enabled, so changing `targets` leaves the rest reproducible.
    target_key = jax.random.fold_in(key, list(TARGETS).index(target))
    a = jax.random.normal(target_key, (L, *in_shape, config.rank), jnp.float32)
    a = a * jnp.float32(1.0 / math.sqrt(fan_in))
    b = jnp.zeros((L, config.rank, *out_shape), jnp.float32)
    out.setdefault(group, {})[target] = Adapter(a=a, b=b, scale=config.scale)
  return {"layers": out}


def adapter_axes(adapters: Params, base_axes: Params) -> Params:
  """Logical axes of `adapters` (same tree structure), from the base weights' axes:
  a: (layers, <W's input axes>, None), b: (layers, None, <W's output axes>). The rank
  axis is unnamed, so it stays replicated."""
  def axes_for(adapter: Adapter, w_axes) -> Adapter:
    w_axes = tuple(w_axes)
    n_in = adapter.a.ndim - 2
    return Adapter(a=(w_axes[0], *w_axes[1:1 + n_in], None),
                   b=(w_axes[0], None, *w_axes[1 + n_in:]), scale=adapter.scale)
  return _map_targets(axes_for, adapters, base_axes, keep_base=False)


def _map_targets(fn, adapters, base, keep_base: bool = True):
  """fn(adapter, base leaf) at each Adapter; with keep_base, in a copy of `base` (the
  other leaves as they are), else in a tree shaped like `adapters`."""
  if _is_adapter(adapters):
    return fn(adapters, base)
  if not isinstance(adapters, Mapping):
    raise TypeError(f"adapters tree holds {type(adapters).__name__}; expected dicts of "
                    "Adapter (from init_adapters)")
  out = dict(base) if keep_base else {}
  for name, sub in adapters.items():
    if name not in base:
      raise KeyError(f"adapter {name!r} has no counterpart in the base tree "
                     f"(it has {sorted(base)})")
    out[name] = _map_targets(fn, sub, base[name], keep_base)
  return out


def delta(adapter: Adapter, w_shape) -> jax.Array:
  """scale * A_l @ B_l per layer, shaped like W, in the adapter's dtype."""
  a, b = adapter.a, adapter.b
  L, r = a.shape[0], a.shape[-1]
  a_LIE = a.reshape(L, -1, r)
  b_LEO = b.reshape(L, r, -1)
  d_LIO = jnp.einsum("lie,leo->lio", a_LIE, b_LEO)
  return (adapter.scale * d_LIO).reshape(w_shape).astype(jnp.result_type(a, b))


def _merged_weight(adapter: Adapter, w):
  d = delta(adapter, w.shape)
  # One rounding: add in the wider dtype (f32 adapters on a bf16 base), then cast back,
  # so the model sees the base dtype it was built for.
  return (w.astype(jnp.result_type(w, d)) + d).astype(w.dtype)


def merge(adapters: Params, base_params: Params) -> Params:
  """Full model params: base + scale * delta on the targets, every other leaf as in base
  (same objects, same dtype). Pure jnp; the `merge` train_step's loss calls."""
  return _map_targets(_merged_weight, adapters, base_params)


def merge_for_export(adapters: Params, base_params: Params) -> Params:
  """Merged params in float32 (all leaves), for writing a plain checkpoint."""
  to_f32 = lambda x: x.astype(jnp.float32)
  return merge(jax.tree.map(to_f32, adapters), jax.tree.map(to_f32, base_params))


def num_params(adapters: Params) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(adapters))
