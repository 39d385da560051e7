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
_TERMINATOR_RE = re.compile(r"([.!?]+)")
_LETTER_RE = re.compile(r"[^\W\d_]")
_AFTER_QUESTION = ("", " ", "\t", '"', "'", ")", "]", "\u201d")


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
  return float(sum(_questions_in_line(line) for line in prose))


def _questions_in_line(line: str) -> int:
  # Split into (text, terminator) pairs; a pair is a question when its terminator holds
  # '?', its text holds a letter, and what follows is a space, a closing quote or the
  # end (so the '?' inside "http://x.com/a?b=c" does not count). Linear in the line.
  parts = _TERMINATOR_RE.split(line)
  count = 0
  for i in range(1, len(parts), 2):
    following = parts[i + 1][:1] if i + 1 < len(parts) else ""
    if "?" in parts[i] and following in _AFTER_QUESTION and _LETTER_RE.search(parts[i - 1]):
      count += 1
  return count


@registry.text_metric("num_paragraphs", higher_means="more paragraphs", version="1")
def num_paragraphs(text: str) -> float:
  """Blocks of non-blank text separated by one or more blank lines (code blocks count)."""
  return float(sum(1 for block in re.split(r"\n\s*\n", text) if block.strip()))
