"""Selection strategies by config name: `register`, `from_config`, `to_config`.

A strategy class carries its `config_name` (and any `config_variants`) and is registered
by decorating it with @register; its config keys are its dataclass fields (base.py,
StrategyBase). The built-in strategy modules are imported here on first use, so the
listing holds all of them whichever module was imported first, in the order of
_BUILTIN_MODULES and, within a module, of registration. A strategy outside the package
registers itself when its module is imported, and is listed after the built-ins.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
from typing import Any, Mapping

from ai_jax.selection.base import Strategy, StrategyBase, plain_dict

_BUILTIN_MODULES = ("ai_jax.selection.strategies", "ai_jax.selection.multi_objective",
                    "ai_jax.selection.filters")


@dataclasses.dataclass(frozen=True)
class _Entry:
  cls: type
  fixed: Mapping[str, Any]   # fields a config variant sets ({} for the class's own name)
  order: int                 # registration order

  def keys(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
    required, optional = self.cls.config_keys()
    return (tuple(k for k in required if k not in self.fixed),
            tuple(k for k in optional if k not in self.fixed))

  def rank(self) -> tuple[int, int]:
    module = self.cls.__module__
    where = _BUILTIN_MODULES.index(module) if module in _BUILTIN_MODULES else len(_BUILTIN_MODULES)
    return where, self.order


_REGISTRY: dict[str, _Entry] = {}
_counter = itertools.count()


def register(cls: type) -> type:
  """Class decorator: makes `cls.config_name` (and its config_variants) a name of
  from_config. cls must be a dataclass subclassing base.StrategyBase."""
  if not (isinstance(cls, type) and issubclass(cls, StrategyBase)
          and dataclasses.is_dataclass(cls)):
    raise TypeError(f"register: {cls!r} is not a dataclass subclassing "
                    "ai_jax.selection.base.StrategyBase")
  name = cls.__dict__.get("config_name")  # its own: an inherited name belongs to the parent
  if not isinstance(name, str) or not name:
    raise TypeError(f"register: {cls.__name__} needs a class attribute config_name, the "
                    "'name' of its config")
  _, optional = cls.config_keys()
  entries = {name: {}}
  for variant, fixed in cls.config_variants.items():
    unknown = sorted(set(fixed) - set(optional))
    if unknown:
      raise TypeError(f"register: {cls.__name__} config variant {variant!r} fixes {unknown}, "
                      f"which are not fields with a default ({', '.join(optional)})")
    entries[variant] = dict(fixed)
  for key, fixed in entries.items():
    old = _REGISTRY.get(key)
    # Re-registering the same class (a module reload) replaces it in place.
    if old is not None and (old.cls.__module__, old.cls.__qualname__) != (
        cls.__module__, cls.__qualname__):
      raise ValueError(f"selection strategy name {key!r} is taken by "
                       f"{old.cls.__module__}.{old.cls.__qualname__}; give "
                       f"{cls.__module__}.{cls.__qualname__} another config_name")
    _REGISTRY[key] = _Entry(cls, fixed, old.order if old is not None else next(_counter))
  return cls


def _load() -> None:
  for module in _BUILTIN_MODULES:
    importlib.import_module(module)


def known_names() -> tuple[str, ...]:
  """Every config name from_config accepts: the built-ins first, in their modules' order."""
  _load()
  return tuple(sorted(_REGISTRY, key=lambda name: _REGISTRY[name].rank()))


def accepts_key(name: str, key: str) -> bool:
  """Does the strategy config named `name` take `key`? (False for an unknown name.)"""
  _load()
  entry = _REGISTRY.get(name)
  return entry is not None and key in sum(entry.keys(), ())


def from_config(cfg: Any) -> Strategy:
  """A strategy from {name: ..., <its fields>}, e.g. {name: "best", metric: "length_words"},
  {name: "threshold", inner: {name: "best", ...}, metric: ..., min: ...}."""
  d = plain_dict(cfg, "a selection config")
  known = known_names()
  if "name" not in d:
    raise ValueError(f"selection config is missing key 'name' (one of {', '.join(known)})")
  name = d.pop("name")
  if name not in _REGISTRY:
    raise ValueError(f"unknown selection strategy {name!r}; known: {', '.join(known)}")
  entry = _REGISTRY[name]
  required, optional = entry.keys()
  for key in required:
    if key not in d:
      raise ValueError(f"selection strategy {name!r} is missing key {key!r} "
                       f"(required: {', '.join(required)})")
  for key in sorted(d):
    if key not in required and key not in optional:
      raise ValueError(f"selection strategy {name!r} has unknown key {key!r} "
                       f"(allowed: {', '.join(('name',) + required + optional)})")
  return entry.cls.from_config_dict({**d, **entry.fixed})


def to_config(strategy: Strategy) -> Any:
  """The ConfigDict from_config turns back into an equal strategy (for run records)."""
  import ml_collections
  _load()
  name = getattr(type(strategy), "config_name", None)
  entry = _REGISTRY.get(name) if isinstance(name, str) else None
  if entry is None or entry.fixed or not isinstance(strategy, entry.cls):
    raise ValueError(f"no config form for {type(strategy).__name__}; a strategy with one is "
                     "a dataclass subclassing ai_jax.selection.base.StrategyBase, decorated "
                     "with @ai_jax.selection.registry.register")
  return ml_collections.ConfigDict({"name": name, **strategy.to_config_dict()})
