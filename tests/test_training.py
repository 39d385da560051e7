"""The training loop: masking, overfitting, resume equivalence, devices, export, bad input."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ai_jax import loading
from ai_jax.buckets import bucket_length
from ai_jax import models
from ai_jax.run import layout
from ai_jax.sharding import mesh as mesh_lib
from ai_jax.training import checkpoint, data as data_lib, step as step_lib, trainer
from configs import train as train_config
from conftest import TINY, requires_embedded

@pytest.fixture(scope="module")
def student_dir(tiny_student_dir):
  return tiny_student_dir


def _train_file(path, n=12, long_text=""):
  rows = [{"prompt_id": f"p{i}", "prompt": f"Tell me fact number {i}.",
           "completion": f"Fact {i}: the number {i} is {'even' if i % 2 == 0 else 'odd'}."
           + long_text, "finish_reason": "length" if i == 3 else "stop"} for i in range(n)]
  with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  return str(path)


def _config(student_dir, data_path, **train):
  c = train_config.get_config("smoke")
  c.model.path = student_dir
  c.data.path = data_path
  c.optim.learning_rate = 3e-3
  c.mesh_shape = (2, 1)  # batch 2 over 2 of the 8 fake devices
  for k, v in train.items():
    setattr(c.train, k, v)
  return c


# ------------------------------------------------------------------ data and loss


def test_loss_ignores_labels_of_prompt_and_padding_positions():
  rng = np.random.default_rng(0)
  logits_BTV = jnp.asarray(rng.normal(size=(2, 6, 11)), jnp.float32)
  targets_BT = jnp.asarray(rng.integers(0, 11, size=(2, 6)))
  weights_BT = jnp.asarray([[0, 0, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0]], bool)
  loss, count = step_lib.masked_cross_entropy(logits_BTV, targets_BT, weights_BT)
  changed = targets_BT.at[0, 0].set(3).at[0, 5].set(7).at[1, 4].set(1)  # masked positions
  loss2, _ = step_lib.masked_cross_entropy(logits_BTV, changed, weights_BT)
  assert float(loss) == float(loss2) and float(count) == 5
  touched = targets_BT.at[0, 2].set((int(targets_BT[0, 2]) + 1) % 11)  # an unmasked one
  loss3, _ = step_lib.masked_cross_entropy(logits_BTV, touched, weights_BT)
  assert float(loss3) != float(loss)


@requires_embedded
def test_encoding_masks_prompt_and_keeps_eot_only_for_finished_samples():
  tokenizer, _ = loading.load_tokenizer()
  rows = [{"prompt": "Hi", "completion": "Hello there.", "finish_reason": "stop"},
          {"prompt": "Hi", "completion": "Hello there.", "finish_reason": "length"}]
  examples, stats = data_lib.encode_rows(rows, tokenizer, max_len=64)
  prompt_ids = tokenizer.encode_chat("Hi")
  done, cut = examples
  assert done.tokens[:len(prompt_ids)] == tuple(prompt_ids) and done.num_prompt_tokens == len(
      prompt_ids)
  assert done.tokens[-1] == tokenizer.eos_id and cut.tokens == done.tokens[:-1]
  assert stats.cut_samples_without_eot == 1
  batch = data_lib.make_batch(examples, tokenizer.pad_id, 16, 64, batch_size=3)
  assert batch["tokens_BT"].shape == (3, bucket_length(len(done.tokens), 16, 64))
  assert batch["loss_mask_BT"][0].sum() == len(done.tokens) - len(prompt_ids)
  assert not batch["loss_mask_BT"][2].any() and not batch["input_mask_BT"][2].any()


@requires_embedded
def test_too_long_policies_are_applied_and_counted():
  tokenizer, _ = loading.load_tokenizer()
  rows = [{"prompt": "Hi", "completion": "word " * 100}, {"prompt": "Hi", "completion": "ok"},
          {"prompt": "x " * 80, "completion": "ok"}]
  examples, stats = data_lib.encode_rows(rows, tokenizer, max_len=48, too_long="truncate")
  assert stats.truncated == 1 and stats.skipped_prompt_too_long == 1 and len(examples) == 2
  assert len(examples[0].tokens) == 48 and examples[0].tokens[-1] != tokenizer.eos_id
  examples, stats = data_lib.encode_rows(rows, tokenizer, max_len=48, too_long="skip")
  assert stats.skipped_too_long == 1 and len(examples) == 1
  with pytest.raises(data_lib.TrainingDataError, match="over data.max_len=48"):
    data_lib.encode_rows(rows, tokenizer, max_len=48, too_long="error")


def test_bad_training_files(tmp_path):
  with pytest.raises(data_lib.TrainingDataError, match="does not exist"):
    data_lib.read_training_rows(str(tmp_path / "missing.jsonl"))
  (tmp_path / "empty.jsonl").write_text("\n")
  with pytest.raises(data_lib.TrainingDataError, match="empty"):
    data_lib.read_training_rows(str(tmp_path / "empty.jsonl"))
  (tmp_path / "nocomp.jsonl").write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n')
  with pytest.raises(data_lib.TrainingDataError, match=r"nocomp.jsonl:2: 'completion'"):
    data_lib.read_training_rows(str(tmp_path / "nocomp.jsonl"))


def test_batch_order_is_seeded_per_epoch_and_restorable():
  examples = [data_lib.Example(tuple(range(1, 3 + i)), 1) for i in range(10)]
  it = data_lib.BatchIterator(examples, 3, 0, 32, 4, seed=5)
  ids = [tuple(next(it)["example_ids_B"]) for _ in range(9)]
  assert sorted(i for b in ids[:4] for i in b if i >= 0) == list(range(10))  # epoch 0 whole
  it2 = data_lib.BatchIterator(examples, 3, 0, 32, 4, seed=5)
  for _ in range(5):
    next(it2)
  state = it2.state()
  it3 = data_lib.BatchIterator(examples, 3, 0, 32, 4, seed=5)
  it3.restore(state)
  assert [tuple(next(it3)["example_ids_B"]) for _ in range(4)] == ids[5:]
  assert ids[:4] != ids[4:8]  # a new permutation each epoch


# ------------------------------------------------------------------ the step


def _fresh(params):
  # The jitted step donates the state's buffers; keep the session fixture's alive.
  return jax.tree.map(jnp.array, params)


def _tiny_batch(B=4, T=16, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(3, TINY.vocab_size, size=(B, T)).astype(np.int32)
  input_mask = np.ones((B, T), bool)
  loss_mask = np.zeros((B, T), bool)
  loss_mask[:, T // 2:] = True
  return {"tokens_BT": tokens, "input_mask_BT": input_mask, "loss_mask_BT": loss_mask}


def test_overfitting_a_tiny_batch_drives_the_loss_down(tiny_params):
  optim = step_lib.OptimConfig(learning_rate=1e-2, total_steps=60, decay="constant",
                               grad_clip_norm=1.0)
  optimizer = step_lib.make_optimizer(optim, tiny_params)
  state = step_lib.init_state(_fresh(tiny_params), {}, optimizer)
  fn = step_lib.jit_train_step(TINY, optimizer, step_lib.identity_merge, 1, None)
  batch = _tiny_batch()
  losses = []
  for _ in range(60):
    state, metrics = fn(state, batch)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])


def test_gradient_accumulation_equals_one_big_batch(tiny_params):
  # Adam's first step is g / (|g| + eps) per element: with eps at 1e-8 a gradient near zero
  # turns float noise of the summation order into a visible update; eps 1e-6 keeps the
  # comparison about the gradients, at the same tolerance.
  optim = step_lib.OptimConfig(learning_rate=1e-3, total_steps=10, decay="constant", eps=1e-6)
  optimizer = step_lib.make_optimizer(optim, tiny_params)
  batch = _tiny_batch(B=4)
  batch["loss_mask_BT"][1, :12] = False  # unequal token counts per micro-batch
  outs = []
  for accum in (1, 2, 4):
    state = step_lib.init_state(_fresh(tiny_params), {}, optimizer)
    state, metrics = step_lib.jit_train_step(TINY, optimizer, step_lib.identity_merge, accum,
                                             None)(state, batch)
    outs.append((float(metrics["loss"]), jax.device_get(state.params)))
  for loss, params in outs[1:]:
    assert loss == pytest.approx(outs[0][0], rel=1e-5)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(outs[0][1])):
      np.testing.assert_allclose(a, b, atol=2e-6)


@pytest.mark.parametrize("mesh_shape", [(8, 1), (2, 4)])
def test_sharded_steps_match_one_device(tiny_params, mesh_shape):
  optim = step_lib.OptimConfig(learning_rate=1e-3, total_steps=10, decay="constant")
  optimizer = step_lib.make_optimizer(optim, tiny_params)
  batches = [_tiny_batch(B=8, seed=s) for s in range(3)]

  def run(mesh):
    init = lambda p: step_lib.init_state(p, {}, optimizer)  # noqa: E731
    if mesh is None:
      state, shardings = init(_fresh(tiny_params)), None
    else:
      shape = jax.eval_shape(init, tiny_params)
      shardings = step_lib.state_shardings(shape, models.logical_axes(TINY), {}, mesh,
                                           mesh_lib.TRAINING_RULES, optimizer)
      state = jax.jit(init, out_shardings=shardings)(tiny_params)
    fn = step_lib.jit_train_step(TINY, optimizer, step_lib.identity_merge, 1, shardings, mesh)
    losses = []
    for b in batches:
      if mesh is not None:
        b = {k: jax.device_put(v, mesh_lib.batch_sharding(mesh, 2)) for k, v in b.items()}
      state, m = fn(state, b)
      losses.append(float(m["loss"]))
    return losses, state

  ref, _ = run(None)
  got, state = run(mesh_lib.make_mesh(mesh_shape))
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  embed = state.params["embed"]
  assert len(embed.sharding.device_set) == 8  # FSDP: the embedding is split, not copied


# ------------------------------------------------------------------ the loop


def _params_of(path):
  return jax.device_get(loading.load_model(path, mesh=None).params)


@requires_embedded
def test_resume_after_a_stop_equals_a_straight_run(student_dir, tmp_path):
  data = _train_file(tmp_path / "train.jsonl")
  straight = trainer.run(_config(student_dir, data, steps=6), str(tmp_path / "straight"))
  assert straight["finished"] and straight["final_loss"] < straight["first_loss"]
  first = trainer.run(_config(student_dir, data, steps=6, stop_after_steps=3),
                      str(tmp_path / "resumed"))
  assert not first["finished"] and first["export"] is None
  # Without the final save (the experiment's way when it deletes checkpoints): the same
  # export, and no checkpoint of the last step on disk.
  second = trainer.run(_config(student_dir, data, steps=6), str(tmp_path / "resumed"),
                       final_checkpoint=False)
  assert second["resumed_from_step"] == 3 and second["finished"]
  saved = lambda run: sorted(os.listdir(layout.TrainDir(str(tmp_path / run)).checkpoints))  # noqa: E731
  assert "6" in saved("straight") and "3" in saved("resumed") and "6" not in saved("resumed")
  a = [json.loads(line) for line in open(tmp_path / "straight" / "train_metrics.jsonl")]
  b = [json.loads(line) for line in open(tmp_path / "resumed" / "train_metrics.jsonl")]
  assert [r["batch_digest"] for r in a] == [r["batch_digest"] for r in b]  # same data order
  np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-5)
  for x, y in zip(jax.tree.leaves(_params_of(str(tmp_path / "straight" / "export" / "hf"))),
                  jax.tree.leaves(_params_of(str(tmp_path / "resumed" / "export" / "hf")))):
    np.testing.assert_allclose(x, y, atol=1e-6)
  assert (tmp_path / "straight" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@requires_embedded
def test_exported_student_matches_in_transformers(student_dir, tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  data = _train_file(tmp_path / "train.jsonl")
  out = trainer.run(_config(student_dir, data, steps=2), str(tmp_path / "run"))
  model = loading.load_model(out["export"], mesh=None)
  tokens = np.array([[1, 200, 300, 400, 500, 600]], np.int32)
  from ai_jax.sampling import decode
  ours = np.asarray(decode.forward_logits(model.params, tokens, config=model.config))
  hf = transformers.LlamaForCausalLM.from_pretrained(out["export"], torch_dtype=torch.float32)
  with torch.no_grad():
    ref = hf(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
  np.testing.assert_allclose(ours, ref, atol=1e-4)
  # The student differs from where it started: training did something.
  start = _params_of(student_dir)
  assert not np.allclose(jax.device_get(model.params)["embed"], start["embed"])


@requires_embedded
def test_checkpoints_from_another_config_are_refused(student_dir, tmp_path):
  data = _train_file(tmp_path / "train.jsonl")
  trainer.run(_config(student_dir, data, steps=2, stop_after_steps=1), str(tmp_path / "run"))
  other = _config(student_dir, data, steps=2)
  other.lora.rank = 4
  with pytest.raises(checkpoint.IncompatibleCheckpoint, match="incompatible config"):
    trainer.run(other, str(tmp_path / "run"))
  out = trainer.run(other, str(tmp_path / "run"), overwrite=True)
  assert out["finished"] and out["lora"]["rank"] == 4


def test_empty_training_set_fails_before_loading_a_model(tmp_path):
  (tmp_path / "t.jsonl").write_text("")
  c = train_config.get_config("smoke")
  c.data.path = str(tmp_path / "t.jsonl")
  c.model.path = str(tmp_path / "no-model")
  with pytest.raises(data_lib.TrainingDataError, match="empty"):
    trainer.run(c, str(tmp_path / "run"))


def test_config_variants_build():
  for arg in ("", "lora", "smoke"):
    c = train_config.get_config(arg)
    assert dataclasses.is_dataclass(trainer.optim_config(trainer.settings(c), 10))
