"""The crash-safe record store: torn tails, duplicates, SIGKILL at random moments, resume."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ai_jax.store import fingerprint
from ai_jax.store.records import CorruptRecordFile, RecordStore, iter_records
from conftest import subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rec(p, j, text="x", teacher="t"):
  return {"prompt_id": p, "teacher": teacher, "sample_index": j, "text": text}


def test_append_reopen_rotate_and_skip_duplicates(tmp_path):
  store = RecordStore(str(tmp_path), records_per_shard=3)
  assert store.append([_rec("a", 0), _rec("a", 1), _rec("a", 0, "dup in batch")]) == 2
  assert store.append([_rec("a", 1, "again"), _rec("b", 0), _rec("b", 1), _rec("c", 0)]) == 3
  assert [os.path.basename(p) for p in store.shard_paths()] == ["shard-00000.jsonl",
                                                                "shard-00001.jsonl"]
  reopened = RecordStore(str(tmp_path), records_per_shard=3)
  assert len(reopened) == 5 and ("a", "t", 1) in reopened
  assert [r["text"] for r in reopened.records()] == ["x"] * 5
  reopened.append([_rec("d", 0)])
  assert len(open(reopened.shard_paths()[-1]).readlines()) == 3  # filled the open shard


def test_torn_tail_is_dropped_and_kept_aside(tmp_path):
  store = RecordStore(str(tmp_path))
  store.append([_rec("a", 0), _rec("a", 1)])
  path = store.shard_paths()[0]
  with open(path, "ab") as f:
    f.write(b'{"prompt_id": "a", "teacher": "t", "sample_in')
  assert [r["sample_index"] for r in iter_records(str(tmp_path))] == [0, 1]  # read-only view
  reopened = RecordStore(str(tmp_path))
  assert len(reopened) == 2 and reopened.report.torn_bytes == 45
  assert open(path + ".torn", "rb").read().startswith(b'{"prompt_id"')
  assert open(path, "rb").read().endswith(b"}\n")
  reopened.append([_rec("a", 2)])
  assert [r["sample_index"] for r in iter_records(str(tmp_path))] == [0, 1, 2]


def test_a_damaged_middle_line_is_refused_with_its_place(tmp_path):
  store = RecordStore(str(tmp_path))
  store.append([_rec("a", 0), _rec("a", 1)])
  path = store.shard_paths()[0]
  lines = open(path).read().splitlines()
  open(path, "w").write(lines[0] + "\n{garbage\n" + lines[1] + "\n")
  with pytest.raises(CorruptRecordFile, match=r"shard-00000.jsonl:2"):
    RecordStore(str(tmp_path))


def test_duplicate_keys_on_disk_are_reported_once(tmp_path):
  store = RecordStore(str(tmp_path))
  store.append([_rec("a", 0, "first")])
  with open(store.shard_paths()[0], "a") as f:
    f.write(json.dumps(_rec("a", 0, "second")) + "\n")
  reopened = RecordStore(str(tmp_path))
  assert reopened.report.duplicates_ignored == 1
  assert [r["text"] for r in reopened.records()] == ["first"]


def test_fingerprint_refuses_changed_settings(tmp_path):
  fields = {"model": {"digest": "abc"}, "sampling": {"temperature": 1.0, "seed": 0}}
  assert fingerprint.check(str(tmp_path), fields) is False
  fingerprint.write(str(tmp_path), fields)
  assert fingerprint.check(str(tmp_path), fields) is True
  changed = {"model": {"digest": "abc"}, "sampling": {"temperature": 0.7, "seed": 0}}
  with pytest.raises(fingerprint.FingerprintMismatch, match=r"sampling.temperature: 1.0 -> 0.7"):
    fingerprint.check(str(tmp_path), changed)


def test_fingerprints_per_teacher_live_side_by_side(tmp_path):
  fingerprint.write(str(tmp_path), {"model": "a"}, name="teacher/a")
  fingerprint.write(str(tmp_path), {"model": "b"}, name="teacher-b")
  assert fingerprint.check(str(tmp_path), {"model": "a"}, name="teacher/a")
  assert fingerprint.check(str(tmp_path), {"model": "b"}, name="teacher-b")
  assert not fingerprint.check(str(tmp_path), {"model": "c"}, name="teacher-c")
  with pytest.raises(fingerprint.FingerprintMismatch, match="model: 'a' -> 'b'"):
    fingerprint.check(str(tmp_path), {"model": "b"}, name="teacher/a")


_WRITER = textwrap.dedent('''
    import random, sys, time
    from ai_jax.store.records import RecordStore

    def expected(n):
      # Texts of 10..6000 characters, so one append spans many pages and a kill can land
      # inside a write; cheap to build, so the kill lands while writing, not while starting.
      rng = random.Random(1234)
      return [{"prompt_id": f"p{i // 5:04d}", "teacher": "t", "sample_index": i % 5,
               "text": (f"{i}:" + "abcdefgh " * 700)[:rng.randint(10, 6000)]}
              for i in range(n)]

    folder, n = sys.argv[1], int(sys.argv[2])
    store = RecordStore(folder, records_per_shard=500)
    todo = [r for r in expected(n)
            if (r["prompt_id"], r["teacher"], r["sample_index"]) not in store]
    print("ready", flush=True)
    rng = random.Random()
    while todo:
      size = rng.randint(1, 10)
      store.append(todo[:size])
      todo = todo[size:]
      time.sleep(rng.uniform(0, 0.01))  # stretch the run so kills land all along it
    print("done", len(store), flush=True)
''')


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path):
  script = tmp_path / "writer.py"
  script.write_text(_WRITER)
  folder = tmp_path / "store"
  n = 3000
  env = subprocess_env()
  rng = random.Random(0)
  kills, partial = 0, 0
  for attempt in range(60):
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(n)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready", proc.stderr.read().decode()[-2000:]
    time.sleep(rng.uniform(0.0, 0.25))  # the kill lands while the writer is appending
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      kills += 1
      size = len(RecordStore(str(folder), records_per_shard=500))  # reopen repairs a torn tail
      partial += 0 < size < n
    else:
      proc.communicate()
      break  # the writer finished: nothing left to interrupt
    if kills >= 12:
      break
  assert kills >= 10 and partial >= 10, (kills, partial)
  final = subprocess.run([sys.executable, str(script), str(folder), str(n)], env=env,
                         capture_output=True, text=True, timeout=300)
  assert final.returncode == 0, final.stderr[-2000:]
  assert final.stdout.split() == ["ready", "done", str(n)]
  namespace = {}
  exec(_WRITER.split("folder, n =")[0], namespace)
  want = namespace["expected"](n)
  got = list(iter_records(str(folder)))
  key = lambda r: (r["prompt_id"], r["sample_index"])  # noqa: E731
  assert sorted(got, key=key) == want  # every record once, every field intact
  # No line anywhere was lost or doubled (not only the first of each key).
  lines = [line for p in sorted(folder.glob("shard-*.jsonl")) for line in open(p)]
  assert len(lines) == n


def test_read_json_missing_default_and_malformed(tmp_path):
  from ai_jax.store.atomic import read_json, write_json_atomic
  path = str(tmp_path / "x.json")
  assert read_json(path, None) is None
  with pytest.raises(FileNotFoundError):
    read_json(path)
  write_json_atomic(path, {"a": 1})
  assert read_json(path) == {"a": 1}
  with open(path, "w") as f:
    f.write('{"a": ')
  with pytest.raises(ValueError, match="x.json: not valid JSON"):
    read_json(path, None)  # a default covers a missing file, never a broken one


@pytest.mark.parametrize("writer, payload", [("text", "x" * 10), ("bytes", b"x" * 10)])
def test_atomic_writers_leave_no_temp_file_after_a_failure(tmp_path, monkeypatch, writer,
                                                           payload):
  from ai_jax.store import atomic
  path = tmp_path / "out.txt"
  path.write_text("old")

  def fail(*_):
    raise OSError("disk full")
  monkeypatch.setattr(atomic.os, "replace", fail)
  write = atomic.write_text_atomic if writer == "text" else atomic.write_bytes_atomic
  with pytest.raises(OSError, match="disk full"):
    write(str(path), payload)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
  assert path.read_text() == "old"
