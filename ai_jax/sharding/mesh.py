"""Device mesh and logical-axis sharding rules.

One code path for 1 CPU, 8 fake CPU devices, a GPU or a TPU pod: arrays are annotated
with logical axis names ("batch", "heads", "mlp", ...) and a rules table maps each name
to a mesh axis ("data", "model") or to None (replicated).

A mesh axis that does not divide a dimension is dropped for that array (it is replicated
along that axis instead): SmolLM2-135M has 9 query heads and 3 kv heads, which no 4-way
model axis divides, and an error there would make the (2, 4) mesh unusable for it.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "model")

# Inference: batch over data, tensor parallelism over model.
SAMPLING_RULES = (
    ("batch", "data"),
    ("vocab", "model"),
    ("heads", "model"),
    ("kv_heads", "model"),
    ("mlp", "model"),
    ("embed", None),
    ("head_dim", None),
    ("layers", None),
    ("cache_seq", None),
)

# Training adds FSDP: parameters' embed dimension is also split over the data axis.
TRAINING_RULES = tuple((name, "data") if name == "embed" else (name, axis)
                       for name, axis in SAMPLING_RULES)


def make_mesh(shape: Sequence[int] = (-1, 1), devices=None) -> Mesh:
  """A ("data", "model") mesh; one entry may be -1 meaning "all remaining devices"; an
  explicit shape uses the first prod(shape) devices.

  By default over this process's devices: in a multi-host run (jax.distributed) each host
  samples, scores and trains its own work items on its own devices (experiments/sweep.py).
  """
  devices = list(devices if devices is not None else jax.local_devices())
  shape = [int(s) for s in shape]
  if len(shape) != 2:
    raise ValueError(f"mesh shape must have 2 entries (data, model), got {shape}")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh shape {shape}: at most one entry may be -1")
  if -1 in shape:
    known = int(np.prod([s for s in shape if s != -1]))
    if known <= 0 or len(devices) % known:
      raise ValueError(f"mesh shape {shape} does not fit {len(devices)} devices")
    shape[shape.index(-1)] = len(devices) // known
  if int(np.prod(shape)) > len(devices):
    raise ValueError(
        f"mesh shape {tuple(shape)} needs {int(np.prod(shape))} devices but "
        f"{len(devices)} are available; set mesh shape to e.g. (-1, 1) or, on CPU, export "
        "XLA_FLAGS=--xla_force_host_platform_device_count=N before starting Python.")
  # An explicit shape may use fewer devices than there are: the first ones (sampling and
  # training follow the same rule).
  devices = devices[:int(np.prod(shape))]
  return Mesh(np.asarray(devices).reshape(shape), MESH_AXES)


def logical_to_spec(axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                    rules=SAMPLING_RULES) -> PartitionSpec:
  """PartitionSpec for one array; each mesh axis used at most once and only if it divides."""
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for name, dim in zip(axes, shape):
    mesh_axis = table.get(name) if name is not None else None
    if (mesh_axis is None or mesh_axis in used or dim % mesh.shape[mesh_axis]
        or mesh.shape[mesh_axis] == 1):
      spec.append(None)
    else:
      spec.append(mesh_axis)
      used.add(mesh_axis)
  return PartitionSpec(*spec)


def tree_shardings(axes_tree, shapes_tree, mesh: Mesh, rules=SAMPLING_RULES):
  """NamedShardings for a pytree, given a same-structured tree of logical axis tuples."""
  is_axes = lambda x: isinstance(x, tuple) and all(isinstance(a, (str, type(None))) for a in x)
  return jax.tree.map(
      lambda axes, x: NamedSharding(mesh, logical_to_spec(axes, np.shape(x), mesh, rules)),
      axes_tree, shapes_tree, is_leaf=is_axes)


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  """Leading (batch) axis over data, the rest replicated."""
  return NamedSharding(mesh, PartitionSpec("data", *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def constrain(tree, mesh: Mesh | None):
  """`tree` (a pytree that knows its `logical_axes()`, e.g. a KVCache) constrained to its
  shardings on `mesh` inside a jitted function; unchanged without a mesh."""
  if mesh is None:
    return tree
  return jax.lax.with_sharding_constraint(
      tree, tree_shardings(tree.logical_axes(), tree, mesh))
