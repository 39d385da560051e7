"""Run fingerprints: the settings that decide a stage's outputs, checked on every reopen.

A stage writes `fingerprint.json` beside its records ({"fingerprint": sha256, "fields":
{...}}). Reopening with other output-deciding settings is refused with the list of what
changed, so records made under two configs are never mixed in one folder. Settings that
only decide how much is done (k, the number of prompts) or how fast (batch size, mesh)
are left out by the caller, so a run can be extended or resumed on other hardware.
"""

from __future__ import annotations

import hashlib
import json
import os

from ai_jax.store.atomic import write_json_atomic

FILE_NAME = "fingerprint.json"


class FingerprintMismatch(ValueError):
  pass


def fingerprint(fields: dict) -> str:
  canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
  return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def describe_changes(old: dict, new: dict) -> list[str]:
  a, b = _flatten(old), _flatten(new)
  return [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}"
          for k in sorted(set(a) | set(b)) if a.get(k, "<unset>") != b.get(k, "<unset>")]


def _file(folder: str, name: str) -> str:
  safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
  return os.path.join(folder, f"fingerprint.{safe}.json" if name else FILE_NAME)


def check(folder: str, fields: dict, name: str = "") -> bool:
  """True if folder has a fingerprint (the one called `name`, e.g. a teacher's) equal to
  fields', False if it has none; raises FingerprintMismatch listing the changes if it has
  another one."""
  path = _file(folder, name)
  if not os.path.exists(path):
    return False
  with open(path, encoding="utf-8") as f:
    old = json.load(f)
  fields = json.loads(json.dumps(fields))  # tuples -> lists, as stored
  if old.get("fingerprint") == fingerprint(fields):
    return True
  changes = describe_changes(old.get("fields", {}), fields)
  raise FingerprintMismatch(
      f"{folder} holds records made with other settings ({'; '.join(changes) or 'unknown'}); "
      "they would be mixed with the new ones. Use a new --workdir, or pass --overwrite to "
      "delete the old records.")


def write(folder: str, fields: dict, name: str = "") -> None:
  os.makedirs(folder, exist_ok=True)
  fields = json.loads(json.dumps(fields))
  write_json_atomic(_file(folder, name),
                    {"fingerprint": fingerprint(fields), "fields": fields})


def json_roundtrip(obj):
  """obj as it reads back from JSON (tuples become lists), for comparisons."""
  return json.loads(json.dumps(obj))
