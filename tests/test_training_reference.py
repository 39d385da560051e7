"""One training step against transformers+torch on the same weights and batch.

ai_jax's params go through `convert.params_to_hf` into a checkpoint that
`LlamaForCausalLM.from_pretrained` loads (f32, eager attention). Both sides then see the
same right-padded batch of three sequences of different lengths with a completion mask,
and must agree on:
  - the loss: mean cross-entropy over the completion tokens, each predicted from its prefix
    (ours from `token_losses`, torch's from HF logits and from `labels=-100` masking);
  - the gradients of that loss, mapped to HF names and layouts by `params_to_hf`;
  - the parameters after 1 and 3 AdamW steps (`train_step` vs torch.optim.AdamW with
    weight decay only on the parameters our decay mask selects), with and without
    global-norm gradient clipping.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ai_jax import models  # noqa: E402
from ai_jax.training import step as step_lib  # noqa: E402
from ai_jax.training.data import Example, make_batch  # noqa: E402
from ai_jax.weights import convert  # noqa: E402
from ai_jax.weights.safetensors_io import write_hf_checkpoint  # noqa: E402

from conftest import TINY  # noqa: E402

# One worker runs this module (pytest-xdist --dist loadgroup), so its module fixtures are
# built once.
pytestmark = pytest.mark.xdist_group("torch_reference_models")

CONFIGS = {"untied": TINY, "tied": TINY.replace(tie_word_embeddings=True)}
PAD_ID = 0
LOSS_RTOL = 1e-4
GRAD_RTOL = 1e-4
PARAM_ATOL = 1e-5
NAMED_GRADS = ("model.layers.0.self_attn.q_proj.weight", "model.embed_tokens.weight",
               "model.norm.weight")


def _random_params(config, seed=0):
  """init_params with matrices scaled up and norm scales away from 1: at the default
  0.02 init the logits are nearly uniform and norm gradients nearly symmetric, which would
  let layout or masking mistakes hide inside the tolerance."""
  params = models.init_params(config, seed=seed)
  rng = np.random.default_rng(seed)

  def perturb(path, x):
    x = np.asarray(x, np.float32)
    if any("norm" in str(getattr(k, "key", "")) for k in path):
      return x + 0.2 * rng.standard_normal(x.shape).astype(np.float32)
    return 4.0 * x
  return jax.tree_util.tree_map_with_path(perturb, params)


def _batch(config):
  """Three sequences of 16, 11 and 7 tokens in a 16-token bucket: different prompt
  lengths, right padding, completion-only loss."""
  rng = np.random.default_rng(1)
  examples = []
  for n, prompt in ((16, 6), (11, 4), (7, 5)):
    ids = rng.integers(3, config.vocab_size, size=n)
    examples.append(Example(tuple(int(i) for i in ids), prompt))
  batch = make_batch(examples, pad_id=PAD_ID, min_bucket=16, max_len=16, batch_size=3)
  assert batch["input_mask_BT"].sum(1).tolist() == [16, 11, 7]
  return batch


def _torch_model(params, config, tmp_path):
  path = tmp_path / "hf"
  write_hf_checkpoint(path, models.to_hf_config(config), convert.params_to_hf(params, config),
                      overwrite=True)
  model = transformers.LlamaForCausalLM.from_pretrained(
      str(path), dtype=torch.float32, attn_implementation="eager")
  model.train()  # no dropout in Llama; train mode is what a fine-tuning step runs in
  return model


def _torch_inputs(batch):
  tokens = torch.tensor(batch["tokens_BT"], dtype=torch.long)
  mask = torch.tensor(batch["input_mask_BT"], dtype=torch.long)
  # HF shifts labels itself: label t is token t where token t is a completion token.
  labels = torch.where(torch.tensor(batch["loss_mask_BT"]), tokens, torch.tensor(-100))
  return tokens, mask, labels


def _our_loss(params, batch, config):
  loss_sum, count = step_lib.token_losses(params, batch, config)
  return loss_sum / count


def _rel(a, b):
  """Max abs difference relative to the reference's largest magnitude (elementwise
  relative error is meaningless where a gradient crosses zero)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


