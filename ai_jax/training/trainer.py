"""The training loop: config -> model, data, sharded state, jitted steps, checkpoints,
metrics and the exported student. `ai_jax.train` is its command line."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time

import jax
import numpy as np

from ai_jax import models
from ai_jax.sharding import mesh as mesh_lib
from ai_jax.run import layout
from ai_jax.store.atomic import write_bytes_atomic, write_json_atomic
from ai_jax.training import checkpoint, data as data_lib, step as step_lib


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """Every key of configs/train.py as the trainer uses it, read from the config once."""
  seed: int
  mesh_shape: tuple[int, ...]
  model_path: str                 # "" = the embedded default
  compute_dtype: str
  data: dict                      # path, max_len, too_long, min_bucket, chat_template
  batch_size: int
  grad_accum_steps: int
  epochs: float
  steps: int                      # > 0 overrides epochs
  stop_after_steps: int
  optim: dict                     # step_lib.OptimConfig's fields but total_steps
  lora: dict                      # rank (0 = full fine-tuning), alpha, targets
  checkpoint_every_steps: int
  checkpoint_keep: int
  export_hf: bool


def settings(config) -> TrainSettings:
  return TrainSettings(
      seed=int(config.seed), mesh_shape=tuple(config.mesh_shape),
      model_path=config.model.path, compute_dtype=config.model.compute_dtype,
      data=dict(config.data.to_dict()), batch_size=int(config.train.batch_size),
      grad_accum_steps=max(1, int(config.train.grad_accum_steps)),
      epochs=config.train.epochs, steps=int(config.train.steps),
      stop_after_steps=int(config.train.stop_after_steps), optim=dict(config.optim.to_dict()),
      lora={**config.lora.to_dict(), "targets": tuple(config.lora.targets)},
      checkpoint_every_steps=int(config.checkpoint.every_steps),
      checkpoint_keep=int(config.checkpoint.keep), export_hf=bool(config.export.hf))


def optim_config(s: TrainSettings, total_steps: int) -> step_lib.OptimConfig:
  return step_lib.OptimConfig(total_steps=total_steps, **s.optim)


def _lora(s: TrainSettings):
  if not s.lora["rank"]:
    return None
  from ai_jax.training import lora
  return lora.LoraConfig(rank=s.lora["rank"], alpha=s.lora["alpha"],
                         targets=s.lora["targets"], init_seed=s.seed)


def _total_steps(s: TrainSettings, iterator: data_lib.BatchIterator) -> int:
  if s.steps:
    return s.steps
  return int(s.epochs * iterator.batches_per_epoch)


class MetricsLog:
  """train_metrics.jsonl (one line per step, appended and flushed), plus TensorBoard
  when tensorboardX is installed."""

  def __init__(self, workdir: str, resume_step: int):
    run_dir = layout.TrainDir(workdir)
    self.path = run_dir.metrics_log
    kept = []
    if os.path.exists(self.path):  # drop lines past the checkpoint we resume from
      with open(self.path, encoding="utf-8") as f:
        kept = [line for line in f if line.endswith("\n")
                and json.loads(line)["step"] <= resume_step]
    with open(self.path, "w", encoding="utf-8") as f:
      f.writelines(kept)
    self.file = open(self.path, "a", encoding="utf-8")
    self.tb = None
    try:
      from tensorboardX import SummaryWriter
      self.tb = SummaryWriter(run_dir.tensorboard)
    except ImportError:
      pass

  def write(self, record: dict) -> None:
    self.file.write(json.dumps(record) + "\n")
    self.file.flush()
    if self.tb is not None:
      for k, v in record.items():
        if k != "step" and isinstance(v, (int, float)):
          self.tb.add_scalar(k, v, record["step"])

  def close(self) -> None:
    self.file.close()
    if self.tb is not None:
      self.tb.close()

  def records(self) -> list[dict]:
    with open(self.path, encoding="utf-8") as f:
      return [json.loads(line) for line in f if line.strip()]


def plot_loss(records: list[dict], path: str) -> None:
  from ai_jax import plotting
  fig = plotting.new_figure(6, 4)
  ax = fig.add_subplot(1, 1, 1)
  ax.plot([r["step"] for r in records], [r["loss"] for r in records], lw=1)
  ax.set_xlabel("step")
  ax.set_ylabel("train loss (completion tokens)")
  ax.grid(alpha=0.3)
  write_bytes_atomic(path, plotting.png_bytes(fig, tight=False))


# Jitted train steps by everything that decides them: the students of an experiment (one
# per arm, equal settings) then share one compiled step instead of compiling it each.
_STEPS: dict[tuple, object] = {}
_MAX_STEPS = 4


def _shared_step(model_config, optim, lora_config, accum: int, mesh, build):
  """The jitted step for these settings, built once per process. The optimizer, merge and
  shardings it closes over are functions of the key (model, optimizer settings incl. the
  step budget, LoRA, accumulation, mesh), so an equal key is an equal step."""
  key = (model_config, optim, lora_config, accum, mesh)
  if key not in _STEPS:
    if len(_STEPS) >= _MAX_STEPS:
      _STEPS.pop(next(iter(_STEPS)))
    _STEPS[key] = build()
  return _STEPS[key]


def run(config, workdir: str, overwrite: bool = False, final_checkpoint: bool = True) -> dict:
  """Trains (or resumes) one student in `workdir`; returns train_summary.json's contents.

  final_checkpoint=False skips the save after the last step, for a caller that keeps only
  the export and deletes the checkpoints (the experiment without keep_checkpoints): that
  save is the run's largest write (params and both Adam moments), deleted right after. A
  crash before the export then resumes from the last periodic checkpoint, to the same
  result.
  """
  from tqdm import tqdm

  from ai_jax import loading

  s = settings(config)
  run_dir = layout.TrainDir(workdir)
  if overwrite:
    for path in run_dir.overwritten:
      if os.path.isdir(path):
        shutil.rmtree(path)
      elif os.path.exists(path):
        os.remove(path)
  os.makedirs(workdir, exist_ok=True)
  rows = data_lib.read_training_rows(s.data["path"])  # cheap checks before the model

  mesh = mesh_lib.make_mesh(s.mesh_shape)  # a host trains on its own devices
  model = loading.load_model(s.model_path or None, dtype="float32", mesh=None)
  model_config = model.config.replace(dtype=s.compute_dtype)
  max_len = min(s.data["max_len"], model_config.max_position_embeddings)
  examples, data_stats = data_lib.encode_rows(rows, model.tokenizer, max_len,
                                              s.data["too_long"], s.data["chat_template"])
  data_axis = mesh.shape["data"]
  accum = s.grad_accum_steps
  if s.batch_size % (data_axis * accum):
    raise ValueError(f"train.batch_size={s.batch_size} must be a multiple of the "
                     f"data axis ({data_axis}) x grad_accum_steps ({accum})")
  iterator = data_lib.BatchIterator(examples, s.batch_size, int(model.tokenizer.pad_id),
                                    max_len, s.data["min_bucket"], seed=s.seed)
  total_steps = _total_steps(s, iterator)
  optim = optim_config(s, total_steps)

  base = jax.device_get(model.params)
  lora_config = _lora(s)
  base_axes = models.logical_axes(model_config)
  if lora_config is None:
    trainable, frozen, merge = base, {}, step_lib.identity_merge
    trainable_axes, frozen_axes = base_axes, {}
  else:
    from ai_jax.training import lora
    allowed = models.lora_targets(model_config)
    if set(lora_config.targets) - set(allowed):
      raise ValueError(f"train.lora.targets={list(lora_config.targets)}: the "
                       f"{model_config.family} family adapts {', '.join(allowed)}")
    trainable, frozen, merge = lora.init_adapters(base, lora_config), base, lora.merge
    trainable_axes, frozen_axes = lora.adapter_axes(trainable, base_axes), base_axes
  optimizer = step_lib.make_optimizer(optim, trainable)
  init_fn = lambda t, f: step_lib.init_state(t, f, optimizer, s.seed)  # noqa: E731
  state_shape = jax.eval_shape(init_fn, trainable, frozen)
  rules = mesh_lib.TRAINING_RULES
  shardings = step_lib.state_shardings(state_shape, trainable_axes, frozen_axes, mesh, rules,
                                       optimizer)
  compat = {"model": dataclasses.asdict(model_config),
            "lora": dataclasses.asdict(lora_config) if lora_config else None,
            "trainable": checkpoint.tree_signature(state_shape.params),
            "opt_state": checkpoint.tree_signature(state_shape.opt_state)}

  mngr = checkpoint.manager(run_dir.checkpoints, s.checkpoint_keep)
  restored = checkpoint.restore_latest(mngr, checkpoint.abstract_like(state_shape, shardings),
                                       compat)
  if restored is None:
    state = jax.jit(init_fn, out_shardings=shardings)(trainable, frozen)
    start = 0
  else:
    state, data_state, start = restored
    iterator.restore(data_state)
  del base, trainable, frozen, model

  step_fn = _shared_step(model_config, optim, lora_config, accum, mesh, lambda: (
      step_lib.jit_train_step(model_config, optimizer, merge, accum, shardings, mesh)))
  batch_sharding = mesh_lib.batch_sharding(mesh, 2)
  schedule = step_lib.learning_rate_schedule(optim)
  log = MetricsLog(workdir, start)
  t_start = time.time()
  # stop_after_steps ends this process early, as a preemption would (the schedule still
  # spans total_steps); the rerun resumes from the last checkpoint.
  end = total_steps if not s.stop_after_steps else min(total_steps,
                                                       start + s.stop_after_steps)
  with tqdm(total=total_steps, initial=start, unit="step", desc="training",
            dynamic_ncols=True) as bar:
    for step in range(start, end):
      batch = next(iterator)
      order_digest = hashlib.sha256(batch["example_ids_B"].tobytes()).hexdigest()[:12]
      batch = {k: jax.device_put(v, batch_sharding) for k, v in batch.items()
               if k.endswith("_BT")}
      t0 = time.time()
      state, metrics = step_fn(state, batch)
      metrics = jax.device_get(metrics)
      dt = time.time() - t0
      record = {"step": step + 1, "loss": float(metrics["loss"]),
                "learning_rate": float(schedule(step)), "grad_norm": float(metrics["grad_norm"]),
                "tokens": int(metrics["tokens"]), "step_seconds": round(dt, 4),
                "tokens_per_second": round(float(metrics["tokens"]) / max(dt, 1e-9), 1),
                "epoch": iterator.epoch, "batch_digest": order_digest}
      if not np.isfinite(record["loss"]):
        raise FloatingPointError(f"loss is {record['loss']} at step {step + 1}; lower "
                                 "optim.learning_rate or check the training data")
      log.write(record)
      bar.update(1)
      bar.set_postfix(loss=f"{record['loss']:.4f}")
      done = step + 1
      if done == total_steps:
        save = final_checkpoint
      else:  # periodic, or where stop_after_steps ends this process
        save = done % s.checkpoint_every_steps == 0 or done == end
      if save:
        checkpoint.save(mngr, done, state, iterator.state(), compat)
  log.close()
  records = log.records()
  if records:
    plot_loss(records, run_dir.loss_plot)

  export_dir = run_dir.export_hf
  finished = end == total_steps
  if s.export_hf and finished:
    export_student(state, merge, model_config, s.model_path, export_dir)
  summary = {"steps": total_steps, "resumed_from_step": start, "stopped_at_step": end,
             "finished": finished,
             "train_seconds": round(time.time() - t_start, 2),
             "data": dataclasses.asdict(data_stats), "batches_per_epoch": iterator.batches_per_epoch,
             "final_loss": records[-1]["loss"] if records else None,
             "first_loss": records[0]["loss"] if records else None,
             "export": export_dir if s.export_hf and finished else None,
             "lora": dataclasses.asdict(lora_config) if lora_config else None}
  write_json_atomic(run_dir.summary, summary)
  return summary


def export_student(state, merge, model_config, model_path: str, path: str) -> None:
  """Writes the (merged) student as an HF checkpoint that ai_jax.load_model and
  transformers both load; the tokenizer is the base model's."""
  from ai_jax import loading
  params = jax.device_get(merge(state.params, state.frozen))
  params = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
  tokenizer, source = loading.load_tokenizer(model_path or None)
  student = loading.LoadedModel(config=model_config.replace(dtype="float32"), params=params,
                                tokenizer=tokenizer, mesh=None, source=source)
  loading.export_hf(student, path, overwrite=True)
