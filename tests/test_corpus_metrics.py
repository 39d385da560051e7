"""Corpus metrics (ai_jax.metrics.corpus, mauve, authenticity): hand-computed n-gram cases,
MAUVE against the mauve-text package, authenticity against scikit-learn, and the
bootstrap profile's contract."""

from __future__ import annotations

import numpy as np
import pytest

from ai_jax.metrics import authenticity as auth_lib
from ai_jax.metrics import corpus, lexical, registry
from ai_jax.metrics import mauve as mauve_lib

mauve_text = pytest.importorskip("mauve.compute_mauve")  # mauve-text (needs faiss-cpu)
sk_linear = pytest.importorskip("sklearn.linear_model")
sk_metrics = pytest.importorskip("sklearn.metrics")
sk_selection = pytest.importorskip("sklearn.model_selection")

ALL = ("normalised_unique_ngrams", "diversity", "embedding_similarity", "mauve",
       "authenticity")


def _clusters(rng, weights, n, centres_KD, spread=0.05):
  labels = rng.choice(len(centres_KD), size=n, p=weights)
  return centres_KD[labels] + spread * rng.normal(size=(n, centres_KD.shape[1]))


# --- n-gram metrics ------------------------------------------------------------------------


def test_ngram_metrics_hand_computed():
  texts = ["the cat sat on the mat", "the cat ran", "The cat sat down."]
  # bigrams: 5 + 2 + 3 = 10, distinct 7 (the cat x3, cat sat x2); trigrams: 4 + 1 + 2 = 7,
  # distinct 6 (the cat sat x2); 4-grams: 3 + 0 + 1 = 4, all distinct.
  c = corpus.Corpus(texts)
  assert registry.get_corpus_metric("normalised_unique_ngrams")(c) == pytest.approx(7 / 10)
  assert registry.get_corpus_metric("normalised_unique_ngrams", n=3)(c) == pytest.approx(6 / 7)
  assert registry.get_corpus_metric("diversity")(c) == pytest.approx(7 / 10 * 6 / 7 * 1.0)
  # On one text they are the per-text unique n-gram fraction and rep-diversity.
  one = corpus.Corpus(["a b a b a b c d e a b"])
  assert registry.get_corpus_metric("normalised_unique_ngrams")(one) == pytest.approx(
      lexical.unique_ngram_fraction(one.texts[0], 2))
  assert registry.get_corpus_metric("diversity")(one) == pytest.approx(
      lexical.rep_diversity(one.texts[0]))
  with pytest.raises(registry.Undefined, match="no text has 2 words"):
    registry.get_corpus_metric("normalised_unique_ngrams")(corpus.Corpus(["one", ""]))


def test_embedding_similarity_is_mean_pairwise_cosine():
  rng = np.random.default_rng(0)
  x_ND, r_MD = rng.normal(size=(7, 5)) * 3, rng.normal(size=(4, 5)) + 1
  pairs = [a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a in x_ND for b in r_MD]
  c = corpus.Corpus(["t"] * 7, ["r"] * 4, x_ND, r_MD)
  assert registry.get_corpus_metric("embedding_similarity")(c) == pytest.approx(np.mean(pairs),
                                                                               abs=1e-12)


# --- MAUVE ---------------------------------------------------------------------------------


def test_mauve_from_histograms_matches_mauve_text():
  rng = np.random.default_rng(1)
  for trial in range(20):
    k = int(rng.integers(2, 12))
    p, q = rng.random(k), rng.random(k)
    if trial % 3 == 0:
      p[rng.integers(k)] = 0.0  # empty buckets: KL terms become infinite
      q[rng.integers(k)] = 0.0
    p, q = p / p.sum(), q / q.sum()
    weights = np.linspace(1e-6, 1 - 1e-6, 25)
    x, y = mauve_text.get_divergence_curve_for_multinomials(p, q, weights, 5).T
    i1, i2 = np.argsort(x), np.argsort(y)
    want = 0.5 * (mauve_text.compute_area_under_curve(x[i1], y[i1])
                  + mauve_text.compute_area_under_curve(y[i2], x[i2]))
    np.testing.assert_allclose(mauve_lib.divergence_curve(p, q), np.c_[x, y], atol=1e-15)
    assert mauve_lib.mauve_from_histograms(p, q) == pytest.approx(want, abs=1e-12)


