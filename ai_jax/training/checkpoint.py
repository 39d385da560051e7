"""Orbax checkpoints of a training run: the TrainState (params, optimizer state, step,
RNG), the data iterator's position and a compatibility record, in one step directory.

The compatibility record holds what a resumed run must share with the saved one (model
config, LoRA settings, the trainable and frozen tree shapes, optimizer structure); a
checkpoint directory from another config is refused with the list of differences instead
of failing deep inside orbax or, worse, restoring into the wrong shapes.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from ai_jax.store import fingerprint as fingerprint_lib


class IncompatibleCheckpoint(ValueError):
  pass


def manager(directory: str, max_to_keep: int = 3) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_names=("state", "data", "compat"))


def tree_signature(tree) -> dict:
  """{path: "dtype[shape]"} for every leaf, comparable across runs."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path): f"{leaf.dtype}{list(leaf.shape)}" for path, leaf in leaves}


def save(mngr: ocp.CheckpointManager, step: int, state, data_state: dict, compat: dict) -> None:
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          data=ocp.args.JsonSave(data_state),
                                          compat=ocp.args.JsonSave(compat)), force=True)
  mngr.wait_until_finished()


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, compat: dict):
  """(state, data_state, step) from the newest checkpoint, or None when there is none."""
  step = mngr.latest_step()
  if step is None:
    return None
  saved = mngr.restore(step, args=ocp.args.Composite(compat=ocp.args.JsonRestore()))["compat"]
  current = fingerprint_lib.json_roundtrip(compat)
  if saved != current:
    changes = fingerprint_lib.describe_changes(saved, current)
    shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8
                                      else "")
    raise IncompatibleCheckpoint(
        f"checkpoints in {mngr.directory} come from an incompatible config ({shown}); "
        "resume with the config they were made with, or use a new --workdir (or --overwrite "
        "to delete them)")
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
  return restored["state"], restored["data"], step


def abstract_like(state_shape, shardings):
  """ShapeDtypeStructs carrying the target shardings, for a sharded restore."""
  if shardings is None:
    return state_shape
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      state_shape, shardings)
