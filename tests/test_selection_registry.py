"""ai_jax.selection.registry and base: a strategy registered from outside the package gets
its config form and the shared per-prompt rules without writing them; registration
errors; the listing does not depend on import order; the modules import no cycle;
ai_jax.imports.resolve_import_path."""

from __future__ import annotations

import ast
import dataclasses
import math
import os
import re
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from ai_jax.imports import resolve_import_path
from ai_jax.selection import base, registry, strategies
from ai_jax.selection.candidates import Candidates, Choice

BUILTIN = ("best", "worst", "random", "first", "weighted", "pareto", "threshold",
           "from_teachers", "self_consistency")
SELECTION_DIR = os.path.dirname(strategies.__file__)
NAN = math.nan


def cands(prompt_id="p", finish=(), **metrics):
  n = len(next(iter(metrics.values())))
  return Candidates(prompt_id=prompt_id, teachers=("t",) * n, sample_indices=tuple(range(n)),
                    scores={m: np.array(v, np.float64) for m, v in metrics.items()},
                    finish_reasons=tuple(finish))


@pytest.fixture
def scratch_registry(monkeypatch):
  # Strategies registered by a test must not outlive it.
  monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _closest_to(registered=True):
  """A newcomer's strategy: the candidate closest to a target value (only its choice)."""

  @dataclasses.dataclass(frozen=True)
  class ClosestTo(base.PerPromptStrategy):
    metric: str
    target: float = 0.0
    exclude_cut: bool = False

    config_name = "closest_to"
    config_variants = {"closest_to_zero_uncut": {"target": 0.0, "exclude_cut": True}}

    def choose(self, group, ok, context):
      distance_N = np.abs(group.metric(self.metric) - self.target)
      return base.best_index(distance_N, ok, maximize=False)

    def required_metrics(self):
      return (self.metric,)

  return registry.register(ClosestTo) if registered else ClosestTo


def test_listing_is_the_builtins_in_order():
  assert registry.known_names() == BUILTIN
  assert strategies.KNOWN_NAMES == BUILTIN


def test_a_new_strategy_gets_configs_and_the_shared_rules(scratch_registry):
  cls = _closest_to()
  assert registry.known_names() == BUILTIN + ("closest_to", "closest_to_zero_uncut")
  s = registry.from_config({"name": "closest_to", "metric": "m", "target": 2})
  assert s == cls("m", 2.0)
  cfg = registry.to_config(s)
  assert cfg == ml_collections.ConfigDict({"name": "closest_to", "metric": "m", "target": 2,
                                           "exclude_cut": False})
  assert registry.from_config(cfg) == s
  # The variant fixes its fields, which are then not its keys; it is recorded by the name.
  v = registry.from_config({"name": "closest_to_zero_uncut", "metric": "m"})
  assert v == cls("m", 0.0, exclude_cut=True)
  assert registry.to_config(v).name == "closest_to"
  with pytest.raises(ValueError, match=re.escape(
      "selection strategy 'closest_to_zero_uncut' has unknown key 'target' "
      "(allowed: name, metric)")):
    registry.from_config({"name": "closest_to_zero_uncut", "metric": "m", "target": 1})
  with pytest.raises(ValueError, match=re.escape(
      "selection strategy 'closest_to' is missing key 'metric' (required: metric)")):
    registry.from_config({"name": "closest_to"})
  # The shared rules run before choose: unsampled, cut and NaN candidates are never seen.
  g = cands(m=[2.0, NAN, 5.0, 2.1, 1.5], finish=["prompt_too_long", "stop", "stop", "length",
                                                   "stop"])
  assert s.select([g]) == [Choice(3)]
  assert cls("m", 2.0, exclude_cut=True).select([g]) == [Choice(4)]
  assert cls("m", 5.0).select([g]) == [Choice(2)]
  assert cls("m").select([cands(m=[NAN, NAN])]) == [Choice(None, "all candidates NaN on m")]
  with pytest.raises(ValueError, match="has no finish_reason"):
    cls("m", exclude_cut=True).select([cands(m=[1.0])])
  # As an inner strategy of a built-in one.
  t = registry.from_config({"name": "threshold", "metric": "m", "max": 0.5,
                            "inner": {"name": "closest_to", "metric": "m"}})
  assert registry.from_config(registry.to_config(t)) == t



def test_prepare_gives_choose_a_context_over_the_whole_table(scratch_registry):
  @registry.register
  @dataclasses.dataclass(frozen=True)
  class AboveTableMean(base.PerPromptStrategy):
    exclude_cut: bool = False
    config_name = "above_table_mean"

    def prepare(self, groups, pools):
      return np.mean(np.concatenate([g.metric("m")[ok] for g, (ok, reason)
                                     in zip(groups, pools) if not reason]))

    def choose(self, group, ok, context):
      above_N = ok & (group.metric("m") > context)
      return int(np.flatnonzero(above_N)[0]) if above_N.any() else Choice(None, "none above")

    def required_metrics(self):
      return ("m",)

  groups = [cands("a", m=[1.0, 9.0]), cands("b", m=[2.0, 3.0]), cands("c", m=[NAN])]
  assert AboveTableMean().select(groups) == [
      Choice(1), Choice(None, "none above"), Choice(None, "all candidates NaN on m")]


