"""SentencePiece-style GGUF vocabularies (`tokenizer.ggml.model == "llama"`), as Gemma 3 stores them.

llama.cpp keeps such a vocabulary as pieces + scores + token types and no merges: its tokenizer merges
the adjacent pair whose concatenation is the best-scored piece, and spells unknown characters as the
byte pieces <0x00>..<0xFF>. Hugging Face's own Gemma 3 tokenizer.json (the model's training tokenizer)
is the same vocabulary as a BPE with byte_fallback, a normalizer replacing " " by "▁" and no prefix
space. We rebuild that BPE the way transformers' GGUF loader does (integrations/gguf:
`gemma_tokenizer`), so that `Tokenizer.from_gguf` and `transformers.AutoTokenizer.from_pretrained(dir,
gguf_file=...)` give the same ids (tests/test_tokenizer_gemma.py checks it):

  * merges: every split of a piece into two pieces, best-first by the piece's position in the file
    (Gemma's normal pieces are scored in file order, so this is their score order; the user-defined
    whitespace runs, all scored -1000, rank by position too, i.e. ahead of every normal piece).
  * llama.cpp stores the user-defined space-run pieces with real spaces ("  ", ids 138-167), HF's
    BPE as "▁▁": they are respelled, and BPE reaches them by merging "▁"s; they are not added tokens.
  * control pieces (type 3: <bos>, <start_of_turn>, ...) are special added tokens, matched whole in
    text; user-defined ones (type 4: newline / tab runs, <table>, ...) are plain added tokens.

Where llama.cpp differs we follow transformers (HF's pipeline): llama.cpp matches control
text such as "<start_of_turn>" only when asked to parse specials (HF always does), and it cuts the
user-defined pieces, space runs included, out of the raw text before merging. That gives the same ids
on every string we tried except (1) a run of more than 31 spaces, the longest run piece: 32 spaces are
31 + 1 there (SentencePiece's own matching of user-defined pieces, which llama.cpp mirrors), 16 + 16
here; (2) a literal "▁" in the text, which here is a space like any other.
"""

from __future__ import annotations

from typing import Any

from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as _RustTokenizer

_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token_type values (as in tokenizer.py)

# The chat template of google/gemma-3-*-it (tokenizer_config.json "chat_template", also shipped as
# chat_template.jinja), text for text as two independent public copies of that tokenizer_config.json
# quote it (the Hub itself is out of reach here). A base GGUF (gemma-3-270m) carries none, but the
# family's instruction format is this one; `Tokenizer.from_gguf` uses it for general.architecture
# "gemma3" when the file has no tokenizer.chat_template.
GEMMA3_CHAT_TEMPLATE = (
  "{{ bos_token }}\n"
  "{%- if messages[0]['role'] == 'system' -%}\n"
  "    {%- if messages[0]['content'] is string -%}\n"
  "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
  "    {%- else -%}\n"
  "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
  "    {%- endif -%}\n"
  "    {%- set loop_messages = messages[1:] -%}\n"
  "{%- else -%}\n"
  '    {%- set first_user_prefix = "" -%}\n'
  "    {%- set loop_messages = messages -%}\n"
  "{%- endif -%}\n"
  "{%- for message in loop_messages -%}\n"
  "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
  '        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}\n'
  "    {%- endif -%}\n"
  "    {%- if (message['role'] == 'assistant') -%}\n"
  '        {%- set role = "model" -%}\n'
  "    {%- else -%}\n"
  "        {%- set role = message['role'] -%}\n"
  "    {%- endif -%}\n"
  "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
  "    {%- if message['content'] is string -%}\n"
  "        {{ message['content'] | trim }}\n"
  "    {%- elif message['content'] is iterable -%}\n"
  "        {%- for item in message['content'] -%}\n"
  "            {%- if item['type'] == 'image' -%}\n"
  "                {{ '<start_of_image>' }}\n"
  "            {%- elif item['type'] == 'text' -%}\n"
  "                {{ item['text'] | trim }}\n"
  "            {%- endif -%}\n"
  "        {%- endfor -%}\n"
  "    {%- else -%}\n"
  '        {{ raise_exception("Invalid content type") }}\n'
  "    {%- endif -%}\n"
  "    {{ '<end_of_turn>\\n' }}\n"
  "{%- endfor -%}\n"
  "{%- if add_generation_prompt -%}\n"
  "    {{'<start_of_turn>model\\n'}}\n"
  "{%- endif -%}\n"
)