@pytest.fixture(scope="module")
def case(request, tmp_path_factory):
  config = CONFIGS[request.param]
  params = _random_params(config)
  model = _torch_model(params, config, tmp_path_factory.mktemp(request.param))
  return request.param, config, params, model, _batch(config)


@pytest.mark.parametrize("case", sorted(CONFIGS), indirect=True)
def test_loss_and_grads_match_torch(case):
  name, config, params, model, batch = case
  jbatch = jax.tree.map(jnp.asarray, batch)
  loss, grads = jax.jit(jax.value_and_grad(_our_loss), static_argnums=2)(params, jbatch,
                                                                          config)

  tokens, mask, labels = _torch_inputs(batch)
  model.zero_grad()
  out = model(input_ids=tokens, attention_mask=mask, labels=labels)
  out.loss.backward()
  ref = float(out.loss.detach())
  # The same loss by hand from HF logits: position t predicts token t+1, counted where
  # token t+1 is a completion token.
  logits = out.logits[:, :-1].detach().double()
  targets = tokens[:, 1:]
  weights = torch.tensor(batch["loss_mask_BT"][:, 1:], dtype=torch.float64)
  ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
  manual = float((ce * weights).sum() / weights.sum())

  assert abs(float(loss) - ref) <= LOSS_RTOL * abs(ref), (name, float(loss), ref)
  assert abs(float(loss) - manual) <= LOSS_RTOL * abs(manual), (name, float(loss), manual)

  ours = convert.params_to_hf(jax.device_get(grads), config)
  theirs = {n: p.grad.numpy() for n, p in model.named_parameters()}
  # Tied: torch's lm_head.weight is embed_tokens.weight (one Parameter, both uses'
  # gradients summed into it); ours sums both uses into `embed` the same way.
  assert set(ours) == set(theirs), (name, set(ours) ^ set(theirs))
  errors = {n: _rel(ours[n], theirs[n]) for n in ours}
  for n in NAMED_GRADS:
    assert np.abs(theirs[n]).max() > 0, (name, n, "zero reference gradient")
    assert errors[n] <= GRAD_RTOL, (name, n, errors[n])
  worst = max(errors, key=errors.get)
  assert errors[worst] <= GRAD_RTOL, (name, worst, errors[worst])
  print(f"\n[{name}] loss ours {float(loss):.7f} torch {ref:.7f} "
        f"(rel {abs(float(loss) - ref) / ref:.2e}); max grad rel "
        f"err {errors[worst]:.2e} ({worst}); named: "
        + ", ".join(f"{n.split('.')[-2]} {errors[n]:.2e}" for n in NAMED_GRADS))


def _torch_adamw(model, config, optim: step_lib.OptimConfig, params):
  """torch.optim.AdamW decaying exactly the tensors our decay mask selects: the mask tree
  goes through params_to_hf, so HF names map the same way the weights do."""
  mask = step_lib.decay_mask(params, optim.decay_norms_and_embeddings)
  mask_hf = convert.params_to_hf(
      jax.tree.map(lambda m, p: np.full(p.shape, float(m), np.float32), mask, params), config)
  decay, no_decay = [], []
  for n, p in model.named_parameters():
    (decay if mask_hf[n].all() else no_decay).append(p)
    assert mask_hf[n].all() or not mask_hf[n].any(), n
  assert decay and no_decay
  return torch.optim.AdamW(
      [{"params": decay, "weight_decay": optim.weight_decay},
       {"params": no_decay, "weight_decay": 0.0}],
      lr=optim.learning_rate, betas=(optim.b1, optim.b2), eps=optim.eps)


# The global gradient norm here is about 4, so clip 1.0 really rescales. Tying changes
# which tensor gets the summed gradient, not the optimizer: one clip setting covers it and
# keeps the file fast (each case compiles a train step).
@pytest.mark.parametrize("case,clip", [("untied", 0.0), ("untied", 1.0), ("tied", 1.0)],
                         indirect=["case"])
