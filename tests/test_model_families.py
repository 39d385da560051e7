"""Qwen 2 and Gemma 3 against transformers' PyTorch models (the reference), on tiny random
checkpoints that transformers writes with `save_pretrained`, plus what every family must do
behind the one model interface: KV-cache decode == full forward (a prompt longer than
Gemma's sliding window included), greedy sampling equal on 1 and 8 devices, the shared
prefix of k samples, a train step and LoRA, and the export read back by transformers.

The Llama family has the same checks in test_model.py; the embedded Gemma 3 270M in
test_gemma3_embedded.py. Tolerances are absolute, on raw float32 logits.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from ai_jax import models
from ai_jax.loading import LoadedModel, place_params
from ai_jax.sampling import decode, sampler
from ai_jax.sharding import mesh as mesh_lib
from ai_jax.training import lora, step as step_lib
from ai_jax.weights import convert, safetensors_io
from conftest import load_hf_dir

TOL = 1e-4
VOCAB = 259  # the byte tokenizer's (conftest.CharTokenizer), so the sampler runs too
TOKENS = np.random.default_rng(0).integers(3, VOCAB, size=(2, 24)).astype(np.int32)
COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
              bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.1)
# Gemma: a window of 8 positions, so the 24-token inputs cross it on the sliding layers.
GEMMA = dict(COMMON, num_hidden_layers=3, sliding_window=8, query_pre_attn_scalar=24,
             layer_types=["sliding_attention", "full_attention", "sliding_attention"],
             rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 5e4},
                              "sliding_attention": {"rope_type": "default",
                                                    "rope_theta": 1e3}})
VARIANTS = {
    "qwen2_untied": ("qwen2", dict(COMMON, num_hidden_layers=2, tie_word_embeddings=False,
                                   rope_theta=1e6)),
    "qwen2_tied": ("qwen2", dict(COMMON, num_hidden_layers=2, tie_word_embeddings=True,
                                 rope_theta=1e6)),
    "gemma3": ("gemma3", GEMMA),
    # Gemma 2 style soft-capping of the final logits, small enough to bind.
    "gemma3_softcap": ("gemma3", dict(GEMMA, final_logit_softcapping=2.0)),
}


def _torch_model(variant: str, seed: int = 0):
  family, cfg = VARIANTS[variant]
  torch.manual_seed(seed)
  if family == "qwen2":
    model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**cfg))
  else:
    model = transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(**cfg))
  model = model.eval()
  with torch.no_grad():  # norms init to 1 (gemma: 0) and biases to 0: randomise them
    for _, p in model.named_parameters():
      if p.ndim == 1:
        p.copy_(torch.randn_like(p) * 0.2 + (1.0 if family == "qwen2" else 0.0))
  return model


def _torch_logits(model, tokens):
  with torch.no_grad():
    return model(torch.as_tensor(np.asarray(tokens), dtype=torch.long)).logits.float().numpy()


def _max_diff(a, b):
  return float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


@functools.partial(jax.jit, static_argnames=("config", "last_only"))
def _apply(params, tokens_BT, positions_BT, mask_BT, cache, write_index, *, config,
           last_only=False):
  return models.apply(params, tokens_BT, positions_BT, mask_BT, cache, write_index,
                      config=config, last_only=last_only)


@functools.partial(jax.jit, static_argnames=("config",))
def _forward(params, tokens_BT, *, config):
  return decode.forward_logits(params, tokens_BT, config=config)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  """variant -> (torch model, checkpoint dir, ai_jax config, params, torch logits)."""
  out = {}
  for variant in VARIANTS:
    model = _torch_model(variant)
    path = tmp_path_factory.mktemp(variant)
    # Qwen's checkpoint in shards of ~40 kB: the sharded-index path of the reader.
    shards = {"max_shard_size": "40KB"} if variant == "qwen2_untied" else {}
    model.save_pretrained(path, **shards)
    config, params = load_hf_dir(path)
    out[variant] = (model, str(path), config, params, _torch_logits(model, TOKENS))
  return out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_logits_match_transformers(checkpoints, variant):
  model, path, config, params, ref = checkpoints[variant]
  assert config.family == VARIANTS[variant][0]
  if variant == "qwen2_untied":
    assert len([f for f in os.listdir(path) if f.endswith(".safetensors")]) > 1
  ours = np.asarray(_forward(params, jnp.asarray(TOKENS), config=config))
  diff = _max_diff(ours, ref)
  print(f"\n{variant}: max |ai_jax - torch| logit diff {diff:.3e}")
  assert np.abs(ref).max() > 0.5 and diff <= TOL, f"{variant}: diff {diff:.3g}"
  if "softcap" in variant:
    assert np.abs(ours).max() <= 2.0 + 1e-6  # the cap binds


@pytest.mark.parametrize("variant", ["qwen2_tied", "gemma3_softcap"])
def test_export_loads_in_transformers_and_back(checkpoints, tmp_path, variant):
  model, _, config, params, ref = checkpoints[variant]
  assert models.config_from_hf(models.to_hf_config(config)) == config
  safetensors_io.write_hf_checkpoint(tmp_path, models.to_hf_config(config),
                                     convert.params_to_hf(jax.device_get(params), config))
  loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
  assert type(loaded) is type(model)
  original = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  reloaded = {k: v.detach().numpy() for k, v in loaded.state_dict().items()}
  assert sorted(original) == sorted(reloaded)
  for name, w in original.items():
    np.testing.assert_array_equal(reloaded[name], w, err_msg=name)
  for key in ("layer_types", "sliding_window", "query_pre_attn_scalar",
              "final_logit_softcapping", "rope_parameters", "tie_word_embeddings"):
    assert getattr(loaded.config, key, None) == getattr(model.config, key, None), key
  np.testing.assert_array_equal(_torch_logits(loaded, TOKENS), ref)
  again, params_again = load_hf_dir(tmp_path)
  assert again == config
  jax.tree.map(np.testing.assert_array_equal, params_again, params)


@pytest.mark.parametrize("variant", ["qwen2_untied", "gemma3"])
def test_kv_cache_decode_matches_full_forward(checkpoints, variant):
  """Prefill 5 tokens, then one token per step to 24: past Gemma's window of 8."""
  _, _, config, params, _ = checkpoints[variant]
  tokens = TOKENS[:1]
  full = np.asarray(_forward(params, jnp.asarray(tokens), config=config))[0]
  T, prefill = tokens.shape[1], 5
  cache = models.init_cache(config, 1, T + 3)  # spare slots stay masked
  out, cache = _apply(params, jnp.asarray(tokens[:, :prefill]),
                      jnp.arange(prefill, dtype=jnp.int32)[None], jnp.ones((1, prefill), bool),
                      cache, jnp.int32(0), config=config)
  logits = [np.asarray(out[0])]
  for t in range(prefill, T):
    out, cache = _apply(params, jnp.asarray(tokens[:, t:t + 1]), jnp.full((1, 1), t, jnp.int32),
                        jnp.ones((1, 1), bool), cache, jnp.int32(t), config=config)
    logits.append(np.asarray(out[0]))
  diff = _max_diff(np.concatenate(logits), full)
  assert diff <= TOL, f"{variant}: incremental vs full {diff:.3g}"


