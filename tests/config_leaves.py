"""The leaf walk the "no config key is accepted and dropped" tests share: every leaf of a
config changed alone must change what the run resolves to, or be refused by an error that
names it."""

from __future__ import annotations

import copy


def leaves(d: dict, prefix: str = ""):
  """(dotted key, value) for every leaf; an empty section is a leaf."""
  for k, v in d.items():
    if isinstance(v, dict) and v:
      yield from leaves(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}", v


def changed(value):
  """Another value of the same type (what a user's override would be)."""
  if isinstance(value, bool):
    return not value
  if isinstance(value, int):
    return value + 1
  if isinstance(value, float):
    return value * 0.5 + 0.01
  if isinstance(value, str):
    return value + "_x"
  if isinstance(value, (tuple, list)):
    if not value:
      return ("length_words",)
    if all(isinstance(v, str) for v in value):
      return tuple(value[:-1]) if len(value) > 1 else tuple(value) + ("length_chars",)
    return tuple(value[:-1]) + (changed(value[-1]),)
  if isinstance(value, dict):  # an empty section, e.g. select's arms
    return {"extra": {"name": "first"}}
  raise TypeError(f"no change rule for {value!r}")


def with_leaf(config, key: str, value):
  """A copy of the ConfigDict with the dotted key set to value (type checks off)."""
  config = copy.deepcopy(config)
  *parents, leaf = key.split(".")
  node = config
  for part in parents:
    node = node[part]
  with node.ignore_type():
    node[leaf] = value
  return config


def names_it(message: str, key: str, section_prefix: str = "") -> bool:
  """The refusal names the key, one of its sections (as section_prefix + dotted path), or
  the leaf's own name (an arm, a teacher)."""
  parts = key.split(".")
  candidates = {key, parts[-1]} | {
      section_prefix + ".".join(parts[:i]) for i in range(1, len(parts))}
  return any(c in message for c in candidates)


def assert_every_leaf_reaches(config, resolve, errors, *, section_prefix: str = "",
                              skip: tuple[str, ...] = ()) -> None:
  """Changes each leaf of config alone (but those in skip): resolve(changed config) must
  differ from resolve(config), or raise one of errors naming the leaf."""
  base = resolve(config)
  dropped, unnamed = [], []
  for key, value in leaves(config.to_dict()):
    if key in skip:
      continue
    try:
      got = resolve(with_leaf(config, key, changed(value)))
    except errors as e:
      if not names_it(str(e), key, section_prefix):
        unnamed.append(f"{key}: {e}")
      continue
    if got == base:
      dropped.append(key)
  assert not dropped, f"accepted and dropped: {dropped}"
  assert not unnamed, f"refused without naming the key: {unnamed}"
