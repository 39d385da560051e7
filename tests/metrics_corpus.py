"""A deterministic corpus of varied English-ish texts for checking scorers against
their reference libraries: prose, lists, code, numbers, contractions, hyphens,
abbreviations, questions, unicode, very short and very long texts."""

import random

_WORDS = (
    "the a an of to and in is it that for on with as was by be this are or from at "
    "model data language learning fine tuning student teacher sample prompt answer "
    "question because although however therefore meanwhile extraordinary "
    "responsibility characterization interpretability international unbelievable "
    "cat dog sun run big red blue tree house water fire stone happy quickly slowly "
    "beautiful information university education communication organization "
    "algorithm probability distribution evaluation optimization regularization "
    "table chair window people children everything something nothing anybody "
    "simple easy hard difficult necessary possible available important "
    "create created creating walked walking talked jumped pushed carried studies "
    "area idea radio piano video poem quiet science society via naive cooperate"
).split()
_EXTRAS = ("don't", "it's", "we're", "can't", "state-of-the-art", "well-known", "e.g.",
           "Dr.", "U.S.", "3.14", "1,000", "42", "2024", "GPT-4", "naïve", "café", "résumé",
           "x", "I", "O'Neill", "co-operate", "mother-in-law", "1st", "#hashtag", "@user",
           "http://example.com/a?b=c", "C++", "--", "...", "(see above)", "\"quoted\"")


def _sentence(rng, lo=3, hi=18):
  n = rng.randint(lo, hi)
  words = [rng.choice(_EXTRAS) if rng.random() < 0.08 else rng.choice(_WORDS) for _ in range(n)]
  words[0] = words[0].capitalize()
  if rng.random() < 0.15:
    words.insert(rng.randrange(1, len(words) + 1), ",")
  end = rng.choice([".", ".", ".", "!", "?", "...", ""])
  return " ".join(words).replace(" ,", ",") + end


def _paragraph(rng, n):
  return " ".join(_sentence(rng) for _ in range(n))


def _list(rng):
  bullet = rng.choice(["- ", "* ", "1. ", "• "])
  items = [bullet.replace("1", str(i + 1)) + _sentence(rng, 2, 8) for i in range(rng.randint(2, 6))]
  return _sentence(rng) + "\n" + "\n".join(items)


def _code(rng):
  return (_sentence(rng) + "\n```python\ndef f(x):\n    return x * 2  # doubles\n```\n"
          + _sentence(rng))


def varied_texts(n: int = 150, seed: int = 0) -> list[str]:
  """n texts; the first few are fixed edge cases, the rest random mixtures."""
  rng = random.Random(seed)
  fixed = [
      "The cat sat on the mat.",
      "Hello world! How are you today? I am fine.",
      "one",
      "A a a a a a a a a a.",
      "Is this a question?",
      "Extraordinary responsibilities characterize international organizations.",
      "It's a well-known state-of-the-art model, e.g. GPT-4, isn't it?",
      "Dr. Smith went to Washington. He arrived at 3 p.m. on Jan. 5th.",
      "naïve café résumé coöperate",
      "1, 2, 3, 4, 5, 6, 7, 8, 9, 10.",
  ]
  out = list(fixed)
  while len(out) < n:
    kind = rng.random()
    if kind < 0.55:
      out.append(_paragraph(rng, rng.randint(1, 8)))
    elif kind < 0.7:
      out.append(_list(rng))
    elif kind < 0.8:
      out.append(_code(rng))
    elif kind < 0.9:
      out.append("\n\n".join(_paragraph(rng, rng.randint(2, 5)) for _ in range(rng.randint(2, 4))))
    else:
      out.append(_paragraph(rng, rng.randint(20, 40)))  # long texts (MTLD/HD-D windows)
  return out[:n]