def spm_backend(meta: dict[str, Any], tokens: list[str], types: list[int], unk: str | None) -> _RustTokenizer:
  """The Rust BPE pipeline of a Gemma-style SentencePiece GGUF vocabulary (no BOS post-processor)."""
  if meta.get("tokenizer.ggml.add_space_prefix", True):
    # llama.cpp's default for SPM is a prefix space (Llama 2, Mistral): a Metaspace pipeline whose
    # merges rank by score, which nothing here builds or tests yet.
    raise ValueError(
      "SentencePiece GGUF vocabularies with a prefix space (tokenizer.ggml.add_space_prefix true or "
      "absent: Llama 2 / Mistral style) are not supported; only Gemma-style ones (add_space_prefix "
      "false) are. Load that model's tokenizer.json with Tokenizer.from_pretrained_dir instead."
    )
  # llama.cpp's converter writes the "▁" of user-defined pieces as " " ("  ", "   ", ...); undo it for
  # the pure-space pieces with transformers' rule, so the merges built from them match HF's.
  spelled = ["\u2581" * len(t) if " " in t and not t.strip() else t for t in tokens]
  vocab = {t: i for i, t in enumerate(spelled)}  # a repeated piece keeps its last id, as in transformers
  backend = _RustTokenizer(
    models.BPE(vocab=vocab, merges=_merges(spelled, vocab), unk_token=unk, fuse_unk=True, byte_fallback=True)
  )
  backend.normalizer = normalizers.Replace(" ", "\u2581")
  # A no-op after the normalizer (no " " is left); kept because transformers' GemmaTokenizer has it,
  # so a saved tokenizer.json is the pipeline transformers builds.
  backend.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
  backend.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
  backend.add_special_tokens(
    [AddedToken(t, special=True, normalized=False) for t, y in zip(tokens, types) if y == _CONTROL]
  )
  # A respelled run ("  " -> "▁▁") is not added: as in HF, BPE reaches it by merging "▁"s.
  backend.add_tokens(
    [
      AddedToken(t, special=False, normalized=False)
      for t, s, y in zip(tokens, spelled, types)
      if y == _USER_DEFINED and t == s
    ]
  )
  return backend


def _merges(tokens: list[str], vocab: dict[str, int]) -> list[tuple[str, str]]:
  """Every (left, right) with left + right == piece and both in `vocab`: pieces in file order, each
  piece's splits longest-left first. That is transformers' `generate_merges(vocab, {t: -id})`, whose
  final sort (score, then left length) fixes this order, so no sort is needed here.

  Gemma: 1.2M split points, 515k merges, ~1.5 s CPU on a busy 2-core machine (of which ~0.45 s is
  building the tuples `models.BPE` requires). A vectorised version (numpy rolling hashes of every
  prefix and suffix, looked up in the pieces' hashes) was no faster, so the plain loop stays.
  """
  # A repeated piece keeps its last id in `vocab`, and transformers orders pieces by that id.
  order = tokens if len(vocab) == len(tokens) else sorted(vocab, key=vocab.__getitem__)
  merges: list[tuple[str, str]] = []
  append = merges.append
  for piece in order:
    for k in range(len(piece) - 1, 0, -1):
      left = piece[:k]
      if left in vocab:
        right = piece[k:]
        if right in vocab:
          append((left, right))
  return merges