def test_mauve_matches_mauve_text_on_clustered_features():
  rng = np.random.default_rng(2)
  centres_KD = rng.normal(size=(4, 16)) * 4
  for p_w, q_w in [((0.25, 0.25, 0.25, 0.25), (0.25, 0.25, 0.25, 0.25)),
                   ((0.4, 0.3, 0.2, 0.1), (0.1, 0.2, 0.3, 0.4)),
                   ((0.7, 0.1, 0.1, 0.1), (0.0, 0.3, 0.3, 0.4))]:
    p_ND = _clusters(rng, p_w, 120, centres_KD)
    q_ND = _clusters(rng, q_w, 160, centres_KD)
    want = mauve_text.compute_mauve(p_features=p_ND, q_features=q_ND, num_buckets=4).mauve
    got = mauve_lib.mauve(p_ND, q_ND, num_buckets=4)
    print(f"mauve {got:.6f} vs mauve-text {want:.6f}")
    assert got == pytest.approx(want, abs=1e-9)


def test_mauve_near_mauve_text_on_unclustered_features():
  """Unclustered data: the two k-means (k-means++ here, faiss there) quantise differently,
  so the scores agree only as closely as mauve-text's own seeds agree with each other."""
  rng = np.random.default_rng(3)
  base_ND = rng.normal(size=(200, 64))
  p_ND = base_ND[:100] + 0.3 * rng.normal(size=(100, 64))
  q_ND = base_ND[100:] + 0.3 * rng.normal(size=(100, 64)) + 0.15
  theirs = [mauve_text.compute_mauve(p_features=p_ND, q_features=q_ND, seed=s).mauve
            for s in (25, 26, 27)]
  ours = [mauve_lib.mauve(p_ND, q_ND, seed=s) for s in (25, 26, 27)]
  print(f"mauve-text seeds {np.round(theirs, 4)}; ours {np.round(ours, 4)}")
  spread = max(theirs) - min(theirs)
  assert abs(np.mean(ours) - np.mean(theirs)) <= max(0.1, 2 * spread)


def test_mauve_extremes_and_bad_input():
  rng = np.random.default_rng(4)
  x_ND = rng.normal(size=(60, 8))
  assert mauve_lib.mauve(x_ND, x_ND.copy()) == pytest.approx(1.0, abs=1e-6)
  far_ND = x_ND + 100.0 * np.eye(8)[0]  # after L2 normalisation: a separate cluster
  assert mauve_lib.mauve(x_ND, far_ND, num_buckets=4) < 0.05
  with pytest.raises(ValueError, match="num_buckets"):
    mauve_lib.mauve(x_ND, x_ND, num_buckets=1)
  with pytest.raises(ValueError, match="one width"):
    mauve_lib.mauve(x_ND, x_ND[:, :4])


# --- authenticity --------------------------------------------------------------------------


def test_logistic_regression_matches_sklearn():
  rng = np.random.default_rng(5)
  for n, d in [(80, 6), (40, 100)]:  # n < d takes the row-span route
    x_ND = rng.normal(size=(n, d))
    y_N = (x_ND[:, 0] + 0.5 * rng.normal(size=n)) > 0
    w_D, b = auth_lib.fit_logistic(x_ND, y_N, c=1.0)
    ref = sk_linear.LogisticRegression(C=1.0, tol=1e-12, max_iter=100000).fit(x_ND, y_N)
    np.testing.assert_allclose(w_D, ref.coef_[0], atol=2e-5)
    assert b == pytest.approx(ref.intercept_[0], abs=2e-5)


def test_auroc_matches_sklearn_with_ties():
  rng = np.random.default_rng(6)
  y_N = rng.random(200) < 0.4
  s_N = np.round(rng.normal(size=200) + y_N, 1)  # many ties
  assert auth_lib.auroc(y_N, s_N) == pytest.approx(sk_metrics.roc_auc_score(y_N, s_N),
                                                   abs=1e-12)


def test_cross_validated_auroc_matches_sklearn():
  rng = np.random.default_rng(7)
  syn_ND = rng.normal(size=(48, 32)) + 0.2
  real_ND = rng.normal(size=(64, 32))
  x_ND = np.vstack([syn_ND, real_ND])
  y_N = np.r_[np.ones(48, bool), np.zeros(64, bool)]
  folds_N = auth_lib.stratified_folds(y_N, 5, seed=0)
  for f in range(5):  # each fold holds its share of both classes
    assert abs((folds_N[y_N] == f).sum() - 48 / 5) < 1
    assert abs((folds_N[~y_N] == f).sum() - 64 / 5) < 1
  want = sk_selection.cross_val_score(
      sk_linear.LogisticRegression(C=1.0, tol=1e-12, max_iter=100000), x_ND, y_N,
      cv=sk_selection.PredefinedSplit(folds_N), scoring="roc_auc").mean()
  got = auth_lib.cross_validated_auroc(x_ND, y_N, folds_N)
  print(f"authenticity {got:.6f} vs sklearn {want:.6f}")
  assert got == pytest.approx(want, abs=1e-6)
  assert auth_lib.authenticity(syn_ND, real_ND, seed=0) == pytest.approx(got, abs=1e-12)