def test_choose_must_stay_within_the_eligible_candidates():
  @dataclasses.dataclass(frozen=True)
  class Careless(base.PerPromptStrategy):
    pick: int | Choice = 0
    exclude_cut: bool = False

    def choose(self, group, ok, context):
      return self.pick

  g = cands(m=[1.0, 2.0], finish=["prompt_too_long", "stop"])
  assert Careless(1).select([g]) == [Choice(1)]
  for pick in (0, 2, -1):
    with pytest.raises(RuntimeError, match="not eligible"):
      Careless(pick).select([g])
  with pytest.raises(RuntimeError, match="without a reason"):
    Careless(Choice(None)).select([g])


def test_register_refuses_what_it_cannot_serve(scratch_registry):
  with pytest.raises(TypeError, match="not a dataclass subclassing"):
    registry.register(type("Plain", (), {"config_name": "plain"}))

  @dataclasses.dataclass(frozen=True)
  class Nameless(base.PerPromptStrategy):
    exclude_cut: bool = False
  with pytest.raises(TypeError, match="needs a class attribute config_name"):
    registry.register(Nameless)

  @dataclasses.dataclass(frozen=True)
  class Subclass(strategies.BestOfK):  # inherits "best", which is BestOfK's
    pass
  with pytest.raises(TypeError, match="needs a class attribute config_name"):
    registry.register(Subclass)

  @dataclasses.dataclass(frozen=True)
  class Clash(base.PerPromptStrategy):
    exclude_cut: bool = False
    config_name = "best"
  with pytest.raises(ValueError, match="'best' is taken by ai_jax.selection.strategies.BestOfK"):
    registry.register(Clash)

  @dataclasses.dataclass(frozen=True)
  class BadVariant(base.PerPromptStrategy):
    metric: str
    exclude_cut: bool = False
    config_name = "bad_variant"
    config_variants = {"bad_variant_m": {"metric": "m"}}  # a required field
  with pytest.raises(TypeError, match=r"fixes \['metric'\]"):
    registry.register(BadVariant)
  assert registry.known_names() == BUILTIN
  # Registering the same class again (a reload) keeps its place.
  registry.register(strategies.Random)
  assert registry.known_names() == BUILTIN


def test_to_config_needs_a_registered_class():
  with pytest.raises(ValueError, match="no config form for ClosestTo"):
    registry.to_config(_closest_to(registered=False)("m"))
  with pytest.raises(ValueError, match="no config form for object"):
    registry.to_config(object())


def test_listing_does_not_depend_on_import_order():
  code = ("import ai_jax.selection.{} as first\n"
          "from ai_jax.selection import registry, strategies\n"
          "print(','.join(registry.known_names())); print(','.join(strategies.KNOWN_NAMES))")
  for module in ("filters", "multi_objective"):
    out = subprocess.run([sys.executable, "-c", code.format(module)], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == [",".join(BUILTIN)] * 2, module


def _top_level_imports(path):
  """The ai_jax.selection modules a module imports when it is itself imported."""
  found = set()
  for node in ast.parse(open(path).read()).body:  # module level only: lazy imports are fine
    if isinstance(node, ast.ImportFrom) and node.module:
      if node.module == "ai_jax.selection":
        found |= {f"ai_jax.selection.{a.name}" for a in node.names}
      elif node.module.startswith("ai_jax.selection."):
        found.add(node.module)
    elif isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name.startswith("ai_jax.selection.")}
  return found


def test_selection_modules_import_no_cycle():
  graph = {f"ai_jax.selection.{f[:-3]}": _top_level_imports(os.path.join(SELECTION_DIR, f))
           for f in os.listdir(SELECTION_DIR) if f.endswith(".py") and f != "__init__.py"}
  assert "ai_jax.selection.strategies" not in graph["ai_jax.selection.multi_objective"]
  done, active = set(), []

  def visit(module):
    assert module not in active, f"import cycle: {' -> '.join(active + [module])}"
    if module in done:
      return
    active.append(module)
    for dep in graph.get(module, ()):
      visit(dep)
    active.pop()
    done.add(module)

  for module in graph:
    visit(module)


def test_resolve_import_path():
  assert resolve_import_path("math:pi") == math.pi  # any attribute, not only callables
  assert resolve_import_path("builtins:str.strip") is str.strip
  for path, match in [("math", "expected the user metric as 'package.module:function'"),
                      (":pi", "expected the user metric"), ("math:", "expected the user metric"),
                      (".math:pi", "expected the user metric"),
                      ("no_such_module_xyz:f", "user metric 'no_such_module_xyz:f': cannot "
                       "import 'no_such_module_xyz'"),
                      ("math:tau.x", "user metric 'math:tau.x': math has no attribute 'tau.x'")]:
    with pytest.raises(ValueError, match=re.escape(match)):
      resolve_import_path(path, "user metric")
  with pytest.raises(ValueError, match=re.escape("answer_fn 'math:pi' is a float, not a callable")):
    base.resolve_callable("math:pi", "answer_fn")
  assert strategies.resolve_callable is base.resolve_callable
