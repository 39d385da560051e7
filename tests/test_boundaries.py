"""Module boundaries: no module imports a command module (python -m ai_jax.<stage>, the
experiments' command lines), and the modules of ai_jax/ import each other without a
cycle (counting imports inside functions too, so a cycle cannot hide in a lazy import)."""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = {"ai_jax.sample", "ai_jax.score", "ai_jax.select", "ai_jax.train", "ai_jax.profile",
            "ai_jax.cli", "experiments.active_inheritance", "experiments.sweep", "experiments.steer"}


def _modules(top: str) -> dict[str, str]:
  out = {}
  for folder, _, files in os.walk(os.path.join(REPO, top)):
    for f in files:
      if f.endswith(".py"):
        rel = os.path.relpath(os.path.join(folder, f), REPO)[:-3].replace(os.sep, ".")
        out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = \
            os.path.join(folder, f)
  return out


def _imports(path: str, known: set[str]) -> set[str]:
  """The modules of `known` that the file imports (anywhere in it)."""
  found = set()
  for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      # `from pkg import mod` imports pkg.mod; `from pkg.mod import name` imports pkg.mod.
      subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known]
      names = subs if subs else [node.module]
    else:
      continue
    found |= {n for n in names if n in known}
  return found


def test_no_module_imports_a_command_module():
  modules = {**_modules("ai_jax"), **_modules("experiments"), **_modules("configs"),
             **_modules("benchmarks")}
  offenders = []
  for name, path in modules.items():
    # A command line may start its own stage (the cli helper is imported by commands only).
    imported = _imports(path, COMMANDS) - {"ai_jax.cli"} if name in COMMANDS else \
        _imports(path, COMMANDS)
    offenders += [f"{name} imports {m}" for m in sorted(imported)]
  assert not offenders, offenders


def test_no_import_cycle_inside_ai_jax():
  modules = _modules("ai_jax")
  graph = {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}
  state, cycles = {}, []

  def visit(node, stack):
    state[node] = "open"
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        cycles.append(stack[stack.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, stack + [nxt])
    state[node] = "done"

  for name in sorted(graph):
    if name not in state:
      visit(name, [name])
  assert not cycles, cycles


def test_only_models_and_weights_import_a_model_family():
  """Loader, sampler, trainer, LoRA, sharding, export, experiments and benchmarks go through
  the model interface (`ai_jax.models`), never a family's module."""
  families = {f"ai_jax.models.{name}" for name in ("llama", "qwen2", "gemma3")}
  assert families <= set(_modules("ai_jax")), "a family module was renamed: update this test"
  modules = {**_modules("ai_jax"), **_modules("experiments"), **_modules("configs"),
             **_modules("benchmarks")}
  offenders = [f"{name} imports {m}" for name, path in modules.items()
               if not name.startswith(("ai_jax.models", "ai_jax.weights"))
               for m in sorted(_imports(path, families))]
  assert not offenders, offenders
