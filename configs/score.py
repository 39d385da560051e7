"""Scoring the samples of a run with host-side metrics.

  python -m ai_jax.score --config configs/score.py --workdir DIR
  python -m ai_jax.score --config configs/score.py:smoke --workdir DIR

A metric spec is "[column=]name[(key=value, ...)]": a registered name (see
`python -c "from ai_jax.metrics import registry; print(registry.known_names())"`) or a
user function "package.module:function", e.g.
  "tox=hf_classifier(path=/models/toxic-bert, label=toxic)", "distinct_3=distinct_n(n=3)".

Args: "" (every offline built-in), "smoke" (a few cheap metrics, for tests and CI).
"""

import ml_collections

OFFLINE_METRICS = (
    # length
    "length_chars", "length_words", "length_tokens", "length_sentences",
    # lexical diversity
    "mtld", "mattr", "hdd", "ttr", "distinct_1", "distinct_2", "unique_ngram_fraction",
    "rep_diversity",
    # readability and descriptive statistics
    "flesch_reading_ease", "flesch_kincaid_grade", "smog", "gunning_fog", "ari",
    "coleman_liau", "lix", "rix", "mean_sentence_length", "syllables_per_word",
    # toxicity (offline proxy) and format markers
    "toxicity_offline", "num_list_items", "num_code_blocks", "num_questions",
    "num_paragraphs",
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = arg or "default"
  if arg not in ("default", "smoke"):
    raise ValueError(f"configs/score.py takes '' or 'smoke', got {arg!r}")
  c = ml_collections.ConfigDict()
  c.metrics = OFFLINE_METRICS  # metric specs, one column each (see the module docstring)
  # "sampler" = the tokenizer of the model that wrote DIR/samples (from DIR/sample_config.json);
  # "model" = the embedded default; or a .gguf file / Hugging Face directory.
  c.tokenizer = "sampler"
  c.prompts_path = ""  # "" = DIR/sample_config.json's prompts (only metrics that read prompts)
  c.rows_per_append = 1000   # rows scored between two durable appends to DIR/scores/
  c.records_per_shard = 1000  # score records per shard file of DIR/scores/
  # A host's share in a multi-host run (experiments/sweep.py sets it): samples of the prompts
  # it owns, into its own shard files.
  c.host = ml_collections.ConfigDict({"index": 0, "num_hosts": 1})
  if arg == "smoke":
    c.metrics = ("length_words", "length_chars", "mtld", "flesch_reading_ease",
                 "toxicity_offline", "num_list_items")
  return c
