"""Config files: `path.py[:arg]` -> its get_config(arg), and overrides checked by name.

A config file declares every key its stage reads (with a one-line comment); a key that is
not declared does not exist. An override of a key that does not exist is refused in one
line that names it and the keys that do exist there, and an override of a key that an
experiment sets itself names the key that governs it, before anything is loaded.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Mapping


class ConfigKeyError(KeyError):
  """An override names a key the config does not have."""

  def __str__(self) -> str:  # KeyError would print the message quoted
    return str(self.args[0])


def load(spec: str):
  """The ConfigDict of "path/to/config.py[:arg]" (get_config(arg), or get_config())."""
  path, _, arg = str(spec).partition(":")
  if not os.path.exists(path):
    raise FileNotFoundError(f"config file {path!r} does not exist (give path/to/config.py"
                            "[:arg], e.g. configs/active_inheritance.py:smoke)")
  name = "_ai_jax_config_" + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def sibling(config_file: str, name: str):
  """The module of the config file <name>.py beside `config_file` (a config's __file__),
  loaded by path: config files are not an installed package."""
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py")
  module_spec = importlib.util.spec_from_file_location(f"_ai_jax_config_{name}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def _node_keys(node) -> list[str]:
  return sorted(node.keys()) if hasattr(node, "keys") else []


def has_key(config, key: str) -> bool:
  """Whether config has the dotted key (e.g. "sample.prompts.path")."""
  node = config
  for part in key.split("."):
    if part not in _node_keys(node):
      return False
    node = node[part]
  return True


def check_key(config, key: str, governed: Mapping[str, str] | None = None) -> None:
  """Raises ConfigKeyError unless `key` (dotted, without "config.") names a key of config."""
  for governed_key, by in (governed or {}).items():
    if key == governed_key or key.startswith(governed_key + "."):
      raise ConfigKeyError(f"config.{key} is set by the experiment from config.{by}; set that "
                           "instead")
  node, walked = config, []
  for part in key.split("."):
    keys = _node_keys(node)
    if part not in keys:
      where = "config." + ".".join(walked) if walked else "the config"
      shown = ", ".join(keys) if keys else "(none: it is a value, not a section)"
      raise ConfigKeyError(f"config.{key}: {where} has no key {part!r}; its keys are: {shown}")
    node, walked = node[part], walked + [part]


def override_keys(argv: list[str], flag: str = "config") -> list[str]:
  """The dotted keys of --config.KEY[=VALUE] overrides in argv."""
  prefix = f"--{flag}."
  return [a[len(prefix):].split("=", 1)[0] for a in argv if a.startswith(prefix)]


def config_spec(argv: list[str], flag: str = "config") -> str | None:
  """The --config file spec in argv (either --config=SPEC or --config SPEC)."""
  for i, a in enumerate(argv):
    if a.startswith(f"--{flag}="):
      return a.split("=", 1)[1]
    if a == f"--{flag}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def apply(config, overrides: Mapping[str, Any], governed: Mapping[str, str] | None = None):
  """config with {dotted key: value} set, every key checked first (for notebooks)."""
  for key in overrides:
    check_key(config, key, governed)
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config
