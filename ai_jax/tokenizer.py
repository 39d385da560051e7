"""Text <-> token ids for the models ai_jax runs, on the Rust `tokenizers` library.

A GGUF file carries no `tokenizer.json`, only llama.cpp metadata (vocabulary, merges or scores, token
types, special ids, chat template). `Tokenizer.from_gguf` rebuilds the byte-level BPE pipeline ('gpt2')
or the SentencePiece-style one ('llama', Gemma 3: see tokenizer_spm.py) from that metadata;
`Tokenizer.from_pretrained_dir` loads a Hugging Face `tokenizer.json` directory instead.

Pre-tokenization follows the model's *training* tokenizer, which llama.cpp reproduces from
`tokenizer.ggml.pre`. For SmolLM2 ('smollm') that is the published tokenizer.json: Digits(individual)
then GPT-2 ByteLevel, i.e. llama.cpp's ["\\p{N}", gpt2-regex]. transformers (5.x) maps no split for
'smollm' and uses plain ByteLevel when it loads the GGUF, so it differs from us (and from the model's
own tokenizer.json and llama.cpp) when a numeral follows two or more whitespace characters, e.g.
"  1" or indented numbers in code, and on " ½"-like numerals after a space.
"""

from __future__ import annotations

import functools
import json
import os
from datetime import datetime
from typing import Any, Sequence

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
from tokenizers import Tokenizer as _RustTokenizer

from ai_jax.tokenizer_spm import GEMMA3_CHAT_TEMPLATE, spm_backend

_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token_type values
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>")
_CHATML = (
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
  " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_LLAMA3_SPLIT = (
  r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
  r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# llama.cpp pre-tokenizer families that isolate every numeral before the GPT-2 regex.
_DIGIT_SPLIT_PRES = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}
_LLAMA3_PRES = {"llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe", "pixtral"}
_QWEN2_PRES = {"qwen2", "deepseek-r1-qwen", "megrez"}


def _bytes_to_unicode() -> dict[int, str]:
  """GPT-2's printable spelling of the 256 byte values (the alphabet of byte-level vocabularies)."""
  keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
  spelled, extra = dict(zip(keep, map(chr, keep))), 0
  for b in range(256):
    if b not in spelled:
      spelled[b], extra = chr(256 + extra), extra + 1
  return spelled


