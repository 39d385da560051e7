"""Flax (linen) port of BERT-style encoders with Hugging Face's sequence-classification heads.

Covers BERT, RoBERTa (and its relatives XLM-RoBERTa and CamemBERT, which share its code
in transformers) and DistilBERT: post-LayerNorm transformer layers, learned absolute
position embeddings and a classifier on the first token. The heads follow transformers:
  bert:       pooler (dense + tanh on [CLS]) -> classifier
  roberta:    classifier.dense + tanh on <s> -> classifier.out_proj (no pooler)
  distilbert: pre_classifier + ReLU on [CLS] -> classifier

`Encoder` stops before the head and returns the last hidden states (for pooled sentence
embeddings, e.g. `ai_jax.metrics.embedding`); `EncoderClassifier` is it plus the head,
with the same params at the top of the tree and the head's beside them.

Parameters are a plain pytree (linen); layers are stacked along a leading axis and run
with `nn.scan` (one compiled layer body, as in `transformer.py`). `params_from_hf` maps a
transformers state dict (numpy) onto that tree.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# transformers model_type -> the code path here. XLM-R and CamemBERT are RoBERTa classes
# with another tokenizer, and keep the "roberta." prefix in their state dicts.
_KINDS = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta",
          "camembert": "roberta", "distilbert": "distilbert"}
_PREFIX = {"bert": "bert.", "roberta": "roberta.", "distilbert": "distilbert."}


def _gelu_tanh(x):
  return jax.nn.gelu(x, approximate=True)


# Names as in transformers' ACT2FN. The tanh variants differ there only in how the same
# formula is written, which is below float32 resolution.
ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_python": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_python_tanh": _gelu_tanh,
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  kind: str                  # "bert", "roberta" or "distilbert"
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_labels: int
  hidden_act: str = "gelu"
  layer_norm_eps: float = 1e-12
  max_position_embeddings: int = 512
  type_vocab_size: int = 2   # 0: no token type embeddings (DistilBERT)
  pad_token_id: int = 0
  dtype: str = "float32"     # activation/matmul dtype; LayerNorm and softmax run in float32

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def precision(self):
    # float32 means float32 matmuls, as torch does by default: without this, XLA may use
    # TF32 on recent GPUs and move probabilities by ~1e-3.
    return jax.lax.Precision.HIGHEST if self.dtype == "float32" else None

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def max_tokens(self) -> int:
    """The longest input the position table covers (RoBERTa reserves pad_token_id + 1 rows)."""
    if self.kind == "roberta":
      return self.max_position_embeddings - self.pad_token_id - 1
    return self.max_position_embeddings

  def replace(self, **kwargs) -> "EncoderConfig":
    return dataclasses.replace(self, **kwargs)

  @classmethod
  def from_hf_config(cls, hf: Mapping[str, Any], dtype: str = "float32") -> "EncoderConfig":
    """Builds a config from a Hugging Face `config.json` dict."""
    model_type = hf.get("model_type")
    if model_type not in _KINDS:
      raise ValueError(f"config.json has model_type={model_type!r}; the encoder port handles "
                       f"{', '.join(sorted(_KINDS))}")
    kind = _KINDS[model_type]
    num_labels = len(hf.get("id2label") or {}) or int(hf.get("num_labels", 2))
    if kind == "distilbert":
      act = hf.get("activation", "gelu")
      _check_act(act)
      return cls(kind=kind, vocab_size=int(hf["vocab_size"]), hidden_size=int(hf["dim"]),
                 intermediate_size=int(hf["hidden_dim"]), num_layers=int(hf["n_layers"]),
                 num_heads=int(hf["n_heads"]), num_labels=num_labels, hidden_act=act,
                 layer_norm_eps=1e-12,  # fixed in transformers' DistilBERT, not in config
                 max_position_embeddings=int(hf.get("max_position_embeddings", 512)),
                 type_vocab_size=0, pad_token_id=int(hf.get("pad_token_id") or 0), dtype=dtype)
    # transformers v5 dropped relative position embeddings; old configs may still name them.
    position_type = hf.get("position_embedding_type", "absolute")
    if position_type != "absolute":
      raise ValueError(f"position_embedding_type={position_type!r} is not supported; only "
                       "absolute position embeddings are ported")
    act = hf.get("hidden_act", "gelu")
    _check_act(act)
    pad = hf.get("pad_token_id")
    return cls(kind=kind, vocab_size=int(hf["vocab_size"]), hidden_size=int(hf["hidden_size"]),
               intermediate_size=int(hf["intermediate_size"]),
               num_layers=int(hf["num_hidden_layers"]),
               num_heads=int(hf["num_attention_heads"]), num_labels=num_labels, hidden_act=act,
               layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
               max_position_embeddings=int(hf.get("max_position_embeddings", 512)),
               type_vocab_size=int(hf.get("type_vocab_size", 2)),
               pad_token_id=int(pad if pad is not None else (1 if kind == "roberta" else 0)),
               dtype=dtype)


def _check_act(act) -> None:
  if act not in ACTIVATIONS:
    raise ValueError(f"activation {act!r} is not supported; supported: "
                     f"{', '.join(sorted(ACTIVATIONS))}")


def position_ids(config: EncoderConfig, tokens_BT: Array) -> Array:
  """Position ids as transformers makes them from input ids.

  RoBERTa counts only non-padding tokens, starting at pad_token_id + 1, and gives padding
  the id pad_token_id (`create_position_ids_from_input_ids`); it looks at the ids, not the
  attention mask, so we do too. BERT and DistilBERT number every slot from 0.
  """
  B, T = tokens_BT.shape
  if config.kind != "roberta":
    return jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
  pad = config.pad_token_id
  real_BT = (tokens_BT != pad).astype(jnp.int32)
  return jnp.cumsum(real_BT, axis=1) * real_BT + pad


def _param(module: nn.Module, name: str, shape, init=None):
  init = init or nn.initializers.normal(stddev=0.02)
  return module.param(name, init, shape, jnp.float32)


class LayerNorm(nn.Module):
  eps: float

  @nn.compact
  def __call__(self, x):
    D = x.shape[-1]
    scale_D = _param(self, "scale", (D,), nn.initializers.ones)
    bias_D = _param(self, "bias", (D,), nn.initializers.zeros)
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    normed = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    return (normed * scale_D.astype(jnp.float32) + bias_D.astype(jnp.float32)).astype(x.dtype)


class Dense(nn.Module):
  """x @ kernel + bias; the kernel is stored [in, out] (transformers stores [out, in])."""
  features: int
  config: EncoderConfig

  @nn.compact
  def __call__(self, x):
    dt = self.config.compute_dtype
    kernel_IO = _param(self, "kernel", (x.shape[-1], self.features))
    bias_O = _param(self, "bias", (self.features,), nn.initializers.zeros)
    return (jnp.matmul(x, kernel_IO.astype(dt), precision=self.config.precision)
            + bias_O.astype(dt))


class Attention(nn.Module):
  config: EncoderConfig

  @nn.compact
  def __call__(self, x_BTD, mask_BT):
    cfg = self.config
    dt = cfg.compute_dtype
    D, N, H = cfg.hidden_size, cfg.num_heads, cfg.head_dim
    B, T = x_BTD.shape[:2]

    def project(name):
      return Dense(D, cfg, name=name)(x_BTD).reshape(B, T, N, H)
    q_BTNH, k_BTNH, v_BTNH = project("q"), project("k"), project("v")
    scores_BNTS = jnp.einsum("btnh,bsnh->bnts", q_BTNH, k_BTNH, precision=cfg.precision,
                             preferred_element_type=jnp.float32) * np.float32(1 / np.sqrt(H))
    # A finite fill keeps all-padding filler rows finite (uniform) instead of NaN.
    scores_BNTS = jnp.where(mask_BT[:, None, None, :], scores_BNTS, -1e30)
    probs_BNTS = jax.nn.softmax(scores_BNTS, axis=-1).astype(dt)
    out_BTNH = jnp.einsum("bnts,bsnh->btnh", probs_BNTS, v_BTNH, precision=cfg.precision)
    return Dense(D, cfg, name="o")(out_BTNH.reshape(B, T, D))


class Layer(nn.Module):
  """One post-LayerNorm encoder layer, in `nn.scan` form (carry = activations)."""
  config: EncoderConfig

  @nn.compact
  def __call__(self, x_BTD, mask_BT):
    cfg = self.config
    x_BTD = LayerNorm(cfg.layer_norm_eps, name="attn_norm")(
        x_BTD + Attention(cfg, name="attn")(x_BTD, mask_BT))
    h_BTF = ACTIVATIONS[cfg.hidden_act](Dense(cfg.intermediate_size, cfg, name="up")(x_BTD))
    x_BTD = LayerNorm(cfg.layer_norm_eps, name="mlp_norm")(
        x_BTD + Dense(cfg.hidden_size, cfg, name="down")(h_BTF))
    return x_BTD, None


class Encoder(nn.Module):
  """`__call__(tokens_BT, mask_BT, token_types_BT=None) -> x_BTD`: the last hidden states
  (a transformers BertModel's `last_hidden_state`, in the compute dtype), with no head.

  mask_BT marks real tokens; rows may be padded on the right with pad_token_id."""
  config: EncoderConfig

  @nn.compact
  def __call__(self, tokens_BT, mask_BT, token_types_BT=None):
    return self.hidden_states(tokens_BT, mask_BT, token_types_BT)

  def hidden_states(self, tokens_BT, mask_BT, token_types_BT=None):
    # Called from the compact __call__ of this class or a subclass, so its params sit at
    # the top of the tree whether or not a head follows.
    cfg = self.config
    D = cfg.hidden_size
    word_VD = _param(self, "word_embed", (cfg.vocab_size, D))
    pos_PD = _param(self, "position_embed", (cfg.max_position_embeddings, D))
    x_BTD = (jnp.take(word_VD, tokens_BT, axis=0, mode="clip")
             + jnp.take(pos_PD, position_ids(cfg, tokens_BT), axis=0, mode="clip"))
    if cfg.type_vocab_size:
      # Single-text inputs: transformers fills missing token types with zeros.
      if token_types_BT is None:
        token_types_BT = jnp.zeros_like(tokens_BT)
      type_YD = _param(self, "type_embed", (cfg.type_vocab_size, D))
      x_BTD = x_BTD + jnp.take(type_YD, token_types_BT, axis=0, mode="clip")
    x_BTD = LayerNorm(cfg.layer_norm_eps, name="embed_norm")(x_BTD).astype(cfg.compute_dtype)

    layers = nn.scan(Layer, variable_axes={"params": 0}, split_rngs={"params": True},
                     in_axes=(nn.broadcast,), length=cfg.num_layers)(cfg, name="layers")
    x_BTD, _ = layers(x_BTD, mask_BT.astype(bool))
    return x_BTD


class EncoderClassifier(Encoder):
  """`__call__(tokens_BT, mask_BT, token_types_BT=None) -> logits_BC` (float32): the
  Encoder's params plus a classification head on the first token."""

  @nn.compact
  def __call__(self, tokens_BT, mask_BT, token_types_BT=None):
    cfg = self.config
    D = cfg.hidden_size
    first_BD = self.hidden_states(tokens_BT, mask_BT, token_types_BT)[:, 0]
    if cfg.kind == "bert":
      pooled_BD = jnp.tanh(Dense(D, cfg, name="pooler")(first_BD))
      logits_BC = Dense(cfg.num_labels, cfg, name="classifier")(pooled_BD)
    elif cfg.kind == "roberta":
      hidden_BD = jnp.tanh(Dense(D, cfg, name="head_dense")(first_BD))
      logits_BC = Dense(cfg.num_labels, cfg, name="classifier")(hidden_BD)
    else:
      hidden_BD = jax.nn.relu(Dense(D, cfg, name="pre_classifier")(first_BD))
      logits_BC = Dense(cfg.num_labels, cfg, name="classifier")(hidden_BD)
    return logits_BC.astype(jnp.float32)


def init_params(config: EncoderConfig, seed: int = 0, *, head: bool = True):
  """Random parameters, for tests of configs without weights; head=False: `Encoder`'s."""
  tokens = jnp.zeros((1, 4), jnp.int32)
  module = EncoderClassifier(config) if head else Encoder(config)
  variables = jax.jit(module.init)(jax.random.PRNGKey(seed), tokens, jnp.ones((1, 4), bool))
  return variables["params"]


# Our layer param path -> transformers' per-layer key suffix, per kind.
_LAYER_KEYS = {
    "bert": {("attn", "q"): "attention.self.query", ("attn", "k"): "attention.self.key",
             ("attn", "v"): "attention.self.value", ("attn", "o"): "attention.output.dense",
             ("attn_norm",): "attention.output.LayerNorm", ("up",): "intermediate.dense",
             ("down",): "output.dense", ("mlp_norm",): "output.LayerNorm"},
    "distilbert": {("attn", "q"): "attention.q_lin", ("attn", "k"): "attention.k_lin",
                   ("attn", "v"): "attention.v_lin", ("attn", "o"): "attention.out_lin",
                   ("attn_norm",): "sa_layer_norm", ("up",): "ffn.lin1", ("down",): "ffn.lin2",
                   ("mlp_norm",): "output_layer_norm"},
}
_LAYER_KEYS["roberta"] = _LAYER_KEYS["bert"]
_HEAD_KEYS = {
    "bert": {"pooler": "bert.pooler.dense", "classifier": "classifier"},
    "roberta": {"head_dense": "classifier.dense", "classifier": "classifier.out_proj"},
    "distilbert": {"pre_classifier": "pre_classifier", "classifier": "classifier"},
}


def _normalize_keys(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  # Checkpoints converted from TensorFlow long ago name LayerNorm params gamma/beta;
  # transformers still renames them on load.
  out = {}
  for key, value in state_dict.items():
    if key.endswith(".gamma"):
      key = key[:-len("gamma")] + "weight"
    elif key.endswith(".beta"):
      key = key[:-len("beta")] + "bias"
    out[key] = value
  return out


def params_from_hf(config: EncoderConfig, state_dict: Mapping[str, np.ndarray], *,
                   head: bool = True) -> dict:
  """Our param tree from a transformers *ForSequenceClassification state dict (numpy).

  head=False: `Encoder`'s params only, from either that or a bare *Model state dict (keys
  without the "bert." prefix: `embeddings.word_embeddings.weight`, ...); heads and the
  pooler are ignored. Raises ValueError naming the missing tensors (e.g. a bare BertModel
  when head=True)."""
  sd = _normalize_keys(state_dict)
  kind = config.kind
  prefix = _PREFIX[kind]
  if not head and not any(key.startswith(prefix) for key in sd):
    prefix = ""  # a bare BertModel / RobertaModel / DistilBertModel
  missing: list[str] = []

  def get(key, shape=None):
    if key not in sd:
      missing.append(key)
      return np.zeros(shape or (0,), np.float32)
    return np.asarray(sd[key], np.float32)

  def dense(key):
    return {"kernel": get(key + ".weight").T, "bias": get(key + ".bias")}

  def norm(key):
    return {"scale": get(key + ".weight"), "bias": get(key + ".bias")}

  base = prefix + "embeddings."
  params: dict[str, Any] = {
      "word_embed": get(base + "word_embeddings.weight"),
      "position_embed": get(base + "position_embeddings.weight"),
      "embed_norm": norm(base + "LayerNorm"),
  }
  if config.type_vocab_size:
    params["type_embed"] = get(base + "token_type_embeddings.weight")
  stack = "transformer.layer." if kind == "distilbert" else "encoder.layer."
  per_layer = []
  for i in range(config.num_layers):
    layer: dict[str, Any] = {}
    for path, suffix in _LAYER_KEYS[kind].items():
      key = f"{prefix}{stack}{i}.{suffix}"
      node = layer
      for part in path[:-1]:
        node = node.setdefault(part, {})
      node[path[-1]] = norm(key) if path[-1].endswith("norm") else dense(key)
    per_layer.append(layer)
  if head:
    for name, key in _HEAD_KEYS[kind].items():
      params[name] = dense(key)
  if missing:
    what = "sequence classifier" if head else "encoder"
    hint = "is it a *ForSequenceClassification checkpoint?" if head else (
        "is it a checkpoint of this model_type?")
    raise ValueError(f"the checkpoint lacks {len(missing)} tensors a {kind} {what} needs, "
                     f"e.g. {missing[:4]}; {hint}")
  params["layers"] = jax.tree.map(lambda *xs: np.stack(xs), *per_layer)
  _check_shapes(config, params, head)
  return params


def _check_shapes(config: EncoderConfig, params, head: bool) -> None:
  def shapes(tree):
    return {jax.tree_util.keystr(path): tuple(np.shape(leaf))
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
  got = shapes(params)
  want = shapes(jax.eval_shape(lambda: init_params(config, head=head)))
  if got != want:
    bad = [f"{k}: {got.get(k)} != {want.get(k)}" for k in sorted(set(got) | set(want))
           if got.get(k) != want.get(k)]
    raise ValueError(f"checkpoint tensor shapes do not match config.json: {bad[:4]}")