def test_authenticity_extremes_groups_and_bad_input():
  rng = np.random.default_rng(8)
  same = auth_lib.authenticity(rng.normal(size=(100, 8)), rng.normal(size=(100, 8)))
  assert abs(same - 0.5) < 0.15
  assert auth_lib.authenticity(rng.normal(size=(30, 8)) + 5, rng.normal(size=(30, 8))) == 1.0
  groups = np.repeat(np.arange(10), 3)  # 3 copies of each of 10 rows
  folds = auth_lib.stratified_folds(np.ones(30, bool), 5, seed=1, groups_N=groups)
  for g in range(10):
    assert len(set(folds[groups == g])) == 1
  with pytest.raises(ValueError, match="num_folds=5 needs at least that many distinct "
                                       "synthetic texts, got 3"):
    auth_lib.authenticity(rng.normal(size=(3, 4)), rng.normal(size=(9, 4)))


# --- the profile ---------------------------------------------------------------------------


def _corpus_inputs(seed=9):
  rng = np.random.default_rng(seed)
  words = "red green blue cat dog sun moon tree river stone".split()
  texts = [" ".join(rng.choice(words, size=8)) for _ in range(30)]
  reference = [" ".join(rng.choice(words, size=8)) for _ in range(40)]
  return texts, reference, rng.normal(size=(30, 12)) + 0.3, rng.normal(size=(40, 12))


def test_corpus_profile_values_intervals_and_determinism():
  texts, reference, x_ND, r_MD = _corpus_inputs()
  kw = dict(metrics={name: {} for name in ALL}, embeddings=x_ND, reference_embeddings=r_MD,
            num_bootstrap=30, seed=3)
  profile = corpus.corpus_profile(texts, reference, **kw)
  assert list(profile) == list(ALL)
  c = corpus.Corpus(texts, reference, x_ND, r_MD)
  for name, row in profile.items():
    assert row["value"] == pytest.approx(registry.get_corpus_metric(name)(c), abs=1e-12)
    assert row["num_resamples"] == 30 and row["low"] <= row["high"]
    assert row["higher_means"] and row["version"] == "1"
  assert profile["normalised_unique_ngrams"]["options"] == {"n": 2}
  assert profile == corpus.corpus_profile(texts, reference, **kw)
  other = corpus.corpus_profile(texts, reference, **{**kw, "seed": 4})
  assert other["mauve"]["value"] == profile["mauve"]["value"]
  assert other["mauve"]["low"] != profile["mauve"]["low"]
  none = corpus.corpus_profile(texts, reference, **{**kw, "num_bootstrap": 0})
  assert none["diversity"]["low"] is None and none["diversity"]["num_resamples"] == 0


def test_corpus_profile_reports_undefined_and_refuses_bad_input():
  texts, reference, x_ND, r_MD = _corpus_inputs()
  short = corpus.corpus_profile(["one", "two"], metrics={"diversity": {}}, num_bootstrap=5)
  assert short["diversity"]["value"] is None
  assert "no text has 4 words" in short["diversity"]["undefined"]
  with pytest.raises(registry.MetricError, match="needs the embeddings"):
    corpus.corpus_profile(texts, reference, metrics={"mauve": {}})
  with pytest.raises(ValueError, match="embeddings has 29 rows for 30 texts"):
    corpus.corpus_profile(texts, reference, metrics={"mauve": {}}, embeddings=x_ND[1:],
                          reference_embeddings=r_MD)
  with pytest.raises(ValueError, match="needs a non-empty reference"):
    corpus.corpus_profile(texts, [], metrics={"authenticity": {}}, embeddings=x_ND,
                          reference_embeddings=np.zeros((0, 12)))
  with pytest.raises(registry.MetricError, match=r"takes options \['n'\], got \['m'\]"):
    corpus.corpus_profile(texts, metrics={"normalised_unique_ngrams": {"m": 3}})
  with pytest.raises(registry.MetricError, match="unknown corpus metric 'maue'"):
    registry.get_corpus_metric("maue")
  with pytest.raises(registry.MetricError, match="'mauve' is a corpus metric"):
    registry.get_scorer("mauve")
  assert set(ALL) <= set(registry.corpus_names())