def _pre_tokenizer(pre: str | None) -> pre_tokenizers.PreTokenizer:
  """The split llama.cpp applies for `tokenizer.ggml.pre`; unknown names get plain GPT-2."""
  if pre in _DIGIT_SPLIT_PRES:
    return pre_tokenizers.Sequence(
      [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
  split = _LLAMA3_SPLIT if pre in _LLAMA3_PRES else _QWEN2_SPLIT if pre in _QWEN2_PRES else None
  if split is None:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  return pre_tokenizers.Sequence(
    [
      pre_tokenizers.Split(Regex(split), behavior="isolated"),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ]
  )


def _read_gguf_metadata(path: str) -> dict[str, Any]:
  from ai_jax.weights.gguf_io import read_gguf_metadata

  # general.architecture picks a default chat template (gemma3) when the file has none.
  meta = read_gguf_metadata(path)
  return {k: v for k, v in meta.items() if k.startswith("tokenizer.") or k == "general.architecture"}


def _byte_level_backend(meta: dict[str, Any], tokens: list[str], types: list[int]) -> _RustTokenizer:
  """The Rust pipeline of a byte-level BPE ('gpt2') GGUF vocabulary (no BOS post-processor)."""
  merges = [tuple(str(m).split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", ())]
  # Vocabulary entries are already byte-level spelled; a stray raw string (not a control
  # token, which stays whole as an added token) is respelled so BPE can reach it.
  spelling = _bytes_to_unicode()
  alphabet = set(spelling.values())
  vocab: dict[str, int] = {}
  for i, (tok, typ) in enumerate(zip(tokens, types)):
    if typ != _CONTROL and not set(tok) <= alphabet:
      tok = "".join(spelling[b] for b in tok.encode("utf-8"))
    vocab.setdefault(tok, i)
  backend = _RustTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
  backend.pre_tokenizer = _pre_tokenizer(meta.get("tokenizer.ggml.pre"))
  backend.decoder = decoders.ByteLevel()
  # Control tokens (<|im_start|>, ...) are special: matched whole in text, never split, and
  # dropped by decode(skip_special_tokens=True). User-defined ones are matched whole too.
  backend.add_special_tokens(
    [AddedToken(t, special=True, normalized=False) for t, y in zip(tokens, types) if y == _CONTROL]
  )
  backend.add_tokens(
    [AddedToken(t, special=False, normalized=False) for t, y in zip(tokens, types) if y == _USER_DEFINED]
  )
  return backend


_GGUF_KINDS = ("gpt2", "llama")  # tokenizer.ggml.model values from_gguf builds


@functools.lru_cache(maxsize=8)
def _backend_from_file(path: str, mtime_ns: int, size: int) -> _RustTokenizer:
  """One parse per tokenizer.json (as it is on disk: a rewritten file has a new mtime):
  an experiment loads its teacher's and students' tokenizers about ten times, 0.23 s each
  for a 49k vocabulary. The parsed pipeline is only read after construction, so the
  Tokenizers that share it cannot disturb one another."""
  del mtime_ns, size  # part of the cache key only
  return _RustTokenizer.from_file(path)


def _token_str(value: Any) -> str | None:
  """Special tokens in tokenizer_config.json are either strings or serialized AddedToken dicts."""
  return value.get("content") if isinstance(value, dict) else value


class Tokenizer:
  """A Rust BPE tokenizer plus the few facts a sampler needs (special ids, chat template).

  All encoding goes through the Rust tokenizer with add_special_tokens=False; BOS is prepended here,
  so the "does this model want BOS" decision lives in one place (`add_bos_default`).
  """

  def __init__(
    self,
    backend: _RustTokenizer,
    *,
    bos_token: str | None,
    eos_token: str,
    pad_token: str | None = None,
    unk_token: str | None = None,
    add_bos_default: bool = False,
    chat_template: str | None = None,
  ):
    self.backend = backend
    self.bos_token, self.eos_token, self.unk_token = bos_token, eos_token, unk_token
    self.pad_token = pad_token if pad_token is not None else eos_token
    self.add_bos_default = bool(add_bos_default and bos_token is not None)
    self.chat_template = chat_template
    self.vocab_size: int = backend.get_vocab_size(with_added_tokens=True)
    self.bos_id: int | None = backend.token_to_id(bos_token) if bos_token is not None else None
    self.eos_id: int = backend.token_to_id(eos_token)
    self.pad_id: int = backend.token_to_id(self.pad_token)
    if self.eos_id is None or self.pad_id is None:
      raise ValueError(f"eos/pad token {eos_token!r}/{self.pad_token!r} is not in the vocabulary")
    ends = {backend.token_to_id(t) for t in _END_OF_TURN} - {None}
    self.stop_ids: frozenset[int] = frozenset({self.eos_id, *ends})

  # ------------------------------------------------------------------ construction
  @classmethod
  def from_gguf(cls, path_or_metadata: str | os.PathLike | dict[str, Any]) -> "Tokenizer":
    """Build from a GGUF path, or from its already-read metadata {key: python value}."""
    if isinstance(path_or_metadata, dict):
      meta = path_or_metadata
    else:
      meta = _read_gguf_metadata(os.fspath(path_or_metadata))
    tokens = meta.get("tokenizer.ggml.tokens")
    if tokens is None or len(tokens) == 0:
      raise ValueError("GGUF metadata has no tokenizer (missing 'tokenizer.ggml.tokens')")
    kind = meta.get("tokenizer.ggml.model")
    if kind not in _GGUF_KINDS:
      raise ValueError(
        f"GGUF tokenizer.ggml.model {kind!r} is not supported; supported kinds: 'gpt2' (byte-level BPE: "
        "SmolLM2, Llama 3, Qwen2) and 'llama' (SentencePiece, Gemma-style: Gemma 3)"
      )
    tokens = [str(t) for t in tokens]
    types = meta.get("tokenizer.ggml.token_type")  # (may be numpy arrays: no truthiness tests)
    types = [int(t) for t in types] if types is not None else [1] * len(tokens)

    def tok(key: str) -> str | None:
      i = meta.get(f"tokenizer.ggml.{key}")
      return tokens[int(i)] if i is not None and 0 <= int(i) < len(tokens) else None

    if kind == "gpt2":
      backend = _byte_level_backend(meta, tokens, types)
    else:
      backend = spm_backend(meta, tokens, types, unk=tok("unknown_token_id"))
    # BOS: GGUF's add_bos_token is what llama.cpp and transformers honour. Absent, llama.cpp adds
    # none for byte-level BPE ('gpt2'; SmolLM2 stores False anyway) and adds it for SentencePiece
    # ('llama'; Gemma 3 stores True), and transformers' GGUF loader does the same.
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", kind == "llama"))
    bos = tok("bos_token_id")
    if add_bos and bos is not None:  # so a saved tokenizer.json alone adds it, like HF Llama 3
      backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, backend.token_to_id(bos) or 0)]
      )
    template = meta.get("tokenizer.chat_template")
    if template is None and meta.get("general.architecture") == "gemma3":
      template = GEMMA3_CHAT_TEMPLATE  # base Gemma 3 GGUFs carry none; the -it models' format
    eos = tok("eos_token_id") or tokens[0]
    return cls(
      backend,
      bos_token=bos,
      eos_token=eos,
      pad_token=tok("padding_token_id"),
      unk_token=tok("unknown_token_id"),
      add_bos_default=add_bos,
      chat_template=template,
    )

  @classmethod
  def from_pretrained_dir(cls, path: str | os.PathLike) -> "Tokenizer":
    """Load `tokenizer.json` (+ `tokenizer_config.json`, `chat_template.jinja` if present)."""
    path = os.fspath(path)
    tj = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(tj):
      raise FileNotFoundError(f"tokenizer.json not found in {path}")
    stat = os.stat(tj)
    backend = _backend_from_file(os.path.realpath(tj), stat.st_mtime_ns, stat.st_size)
    config: dict[str, Any] = {}
    if os.path.isfile(cfg := os.path.join(path, "tokenizer_config.json")):
      with open(cfg, encoding="utf-8") as f:
        config = json.load(f)
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
      template = next((t["template"] for t in template if t.get("name") == "default"), None)
    if os.path.isfile(jinja := os.path.join(path, "chat_template.jinja")):
      with open(jinja, encoding="utf-8") as f:
        template = f.read()
    bos = _token_str(config.get("bos_token"))
    eos = _token_str(config.get("eos_token")) or bos
    if eos is None:
      raise ValueError(f"{path}: tokenizer_config.json names no eos_token")
    add_bos = config.get("add_bos_token")
    if add_bos is None:  # e.g. Llama 3: the post-processor of tokenizer.json prepends BOS
      bos_id = backend.token_to_id(bos) if bos is not None else None
      with_specials = backend.encode("", add_special_tokens=True).ids
      add_bos = bos_id is not None and with_specials[:1] == [bos_id]
    return cls(
      backend,
      bos_token=bos,
      eos_token=eos,
      pad_token=_token_str(config.get("pad_token")),
      unk_token=_token_str(config.get("unk_token")),
      add_bos_default=add_bos,
      chat_template=template,
    )

  def save_pretrained(self, path: str | os.PathLike) -> None:
    """Write tokenizer.json + tokenizer_config.json that transformers.AutoTokenizer loads as-is."""
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    self.backend.save(os.path.join(path, "tokenizer.json"))
    config = {
      # The generic fast class keeps tokenizer.json's pipeline instead of rebuilding one.
      "tokenizer_class": "PreTrainedTokenizerFast",
      "bos_token": self.bos_token,
      "eos_token": self.eos_token,
      "pad_token": self.pad_token,
      "unk_token": self.unk_token,
      "add_bos_token": self.add_bos_default,
      "add_eos_token": False,
      "clean_up_tokenization_spaces": False,
      "chat_template": self.chat_template,
    }
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
      json.dump({k: v for k, v in config.items() if v is not None}, f, indent=2, ensure_ascii=False)

  # ------------------------------------------------------------------ encode / decode
  def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
    """Token ids of `text`. add_bos=None means the model's own default (`add_bos_default`),
    i.e. exactly what transformers' `tokenizer(text)` gives; for SmolLM2 that is no BOS."""
    ids = self.backend.encode(text, add_special_tokens=False).ids
    return self._with_bos(ids, add_bos)

  def encode_batch(self, texts: Sequence[str], add_bos: bool | None = None) -> list[list[int]]:
    """`encode` for many texts at once (parallel in Rust)."""
    out = self.backend.encode_batch(list(texts), add_special_tokens=False)
    return [self._with_bos(e.ids, add_bos) for e in out]

  def _with_bos(self, ids: list[int], add_bos: bool | None) -> list[int]:
    add = self.add_bos_default if add_bos is None else add_bos
    return [self.bos_id, *ids] if add and self.bos_id is not None else list(ids)

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
    return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

  # ------------------------------------------------------------------ chat
  def apply_chat_template(self, messages: list[dict] | str, add_generation_prompt: bool = True) -> str:
    """Render the model's jinja chat template the way transformers does (sandboxed, trim/lstrip
    blocks, `raise_exception`, special-token variables); ChatML if the model has none."""
    if isinstance(messages, str):
      messages = [{"role": "user", "content": messages}]
    specials = {
      "bos_token": self.bos_token,
      "eos_token": self.eos_token,
      "pad_token": self.pad_token,
      "unk_token": self.unk_token,
    }
    specials = {k: v for k, v in specials.items() if v is not None}
    return _compile(self.chat_template or _CHATML).render(
      messages=[dict(m) for m in messages], add_generation_prompt=add_generation_prompt, **specials
    )

  def encode_chat(self, messages_or_prompt: list[dict] | str, add_generation_prompt: bool = True) -> list[int]:
    """Template then encode. BOS only if the model adds it normally and the template did not
    already write it (transformers encodes templates with add_special_tokens=False)."""
    text = self.apply_chat_template(messages_or_prompt, add_generation_prompt)
    add = self.add_bos_default and not (self.bos_token and text.startswith(self.bos_token))
    return self.encode(text, add_bos=add)


_TEMPLATES: dict[str, Any] = {}


def _compile(template: str):
  """A compiled template in an environment configured like transformers' chat-template one."""
  if template not in _TEMPLATES:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
      raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
      return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    class Generation(jinja2.ext.Extension):
      """`{% generation %}...{% endgeneration %}` (assistant-mask markers): render the body."""

      tags = {"generation"}

      def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

      def _body(self, caller):
        return caller()

    env = ImmutableSandboxedEnvironment(
      trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f))
    _TEMPLATES[template] = env.from_string(template)
  return _TEMPLATES[template]
