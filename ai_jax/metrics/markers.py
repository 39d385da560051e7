"""Format markers that users ask to steer: list items, code blocks, questions, paragraphs.

Markdown structure is read line by line; lines inside fenced code blocks are not list
items or questions. An unclosed fence (common in samples cut by max_new_tokens) still
counts as one code block.
"""

from __future__ import annotations

import re

from ai_jax.metrics import registry

_FENCE_RE = re.compile(r"^\s{0,3}(```|~~~)")
_LIST_ITEM_RE = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+\S")
# A question: a run of text ending in '?' that contains a letter (so a lone '?' or '??'
# after a URL query string does not count).
_QUESTION_RE = re.compile(r"[^.!?\n]*?[^\W\d_][^.!?\n]*?\?+(?=\s|$|[\"')\]])")


def _split_code(text: str) -> tuple[list[str], int]:
  """(prose lines outside fenced code, number of fenced blocks)."""
  prose, blocks, fence = [], 0, None
  for line in text.splitlines():
    m = _FENCE_RE.match(line)
    if m and fence is None:
      fence, blocks = m.group(1), blocks + 1
    elif m and m.group(1) == fence:
      fence = None
    elif fence is None:
      prose.append(line)
  return prose, blocks


@registry.text_metric("num_list_items", higher_means="more list items", version="1")
def num_list_items(text: str) -> float:
  """Lines starting a Markdown list item ('-', '*', '+', '•', or '1.'/'1)' followed by
  text), outside fenced code."""
  prose, _ = _split_code(text)
  return float(sum(1 for line in prose if _LIST_ITEM_RE.match(line)))


@registry.text_metric("num_code_blocks", higher_means="more code blocks", version="1")
def num_code_blocks(text: str) -> float:
  """Fenced code blocks (``` or ~~~ opening a line); an unclosed fence counts once."""
  return float(_split_code(text)[1])


@registry.text_metric("num_questions", higher_means="more questions", version="1")
def num_questions(text: str) -> float:
  """Question sentences outside fenced code: spans ending in '?' that contain a letter."""
  prose, _ = _split_code(text)
  return float(sum(len(_QUESTION_RE.findall(line)) for line in prose))


@registry.text_metric("num_paragraphs", higher_means="more paragraphs", version="1")
def num_paragraphs(text: str) -> float:
  """Blocks of non-blank text separated by one or more blank lines (code blocks count)."""
  return float(sum(1 for block in re.split(r"\n\s*\n", text) if block.strip()))