def test_gemma_window_is_by_position_in_a_left_padded_batch(checkpoints):
  """A left-padded row sees the same window as the prompt alone (positions, not slots)."""
  _, _, config, params, _ = checkpoints["gemma3"]
  prompts = [TOKENS[0, :20].tolist(), TOKENS[1, :11].tolist()]
  T = 20
  tokens = np.array([[0] * (T - len(p)) + p for p in prompts], np.int32)
  mask = np.array([[False] * (T - len(p)) + [True] * len(p) for p in prompts])
  positions = np.maximum(np.cumsum(mask, axis=-1) - 1, 0).astype(np.int32)
  cache = models.init_cache(config, 2, T)
  last, _ = _apply(params, jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask),
                   cache, jnp.int32(0), config=config, last_only=True)
  for b, prompt in enumerate(prompts):
    alone = np.asarray(_forward(params, jnp.asarray([prompt]), config=config))[0, -1]
    assert _max_diff(last[b, 0], alone) <= TOL, b


def _peaked(params, config):
  # Random weights give near-uniform logits; a final norm scaled 40x makes greedy winners
  # clear, so float reordering across shardings cannot flip an argmax (with tied
  # embeddings, scaling the head would scale the inputs too).
  params = jax.tree.map(np.asarray, params)
  scale = params["final_norm"]["scale"]
  scale = (1 + scale) * 40.0 - 1 if config.norm_unit_offset else scale * 40.0
  return {**params, "final_norm": {"scale": scale}}


