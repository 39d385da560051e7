"""The pure training step: `train_step(state, batch) -> (state, metrics)`, jitted with
explicit shardings and the old state's buffers donated (nanodo's shape).

TrainState holds the trainable params (all of them for full fine-tuning, the adapters
for LoRA), the frozen params (the base model under LoRA, else empty), the optax state and
the step. The loss is the mean cross-entropy over completion tokens of the whole batch,
token-weighted across gradient-accumulation micro-batches (sum of token losses over sum
of tokens), so accumulation changes memory, not the result.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from ai_jax import models

Params = Any
MergeFn = Callable[[Params, Params], Params]  # (trainable, frozen) -> full model params


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Params                 # trainable
  frozen: Params                 # not trained (LoRA's base model); {} otherwise
  opt_state: optax.OptState
  rng: jax.Array                 # uint32[2] key data; folded with the step for dropout-like use


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  learning_rate: float = 1e-5
  warmup_steps: int = 0
  total_steps: int = 100
  decay: str = "cosine"          # "cosine" | "linear" | "constant"
  end_lr_fraction: float = 0.0
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  weight_decay: float = 0.0
  decay_norms_and_embeddings: bool = False
  grad_clip_norm: float = 1.0    # 0 = off


def learning_rate_schedule(c: OptimConfig) -> optax.Schedule:
  decay_steps = max(c.total_steps - c.warmup_steps, 1)
  end = c.learning_rate * c.end_lr_fraction
  if c.decay == "cosine":
    after = optax.cosine_decay_schedule(c.learning_rate, decay_steps, alpha=c.end_lr_fraction)
  elif c.decay == "linear":
    after = optax.linear_schedule(c.learning_rate, end, decay_steps)
  elif c.decay == "constant":
    after = optax.constant_schedule(c.learning_rate)
  else:
    raise ValueError(f"optim.decay must be 'cosine', 'linear' or 'constant', got {c.decay!r}")
  if c.warmup_steps <= 0:
    return after
  warmup = optax.linear_schedule(0.0, c.learning_rate, c.warmup_steps)
  return optax.join_schedules([warmup, after], [c.warmup_steps])


def decay_mask(params: Params, decay_norms_and_embeddings: bool) -> Params:
  """True for leaves weight decay applies to: matrices, not norms or embeddings (unless
  configured), which is the usual AdamW practice."""
  def keep(path, leaf):
    names = [getattr(k, "key", getattr(k, "name", "")) for k in path]
    is_norm = any("norm" in str(n) for n in names)
    is_embed = any(str(n) in ("embed", "lm_head") for n in names)
    return decay_norms_and_embeddings or not (is_norm or is_embed or leaf.ndim < 2)
  return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(c: OptimConfig, params: Params) -> optax.GradientTransformation:
  chain = []
  if c.grad_clip_norm > 0:
    chain.append(optax.clip_by_global_norm(c.grad_clip_norm))
  chain.append(optax.adamw(learning_rate_schedule(c), b1=c.b1, b2=c.b2, eps=c.eps,
                           weight_decay=c.weight_decay,
                           mask=decay_mask(params, c.decay_norms_and_embeddings)))
  return optax.chain(*chain)


def identity_merge(trainable: Params, frozen: Params) -> Params:
  del frozen
  return trainable


def token_losses(params: Params, batch: dict, config: models.ModelConfig) -> tuple[jax.Array,
                                                                                  jax.Array]:
  """(sum of completion-token cross-entropies, number of completion tokens), f32."""
  tokens_BT = batch["tokens_BT"]
  input_mask_BT = batch["input_mask_BT"]
  B, T = tokens_BT.shape
  positions_BT = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
  logits_BTV, _ = models.apply(params, tokens_BT, positions_BT, input_mask_BT, config=config)
  # Position t predicts token t+1; the loss mask marks the predicted (completion) tokens.
  # Targets shift left instead of the logits (the last position gets weight 0): slicing the
  # [B, T, V] logits costs a copy, and its gradient a pad and a transpose, of the largest
  # activation in the step.
  targets_BT = jnp.concatenate([tokens_BT[:, 1:], tokens_BT[:, :1]], axis=1)
  weights_BT = jnp.concatenate([batch["loss_mask_BT"][:, 1:],
                                jnp.zeros_like(batch["loss_mask_BT"][:, :1])], axis=1)
  return masked_cross_entropy(logits_BTV, targets_BT, weights_BT)


def masked_cross_entropy(logits_BTV, targets_BT, weights_BT) -> tuple[jax.Array, jax.Array]:
  """(sum of weighted token cross-entropies, sum of weights), in f32."""
  weights_BT = weights_BT.astype(jnp.float32)
  losses_BT = optax.softmax_cross_entropy_with_integer_labels(
      logits_BTV.astype(jnp.float32), targets_BT)
  # where(), not a product: a masked position's loss never reaches the sum, even if inf.
  return jnp.sum(jnp.where(weights_BT > 0, losses_BT * weights_BT, 0.0)), jnp.sum(weights_BT)


def _cast(tree, dtype):
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating)
                      else x, tree)


def train_step(state: TrainState, batch: dict, *, config: models.ModelConfig,
               optimizer: optax.GradientTransformation, merge: MergeFn = identity_merge,
               accum_steps: int = 1) -> tuple[TrainState, dict]:
  """One optimizer update from `batch` (leading dim split into accum_steps micro-batches)."""
  compute_dtype = config.compute_dtype

  def micro_loss(trainable, micro):
    # f32 master weights; the forward runs in the compute dtype (bf16 on accelerators).
    full = merge(_cast(trainable, compute_dtype), _cast(state.frozen, compute_dtype))
    loss_sum, count = token_losses(full, micro, config)
    return loss_sum, count

  grad_fn = jax.value_and_grad(micro_loss, has_aux=True)
  batch = {k: v for k, v in batch.items() if k.endswith("_BT")}
  if accum_steps == 1:
    (loss_sum, count), grads = grad_fn(state.params, batch)
  else:
    micro = jax.tree.map(lambda x: x.reshape((accum_steps, -1) + x.shape[1:]), batch)

    def body(carry, mb):
      g_acc, l_acc, n_acc = carry
      (l, n), g = grad_fn(state.params, mb)
      return (jax.tree.map(jnp.add, g_acc, g), l_acc + l, n_acc + n), None

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
    (grads, loss_sum, count), _ = jax.lax.scan(body, (zeros, 0.0, 0.0), micro)
  denom = jnp.maximum(count, 1.0)
  grads = jax.tree.map(lambda g: g.astype(jnp.float32) / denom, grads)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": loss_sum / denom, "tokens": count, "grad_norm": optax.tree.norm(grads)}
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def eval_loss(params: Params, frozen: Params, batch: dict, *, config: models.ModelConfig,
              merge: MergeFn = identity_merge) -> jax.Array:
  loss_sum, count = token_losses(merge(params, frozen), batch, config)
  return loss_sum / jnp.maximum(count, 1.0)


def init_state(params: Params, frozen: Params, optimizer: optax.GradientTransformation,
               seed: int = 0) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, frozen=frozen,
                    opt_state=optimizer.init(params),
                    rng=jax.random.key_data(jax.random.PRNGKey(seed)))


def state_shardings(state_shape: TrainState, param_axes, frozen_axes, mesh, rules,
                    optimizer: optax.GradientTransformation) -> TrainState:
  """NamedShardings for a TrainState: params and frozen by their logical axes (FSDP over
  `data` and tensor-parallel over `model` with the training rules), optimizer moments like
  the params they belong to, scalars replicated."""
  from ai_jax.sharding import mesh as mesh_lib
  rep = mesh_lib.replicated(mesh)
  params = mesh_lib.tree_shardings(param_axes, state_shape.params, mesh, rules)
  frozen = (mesh_lib.tree_shardings(frozen_axes, state_shape.frozen, mesh, rules)
            if state_shape.frozen else state_shape.frozen)
  opt = optax.tree_map_params(optimizer, lambda _, s: s, state_shape.opt_state, params,
                              transform_non_params=lambda _: rep)
  return TrainState(step=rep, params=params, frozen=frozen, opt_state=opt, rng=rep)


def jit_train_step(config: models.ModelConfig, optimizer, merge: MergeFn, accum_steps: int,
                   shardings: TrainState | None, mesh=None):
  """train_step jitted with in/out shardings and the input state donated."""
  fn = functools.partial(train_step, config=config, optimizer=optimizer, merge=merge,
                         accum_steps=accum_steps)
  if shardings is None:
    return jax.jit(fn, donate_argnums=0)
  from ai_jax.sharding import mesh as mesh_lib
  batch = mesh_lib.batch_sharding(mesh, 2)
  batch_shardings = {"tokens_BT": batch, "input_mask_BT": batch, "loss_mask_BT": batch}
  rep = mesh_lib.replicated(mesh)
  return jax.jit(fn, in_shardings=(shardings, batch_shardings),
                 out_shardings=(shardings, {"loss": rep, "tokens": rep, "grad_norm": rep}),
                 donate_argnums=0)