def test_adamw_steps_match_torch(case, clip):
  name, config, params, model, batch = case
  optim = step_lib.OptimConfig(learning_rate=1e-3, weight_decay=0.1, grad_clip_norm=clip,
                               decay="constant", warmup_steps=0, total_steps=10, b1=0.9,
                               b2=0.999, eps=1e-8)
  optimizer = step_lib.make_optimizer(optim, params)
  state = step_lib.init_state(jax.tree.map(jnp.asarray, params), {}, optimizer)
  step_fn = step_lib.jit_train_step(config, optimizer, step_lib.identity_merge, 1, None)
  jbatch = jax.tree.map(jnp.asarray, batch)

  # Reset the shared fixture model to the starting weights (another test may have stepped it).
  sd = convert.params_to_hf(params, config)
  with torch.no_grad():
    for n, p in model.named_parameters():
      p.copy_(torch.from_numpy(sd[n]))
  model.zero_grad(set_to_none=True)
  opt = _torch_adamw(model, config, optim, params)
  tokens, mask, labels = _torch_inputs(batch)

  report, ill_ever = {}, {}
  for i in range(1, 4):
    state, metrics = step_fn(state, jbatch)
    opt.zero_grad(set_to_none=True)
    loss = model(input_ids=tokens, attention_mask=mask, labels=labels).loss
    loss.backward()
    norm = None
    if clip > 0:
      norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
    opt.step()
    loss = float(loss.detach())
    assert abs(float(metrics["loss"]) - loss) <= LOSS_RTOL * loss, (i, metrics, loss)
    if norm is not None:  # both report the pre-clipping global norm
      assert norm > clip and abs(float(metrics["grad_norm"]) - norm) <= 1e-4 * norm, (
          norm, metrics)
    # Adam divides by sqrt(v_hat) + eps. Where that is ~eps (a gradient ~1e-9 that is f32
    # roundoff around zero on both sides) the update's sign is noise, so an element can
    # differ by up to 2 * lr per step, and keeps that difference afterwards. Elements
    # that were ever below 1e-5 of their tensor's largest sqrt(v_hat) only get that
    # bound (they are few: asserted below); every other element must agree to PARAM_ATOL.
    for n, p in model.named_parameters():
      scale = np.sqrt(opt.state[p]["exp_avg_sq"].numpy() / (1 - optim.b2 ** i))
      ill = (scale < 1e-5 * scale.max()) & (scale > 0)  # exactly 0: no gradient, no update
      ill_ever[n] = ill | ill_ever.get(n, False)
    if i not in (1, 3):
      continue
    ours = convert.params_to_hf(jax.device_get(state.params), config)
    worst, worst_ill, moved = (0.0, ""), 0.0, 0.0
    for n, p in model.named_parameters():
      diff = np.abs(ours[n] - p.detach().numpy())
      moved = max(moved, float(np.max(np.abs(ours[n] - sd[n]))))
      ill = ill_ever[n]
      assert np.all(diff[ill] <= 2 * optim.learning_rate * i), (name, clip, i, n)
      worst_ill = max([worst_ill] + diff[ill].tolist())
      if np.any(~ill) and diff[~ill].max() > worst[0]:
        worst = (float(diff[~ill].max()), n)
    n_ill = sum(int(m.sum()) for m in ill_ever.values())
    total = sum(m.size for m in ill_ever.values())
    assert moved > 0.5 * optim.learning_rate, moved  # the steps did something
    assert worst[0] <= PARAM_ATOL, (name, clip, i, worst)
    assert n_ill <= 1e-3 * total, (name, clip, i, n_ill, total)  # rare, not a blanket pass
    report[i] = (worst, n_ill, total, worst_ill)
  print(f"\n[{name}, clip {clip}] grad norm {float(metrics['grad_norm']):.4f}; max |param "
        f"diff| after 1 step {report[1][0][0]:.2e} ({report[1][0][1]}), after 3 steps "
        f"{report[3][0][0]:.2e} ({report[3][0][1]}); elements ever "
        f"near eps (bound 2 lr): {report[1][1]}, {report[3][1]} of {report[1][2]}, max |diff| "
        f"there {report[3][3]:.2e}")