@pytest.mark.parametrize("variant", ["qwen2_untied", "gemma3"])
def test_greedy_same_on_one_and_eight_devices(checkpoints, char_tokenizer, variant):
  _, _, config, params, _ = checkpoints[variant]
  params = _peaked(params, config)
  # One prompt longer than Gemma's window (8 positions) before anything is generated.
  prompts = [{"prompt_id": f"p{i}", "prompt": t} for i, t in enumerate(
      ["hi", "a prompt longer than the sliding window", "what is 2+2?", "ok"])]

  def run(shape, num_samples):
    mesh = mesh_lib.make_mesh(shape, jax.devices()[:int(np.prod(shape))])
    model = LoadedModel(config=config, params=place_params(params, config, mesh),
                        tokenizer=char_tokenizer, mesh=mesh, source=variant)
    opts = sampler.SamplingOptions(num_samples=num_samples, max_new_tokens=10, batch_size=4)
    return [(r["prompt_id"], r["sample_index"], r["text"])
            for r in sampler.sample_records(model, prompts, opts)]

  ref = run((1, 1), 2)
  assert len({text for *_, text in ref}) > 1  # not one degenerate output everywhere
  for shape in [(8, 1), (2, 4)]:
    assert run(shape, 2) == ref, shape
  # The shared-prefix path (2 samples per prompt) equals one sample per prompt, whose
  # prompt and answer share one cache: the window is applied the same on both paths.
  assert run((1, 1), 1) == [r for r in ref if r[1] == 0]


@pytest.mark.parametrize("variant", ["qwen2_untied", "gemma3"])
def test_train_step_and_lora(checkpoints, variant):
  _, _, config, params, _ = checkpoints[variant]
  batch = {"tokens_BT": jnp.asarray(TOKENS), "input_mask_BT": jnp.ones(TOKENS.shape, bool),
           "loss_mask_BT": jnp.asarray(np.arange(24) >= 8)[None].repeat(2, 0)}
  optim = step_lib.OptimConfig(learning_rate=1e-2, total_steps=3, decay="constant")
  family_leaf = (("layers", "attn", "q_bias") if variant.startswith("qwen2")
                 else ("layers", "attn", "q_norm", "scale"))

  def leaf(tree, path):
    for key in path:
      tree = tree[key]
    return np.asarray(tree)

  # Full fine-tuning: the loss falls and the family's own params train too.
  optimizer = step_lib.make_optimizer(optim, params)
  state = step_lib.init_state(params, {}, optimizer)
  step = jax.jit(functools.partial(step_lib.train_step, config=config, optimizer=optimizer))
  losses = []
  for _ in range(3):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < losses[0], losses
  assert not np.array_equal(leaf(state.params, family_leaf), leaf(params, family_leaf))

  # LoRA on every target the family allows: the base stays, the loss falls.
  lcfg = lora.LoraConfig(rank=4, targets=models.lora_targets(config))
  adapters = lora.init_adapters(params, lcfg)
  optimizer = step_lib.make_optimizer(optim, adapters)
  state = step_lib.init_state(adapters, params, optimizer)
  step = jax.jit(functools.partial(step_lib.train_step, config=config, optimizer=optimizer,
                                   merge=lora.merge))
  losses = []
  for _ in range(3):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < losses[0], losses
  jax.tree.map(np.testing.assert_array_equal, state.frozen, params)


def test_config_errors():
  qwen = dict(COMMON, model_type="qwen2", num_hidden_layers=2)
  with pytest.raises(ValueError, match="use_sliding_window"):
    models.config_from_hf({**qwen, "use_sliding_window": True})
  gemma = dict(GEMMA, model_type="gemma3_text")
  with pytest.raises(ValueError, match="gelu_pytorch_tanh"):
    models.config_from_hf({**gemma, "hidden_activation": "relu"})
  with pytest.raises(ValueError, match="attn_logit_softcapping.*ignores"):
    models.config_from_hf({**gemma, "attn_logit_softcapping": 50.0})
  with pytest.raises(ValueError, match="multimodal"):
    models.config_from_hf({"model_type": "gemma3", "text_config": gemma})
  with pytest.raises(ValueError, match="layer_types must list 3"):
    models.config_from_hf({**gemma, "layer_types": ["full_attention"]})
  with pytest.raises(ValueError, match="model_type='bert'.*gemma3_text, llama.*qwen2"):
    models.config_from_hf({**qwen, "model_type": "bert"})
  # The default pattern when a config has no layer_types: 5 sliding layers, then 1 global.
  six = models.config_from_hf({**gemma, "layer_types": None,
                                           "num_hidden_layers": 7})
  assert six.sliding_layers == (True,) * 5 + (False, True)
  assert json.loads(json.dumps(models.to_hf_config(six)))["layer_types"][5] == "full_attention"
