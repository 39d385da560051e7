"""LoRA adapters: exact identity at init, the delta's layout per target, training through
train_step (loss falls, base untouched), config errors, and sharding on a (2, 4) mesh."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ai_jax import models
from ai_jax.sharding import mesh as mesh_lib
from ai_jax.training import data, lora, step
from conftest import TINY

ALL_TARGETS = tuple(lora.TARGETS)


@pytest.fixture(scope="module")
def base():
  return models.init_params(TINY, seed=0)


def _leaves_with_paths(tree):
  return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def _assert_trees_identical(a, b):
  la, lb = _leaves_with_paths(a), _leaves_with_paths(b)
  assert la.keys() == lb.keys()
  for k in la:
    assert la[k].dtype == lb[k].dtype, k
    np.testing.assert_array_equal(np.asarray(la[k]), np.asarray(lb[k]), err_msg=k)


def _batch():
  examples = [data.Example(tuple(range(3, 3 + 12)), 4),
              data.Example(tuple(range(40, 40 + 9)), 3),
              data.Example((1, 70, 71, 72, 73, 74, 75, 2), 2),
              data.Example(tuple(range(100, 116)), 5)]
  return data.make_batch(examples, pad_id=0, min_bucket=16, max_len=16, batch_size=4)


# ------------------------------------------------------------------- init and layout

def test_init_shapes_distribution_and_identity(base):
  cfg = lora.LoraConfig(rank=4, alpha=8.0, targets=ALL_TARGETS)
  adapters = lora.init_adapters(base, cfg)
  L, D, N, K, H, F = 2, 64, 4, 2, 16, 96
  expected = {"q_proj": ((L, D, 4), (L, 4, N, H)), "k_proj": ((L, D, 4), (L, 4, K, H)),
              "v_proj": ((L, D, 4), (L, 4, K, H)), "o_proj": ((L, N, H, 4), (L, 4, D)),
              "gate_proj": ((L, D, 4), (L, 4, F)), "up_proj": ((L, D, 4), (L, 4, F)),
              "down_proj": ((L, F, 4), (L, 4, D))}
  for target, (a_shape, b_shape) in expected.items():
    ad = adapters["layers"][lora.TARGETS[target][0]][target]
    assert ad.a.shape == a_shape and ad.b.shape == b_shape, target
    assert ad.a.dtype == jnp.float32 and ad.scale == 2.0
    assert not np.any(np.asarray(ad.b))
  # A ~ N(0, 1/in): check the std on the largest fan-in (down_proj, in = F).
  a = np.asarray(adapters["layers"]["mlp"]["down_proj"].a)
  assert abs(a.std() * np.sqrt(F) - 1.0) < 0.1 and abs(a.mean()) < 0.05
  # Merged == base, bit for bit, at init (also in bf16 and through jit).
  _assert_trees_identical(lora.merge(adapters, base), base)
  base_bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), base)
  _assert_trees_identical(jax.jit(lora.merge)(adapters, base_bf16), base_bf16)
  # Same seed, same adapters; a target's init does not depend on the other targets.
  again = lora.init_adapters(base, lora.LoraConfig(rank=4, targets=("v_proj",)))
  np.testing.assert_array_equal(again["layers"]["attn"]["v_proj"].a,
                                adapters["layers"]["attn"]["v_proj"].a)
  assert lora.num_params(again) == L * (D * 4 + 4 * K * H)


def _hand_set(adapters, group, target, layer, rng):
  """Random A, B on `layer` only (the other layer keeps B = 0)."""
  ad = adapters["layers"][group][target]
  a = rng.normal(size=ad.a.shape).astype(np.float32)
  b = np.zeros(ad.b.shape, np.float32)
  b[layer] = rng.normal(size=ad.b.shape[1:])
  new = {**adapters["layers"][group], target: lora.Adapter(jnp.asarray(a), jnp.asarray(b),
                                                           ad.scale)}
  return {"layers": {**adapters["layers"], group: new}}, a, b


@pytest.mark.parametrize("target,a_sub,b_sub,w_sub", [
    ("o_proj", "nhr", "rd", "nhd"),   # (N, H) input axes
    ("down_proj", "fr", "rd", "fd"),
    ("q_proj", "dr", "rnh", "dnh"),
])
def test_hand_set_delta_lands_on_the_right_weight_and_layer(base, target, a_sub, b_sub,
                                                            w_sub):
  group = lora.TARGETS[target][0]
  cfg = lora.LoraConfig(rank=3, alpha=6.0, targets=(target, "k_proj"))
  adapters, a, b = _hand_set(lora.init_adapters(base, cfg), group, target, layer=1,
                             rng=np.random.default_rng(0))
  merged = lora.merge(adapters, base)
  w = np.asarray(base["layers"][group][target])
  got = np.asarray(merged["layers"][group][target]) - w
  want = 2.0 * np.einsum(f"{a_sub},{b_sub}->{w_sub}", a[1], b[1])
  np.testing.assert_allclose(got[1], want, atol=1e-5)
  np.testing.assert_array_equal(got[0], 0.0)
  # LoRA semantics: x @ W' == x @ W + scale * (x @ A) @ B for an input x of W's in-axes.
  n_in = lora.TARGETS[target][1]
  x = np.random.default_rng(1).normal(size=w.shape[1:1 + n_in]).astype(np.float32)
  xin = "".join(w_sub[:n_in])
  w_new = np.asarray(merged["layers"][group][target])
  lhs = np.einsum(f"{xin},{w_sub}->{w_sub[n_in:]}", x, w_new[1])
  xa = np.einsum(f"{xin},{a_sub}->r", x, a[1])
  rhs = (np.einsum(f"{xin},{w_sub}->{w_sub[n_in:]}", x, w[1])
         + 2.0 * np.einsum(f"r,{b_sub}->{b_sub[1:]}", xa, b[1]))
  np.testing.assert_allclose(lhs, rhs, atol=1e-4)
  # Everything else is untouched (k_proj is a target but its B is still zero).
  skip = f"['layers']['{group}']['{target}']"
  base_leaves, merged_leaves = _leaves_with_paths(base), _leaves_with_paths(merged)
  for k in base_leaves:
    if k != skip:
      np.testing.assert_array_equal(merged_leaves[k], base_leaves[k], err_msg=k)


def test_bf16_base_f32_adapters_and_export(base):
  cfg = lora.LoraConfig(rank=2, targets=("up_proj",))
  adapters, a, b = _hand_set(lora.init_adapters(base, cfg), "mlp", "up_proj", layer=0,
                             rng=np.random.default_rng(2))
  base_bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), base)
  merged = jax.jit(lora.merge)(adapters, base_bf16)
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(merged))
  want = (np.asarray(base_bf16["layers"]["mlp"]["up_proj"], np.float32)
          + 8.0 * np.einsum("ldr,lrf->ldf", a, b))
  np.testing.assert_allclose(np.asarray(merged["layers"]["mlp"]["up_proj"], np.float32),
                             want, rtol=1e-2, atol=1e-2)
  exported = lora.merge_for_export(adapters, base_bf16)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(exported))
  np.testing.assert_allclose(np.asarray(exported["layers"]["mlp"]["up_proj"]), want,
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(exported["embed"], np.asarray(base_bf16["embed"], np.float32))


# ------------------------------------------------------------------------ training

def test_train_step_lowers_loss_and_leaves_base_untouched(base):
  cfg = lora.LoraConfig(rank=4, alpha=8.0, targets=("q_proj", "v_proj", "down_proj"))
  adapters = lora.init_adapters(base, cfg)
  optimizer = step.make_optimizer(
      step.OptimConfig(learning_rate=1e-2, decay="constant", total_steps=10), adapters)
  state = step.init_state(adapters, base, optimizer)
  base_before = jax.tree.map(np.array, base)
  adapters_before = jax.tree.map(np.array, adapters)
  batch = {k: jnp.asarray(v) for k, v in _batch().items()}
  train = jax.jit(functools.partial(step.train_step, config=TINY, optimizer=optimizer,
                                    merge=lora.merge))
  loss = functools.partial(step.eval_loss, config=TINY, merge=lora.merge)
  loss_0 = float(loss(state.params, state.frozen, batch))
  losses = []
  for _ in range(5):
    state, metrics = train(state, batch)
    losses.append(float(metrics["loss"]))
  loss_1 = float(loss(state.params, state.frozen, batch))
  assert losses[0] == pytest.approx(loss_0, rel=1e-5)
  assert loss_1 < loss_0 - 0.05, (loss_0, losses, loss_1)
  # The frozen base is bit-identical; every adapter leaf moved (A from step two on, once
  # B is non-zero), and the merged model differs from the base on the targets only.
  _assert_trees_identical(state.frozen, base_before)
  for k, before in _leaves_with_paths(adapters_before).items():
    assert not np.array_equal(_leaves_with_paths(state.params)[k], before), k
  merged = _leaves_with_paths(lora.merge(state.params, state.frozen))
  targets = {f"['layers']['{lora.TARGETS[t][0]}']['{t}']" for t in cfg.targets}
  for k, before in _leaves_with_paths(base_before).items():
    assert np.array_equal(merged[k], before) == (k not in targets), k


# -------------------------------------------------------------------------- errors

@pytest.mark.parametrize("kwargs,match", [
    (dict(rank=0), "rank must be an int >= 1"),
    (dict(rank=-2), "rank must be an int >= 1"),
    (dict(rank=4, targets=("q_proj", "w_proj")), "valid targets: q_proj, k_proj, v_proj, "
                                                  "o_proj, gate_proj, up_proj, down_proj"),
    (dict(rank=4, targets=()), "targets is empty"),
    (dict(rank=4, targets=("q_proj", "q_proj")), "more than once"),
    (dict(rank=4, alpha=0.0), "alpha must be > 0"),
])
def test_config_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    lora.LoraConfig(**kwargs)


def test_targets_list_becomes_tuple():
  assert lora.LoraConfig(rank=1, targets=["o_proj"]).targets == ("o_proj",)


# ------------------------------------------------------------------------ sharding

def test_adapter_axes_shard_on_a_2x4_mesh(base):
  cfg = lora.LoraConfig(rank=4, targets=ALL_TARGETS)
  adapters = lora.init_adapters(base, cfg)
  base_axes = models.logical_axes(TINY)
  axes = lora.adapter_axes(adapters, base_axes)
  is_axes = lambda x: isinstance(x, tuple) and all(isinstance(a, (str, type(None)))
                                                   for a in x)
  assert jax.tree.structure(axes, is_leaf=is_axes) == jax.tree.structure(adapters)
  o = axes["layers"]["attn"]["o_proj"]
  assert o.a == ("layers", "heads", "head_dim", None) and o.b == ("layers", None, "embed")
  q = axes["layers"]["attn"]["q_proj"]
  assert q.a == ("layers", "embed", None) and q.b == ("layers", None, "heads", "head_dim")

  mesh = mesh_lib.make_mesh((2, 4))
  optimizer = step.make_optimizer(step.OptimConfig(learning_rate=1e-3), adapters)
  state_shape = jax.eval_shape(lambda: step.init_state(adapters, base, optimizer))
  shardings = step.state_shardings(state_shape, axes, base_axes, mesh,
                                   mesh_lib.TRAINING_RULES, optimizer)
  q_sh = shardings.params["layers"]["attn"]["q_proj"]
  assert q_sh.a.spec == jax.sharding.PartitionSpec(None, "data", None)
  assert q_sh.b.spec == jax.sharding.PartitionSpec(None, None, "model", None)
  down = shardings.params["layers"]["mlp"]["down_proj"]
  assert down.a.spec == jax.sharding.PartitionSpec(None, "model", None)
  # One sharded step runs end to end (the batch's 4 rows split over data).
  state = jax.device_put(step.init_state(adapters, base, optimizer), shardings)
  train = step.jit_train_step(TINY, optimizer, lora.merge, 1, shardings, mesh)
  state, metrics = train(state, {k: jnp.asarray(v) for k, v in _batch().items()})
  assert np.isfinite(float(metrics["loss"])) and int(state.step) == 1
  assert state.params["layers"]["attn"]["q_proj"].b.sharding.spec == q_sh.b.spec
