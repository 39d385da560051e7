"""Prompt files: JSONL with one {"prompt_id", "prompt"} object per line.

Every problem names the file and line, because a silently skipped or misnumbered line
would misalign prompts with their samples further down the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os

BUILTIN_DIR = os.path.join(os.path.dirname(__file__), "builtin")


class PromptFileError(ValueError):
  pass


def builtin_path(name: str) -> str:
  """Path of a prompt set shipped in the package (e.g. "default_prompts")."""
  path = os.path.join(BUILTIN_DIR, name + ".jsonl")
  if not os.path.exists(path):
    known = sorted(f[:-6] for f in os.listdir(BUILTIN_DIR) if f.endswith(".jsonl"))
    raise FileNotFoundError(f"no built-in prompt set {name!r}; known: {known}")
  return path


def resolve_prompt_path(spec: str) -> str:
  """"builtin:NAME" or a file path."""
  return builtin_path(spec[len("builtin:"):]) if spec.startswith("builtin:") else spec


def _default_id(prompt) -> str:
  text = json.dumps(prompt, sort_keys=True, ensure_ascii=False)
  return "sha1-" + hashlib.sha1(text.encode()).hexdigest()[:12]


def read_prompts_jsonl(path: str, limit: int | None = None) -> list[dict]:
  """Reads prompts; a missing prompt_id becomes a hash of the prompt (stable across runs)."""
  path = resolve_prompt_path(path)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"prompt file {path!r} does not exist; pass a JSONL file with one "
        '{"prompt_id": ..., "prompt": ...} object per line, or "builtin:default_prompts".')
  prompts, seen = [], {}
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise PromptFileError(f"{path}:{lineno}: not valid JSON ({e.msg}); each line must be "
                              'an object like {"prompt_id": "p1", "prompt": "..."}') from None
      if not isinstance(row, dict) or "prompt" not in row:
        raise PromptFileError(f"{path}:{lineno}: expected an object with a 'prompt' field, got "
                              f"{line.strip()[:80]!r}")
      prompt = row["prompt"]
      if not isinstance(prompt, (str, list)):
        raise PromptFileError(f"{path}:{lineno}: 'prompt' must be a string or a list of chat "
                              f"messages, got {type(prompt).__name__}")
      prompt_id = str(row["prompt_id"]) if "prompt_id" in row else _default_id(prompt)
      if prompt_id in seen:
        raise PromptFileError(f"{path}:{lineno}: prompt_id {prompt_id!r} already used on line "
                              f"{seen[prompt_id]}; prompt ids must be unique.")
      seen[prompt_id] = lineno
      prompts.append({"prompt_id": prompt_id, "prompt": prompt})
      if limit is not None and len(prompts) >= limit:
        break
  if not prompts:
    raise PromptFileError(f"prompt file {path!r} contains no prompts.")
  return prompts
