"""The one resolver of user import paths, 'package.module:attribute'.

Configs name user code by path (a selection strategy's answer_fn, a user metric) so that a
run record says which function ran; every such path goes through resolve_import_path, so
they all accept the same form and fail with the same messages.
"""

from __future__ import annotations

import importlib


def resolve_import_path(path: str, what: str = "callable") -> object:
  """'package.module:name' (or 'package.module:Class.attr') -> that attribute.

  It does not check what the attribute is (callable, Scorer, constant): the caller does,
  with its own message. `what` names the thing in the errors ("answer_fn", "user metric").
  Raises ValueError for a malformed path, a module that cannot be imported, or a missing
  attribute.
  """
  module_name, sep, attr = str(path).partition(":")
  # A relative module name would need a package to resolve against; none is meant here.
  if not sep or not module_name or not attr or module_name.startswith("."):
    raise ValueError(f"expected the {what} as 'package.module:function', got {path!r}")
  try:
    obj = importlib.import_module(module_name)
  except ImportError as e:
    raise ValueError(f"{what} {path!r}: cannot import {module_name!r} ({e}); make the module "
                     "importable (on PYTHONPATH or pip-installed)") from e
  for part in attr.split("."):
    if not hasattr(obj, part):
      raise ValueError(f"{what} {path!r}: {module_name} has no attribute {attr!r}")
    obj = getattr(obj, part)
  return obj
