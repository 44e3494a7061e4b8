"""BERT and ALBERT pretraining models in Flax, with parameter names that mirror Google's TF1 checkpoints.

The parameter tree's path joined by '/' *is* the original TF variable name
(`bert/encoder/layer_0/attention/self/query/kernel`, `cls/predictions/output_bias`, ...), so checkpoint
import/export is a mechanical walk. Post-LN transformer, tanh-approximated GELU and -10000 attention
masking as in google-research/bert; MLM logits only at the masked positions (gathered before the
vocabulary projection) and in float32, as are the NSP/SOP logits.
"""
import math
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from training.model_configs import ModelConfig

Array = jax.Array
LN_EPSILON = 1e-12  # google-research/bert and ALBERT layer-norm epsilon


def gelu_tanh(x: Array) -> Array:
    """GELU, tanh approximation: 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))).

    What google-research/bert's modeling.gelu and TF Model Garden's `gelu` compute, so in a TF1
    bert_config.json "gelu" means this. Transformers calls it "gelu_new" (its "gelu" is the exact erf form,
    ~1e-3 off in the logits), so a Hugging Face export must say "gelu_new".
    """
    return nn.gelu(x, approximate=True)


def gelu_exact(x: Array) -> Array:
    """GELU, exact erf form: x * Phi(x) (Transformers' "gelu")."""
    return nn.gelu(x, approximate=False)


# hidden_act names as the TF1 configs use them; "gelu" is google-research/bert's (tanh) meaning.
ACTIVATIONS = {"gelu": gelu_tanh, "gelu_new": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh, "gelu_exact": gelu_exact,
               "relu": nn.relu, "tanh": jnp.tanh}


def activation(name: str) -> Callable[[Array], Array]:
    """bert_config.json hidden_act -> function. 'gelu' is the tanh approximation (gelu_tanh) the original used."""
    table = ACTIVATIONS
    if name not in table:
        raise ValueError(f"hidden_act {name!r} not supported; use one of {sorted(table)}")
    return table[name]


def _init(cfg: ModelConfig) -> Callable:
    return nn.initializers.truncated_normal(stddev=cfg.initializer_range)


class Dense(nn.Module):
    """TF-style dense: params `kernel` [in, out] and `bias` [out]; computes in `dtype`."""

    features: int
    init_range: float = 0.02
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = self.param("kernel", nn.initializers.truncated_normal(stddev=self.init_range),
                            (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        y = jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))
        return y + bias.astype(self.dtype)


class LayerNorm(nn.Module):
    """TF-style layer norm: params `gamma`, `beta`; statistics in float32."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        gamma = self.param("gamma", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        beta = self.param("beta", nn.initializers.zeros, (x.shape[-1],), jnp.float32)
        x32 = x.astype(jnp.float32)
        mean = x32.mean(-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + LN_EPSILON) * gamma + beta
        return y.astype(self.dtype)


class Embeddings(nn.Module):
    """`bert/embeddings`: word + token type + position embeddings, LayerNorm, dropout."""

    cfg: ModelConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids: Array, segment_ids: Array, deterministic: bool):
        cfg, dim = self.cfg, self.cfg.embed_dim
        word = self.param("word_embeddings", _init(cfg), (cfg.vocab_size, dim), jnp.float32)
        token_type = self.param("token_type_embeddings", _init(cfg), (cfg.type_vocab_size, dim), jnp.float32)
        position = self.param("position_embeddings", _init(cfg), (cfg.max_position_embeddings, dim), jnp.float32)
        seq_len = input_ids.shape[1]
        x = jnp.take(word, input_ids, axis=0) + jnp.take(token_type, segment_ids, axis=0) \
            + position[None, :seq_len]
        x = LayerNorm(self.dtype, name="LayerNorm")(x)
        x = nn.Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)
        return x, word


class SelfAttention(nn.Module):
    """`attention/self`: query/key/value projections and scaled dot-product attention."""

    cfg: ModelConfig
    dtype: Any = jnp.float32
    attention_impl: str = "xla"

    @nn.compact
    def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
        cfg = self.cfg
        heads, width = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
        batch, length, _ = x.shape

        def project(name):
            y = Dense(cfg.hidden_size, cfg.initializer_range, self.dtype, name=name)(x)
            return y.reshape(batch, length, heads, width)

        q, k, v = project("query"), project("key"), project("value")
        if self.attention_impl == "cudnn":
            # Fused kernel: no attention-probability dropout (document it where this is selected).
            ctx = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :].astype(bool),
                                               implementation="cudnn")
        else:
            scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(width)
            # The original adds -10000 to masked logits (not -inf): keeps fully padded rows finite.
            bias = (1.0 - mask[:, None, None, :].astype(jnp.float32)) * -10000.0
            probs = jax.nn.softmax(scores.astype(jnp.float32) + bias, axis=-1).astype(self.dtype)
            probs = nn.Dropout(cfg.attention_probs_dropout_prob)(probs, deterministic=deterministic)
            ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
        return ctx.reshape(batch, length, cfg.hidden_size)


class DenseOutput(nn.Module):
    """A scope holding `dense` (and, for BERT, `LayerNorm` of dropout(dense(x)) + residual)."""

    cfg: ModelConfig
    features: int
    with_layer_norm: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, residual: Optional[Array], deterministic: bool) -> Array:
        y = Dense(self.features, self.cfg.initializer_range, self.dtype, name="dense")(x)
        if not self.with_layer_norm:
            return y
        y = nn.Dropout(self.cfg.hidden_dropout_prob)(y, deterministic=deterministic)
        return LayerNorm(self.dtype, name="LayerNorm")(y + residual)


class BertAttention(nn.Module):
    """`attention`: `self` + `output` (BERT) — or `attention_1` (ALBERT, no LayerNorm inside)."""

    cfg: ModelConfig
    with_layer_norm: bool = True
    dtype: Any = jnp.float32
    attention_impl: str = "xla"

    @nn.compact
    def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
        ctx = SelfAttention(self.cfg, self.dtype, self.attention_impl, name="self")(x, mask, deterministic)
        return DenseOutput(self.cfg, self.cfg.hidden_size, self.with_layer_norm, self.dtype,
                           name="output")(ctx, x, deterministic)


class Intermediate(nn.Module):
    """`intermediate`: `dense` + activation."""

    cfg: ModelConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        y = Dense(self.cfg.intermediate_size, self.cfg.initializer_range, self.dtype, name="dense")(x)
        return activation(self.cfg.hidden_act)(y)


class BertLayer(nn.Module):
    """`encoder/layer_N`: post-LN transformer block."""

    cfg: ModelConfig
    dtype: Any = jnp.float32
    attention_impl: str = "xla"

    @nn.compact
    def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
        x = BertAttention(self.cfg, True, self.dtype, self.attention_impl, name="attention")(x, mask, deterministic)
        h = Intermediate(self.cfg, self.dtype, name="intermediate")(x)
        return DenseOutput(self.cfg, self.cfg.hidden_size, True, self.dtype, name="output")(h, x, deterministic)


class AlbertFfnIntermediate(nn.Module):
    """ALBERT `ffn_1/intermediate`: `dense` + activation, then `output/dense`."""

    cfg: ModelConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        h = activation(self.cfg.hidden_act)(
            Dense(self.cfg.intermediate_size, self.cfg.initializer_range, self.dtype, name="dense")(x))
        return DenseOutput(self.cfg, self.cfg.hidden_size, False, self.dtype, name="output")(h, None, True)


class AlbertFfn(nn.Module):
    """ALBERT `ffn_1` scope."""

    cfg: ModelConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        return AlbertFfnIntermediate(self.cfg, self.dtype, name="intermediate")(x)


class AlbertLayer(nn.Module):
    """ALBERT `inner_group_N`: attention_1 -> LayerNorm(+res) -> ffn_1 -> LayerNorm_1(+res)."""

    cfg: ModelConfig
    dtype: Any = jnp.float32
    attention_impl: str = "xla"

    @nn.compact
    def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
        drop = nn.Dropout(self.cfg.hidden_dropout_prob)
        a = BertAttention(self.cfg, False, self.dtype, self.attention_impl, name="attention_1")(
            x, mask, deterministic)
        x = LayerNorm(self.dtype, name="LayerNorm")(drop(a, deterministic=deterministic) + x)
        f = AlbertFfn(self.cfg, self.dtype, name="ffn_1")(x)
        return LayerNorm(self.dtype, name="LayerNorm_1")(drop(f, deterministic=deterministic) + x)


class AlbertGroup(nn.Module):
    """ALBERT `group_G`: inner_group_num layers applied in order."""

    cfg: ModelConfig
    dtype: Any = jnp.float32
    attention_impl: str = "xla"

    @nn.compact
    def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
        for i in range(self.cfg.inner_group_num):
            x = AlbertLayer(self.cfg, self.dtype, self.attention_impl, name=f"inner_group_{i}")(
                x, mask, deterministic)
        return x


class AlbertTransformer(nn.Module):
    """ALBERT `transformer`: num_hidden_layers applications of num_hidden_groups shared groups."""

    cfg: ModelConfig
    dtype: Any = jnp.float32
    attention_impl: str = "xla"

    @nn.compact
    def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
        cfg = self.cfg
        groups = [AlbertGroup(cfg, self.dtype, self.attention_impl, name=f"group_{g}")
                  for g in range(cfg.num_hidden_groups)]
        per_group = cfg.num_hidden_layers // cfg.num_hidden_groups
        for layer in range(cfg.num_hidden_layers):
            x = groups[layer // per_group](x, mask, deterministic)  # same module -> shared weights
        return x


class Encoder(nn.Module):
    """`bert/encoder`: BERT layers, or ALBERT's embedding projection + shared transformer."""

    cfg: ModelConfig
    dtype: Any = jnp.float32
    attention_impl: str = "xla"

    @nn.compact
    def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
        cfg = self.cfg
        if cfg.is_albert:
            x = Dense(cfg.hidden_size, cfg.initializer_range, self.dtype, name="embedding_hidden_mapping_in")(x)
            return AlbertTransformer(cfg, self.dtype, self.attention_impl, name="transformer")(x, mask, deterministic)
        for i in range(cfg.num_hidden_layers):
            x = BertLayer(cfg, self.dtype, self.attention_impl, name=f"layer_{i}")(x, mask, deterministic)
        return x


class Pooler(nn.Module):
    """`bert/pooler`: tanh(dense([CLS]))."""

    cfg: ModelConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, sequence_output: Array) -> Array:
        return jnp.tanh(Dense(self.cfg.hidden_size, self.cfg.initializer_range, self.dtype,
                              name="dense")(sequence_output[:, 0]))


class BertModel(nn.Module):
    """The `bert` scope: embeddings, encoder and (optionally) pooler."""

    cfg: ModelConfig
    with_pooler: bool = True
    dtype: Any = jnp.float32
    attention_impl: str = "xla"

    @nn.compact
    def __call__(self, input_ids, input_mask, segment_ids, deterministic: bool):
        x, word_table = Embeddings(self.cfg, self.dtype, name="embeddings")(input_ids, segment_ids, deterministic)
        seq = Encoder(self.cfg, self.dtype, self.attention_impl, name="encoder")(x, input_mask, deterministic)
        pooled = Pooler(self.cfg, self.dtype, name="pooler")(seq) if self.with_pooler else None
        return seq, pooled, word_table


class Transform(nn.Module):
    """`cls/predictions/transform`: dense (H -> embedding size) + activation + LayerNorm."""

    cfg: ModelConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = Dense(self.cfg.embed_dim, self.cfg.initializer_range, self.dtype, name="dense")(x)
        x = activation(self.cfg.hidden_act)(x)
        return LayerNorm(self.dtype, name="LayerNorm")(x)


class Predictions(nn.Module):
    """`cls/predictions`: MLM logits at the gathered positions, tied to the word embeddings, float32."""

    cfg: ModelConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, gathered: Array, word_table: Array) -> Array:
        h = Transform(self.cfg, self.dtype, name="transform")(gathered)
        bias = self.param("output_bias", nn.initializers.zeros, (self.cfg.vocab_size,), jnp.float32)
        # bf16 inputs, float32 accumulation/output: the logits (and the loss) stay float32.
        logits = jnp.einsum("bpe,ve->bpv", h.astype(self.dtype), word_table.astype(self.dtype),
                            preferred_element_type=jnp.float32)
        return logits + bias


class SeqRelationship(nn.Module):
    """`cls/seq_relationship`: NSP/SOP logits; output_weights stored [2, H] as in the original."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, pooled: Array) -> Array:
        w = self.param("output_weights", _init(self.cfg), (2, self.cfg.hidden_size), jnp.float32)
        b = self.param("output_bias", nn.initializers.zeros, (2,), jnp.float32)
        return jnp.dot(pooled.astype(jnp.float32), w.T) + b


class ClsHeads(nn.Module):
    """The `cls` scope."""

    cfg: ModelConfig
    with_nsp: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, gathered, pooled, word_table):
        mlm = Predictions(self.cfg, self.dtype, name="predictions")(gathered, word_table)
        nsp = SeqRelationship(self.cfg, name="seq_relationship")(pooled) if self.with_nsp else None
        return mlm, nsp


class PretrainingModel(nn.Module):
    """BERT/ALBERT with MLM head (+ NSP/SOP head when with_nsp). Returns float32 logits."""

    cfg: ModelConfig
    with_nsp: bool = True
    dtype: Any = jnp.float32
    attention_impl: str = "xla"

    @nn.compact
    def __call__(self, input_ids, input_mask, segment_ids, masked_lm_positions,
                 deterministic: bool = True) -> Dict[str, Optional[Array]]:
        seq, pooled, word_table = BertModel(self.cfg, self.with_nsp, self.dtype, self.attention_impl,
                                            name="bert")(input_ids, input_mask, segment_ids, deterministic)
        # Gather the masked positions first: [B, P, H] instead of [B, L, V] logits.
        gathered = jnp.take_along_axis(seq, masked_lm_positions[..., None].astype(jnp.int32), axis=1)
        mlm, nsp = ClsHeads(self.cfg, self.with_nsp, self.dtype, name="cls")(gathered, pooled, word_table)
        return {"mlm_logits": mlm, "nsp_logits": nsp}


def build_model(cfg: ModelConfig, with_nsp: bool, dtype: str = "float32",
                attention_impl: str = "xla") -> PretrainingModel:
    """The pretraining model for a config, pairing mode (NSP/SOP head or none) and compute dtype."""
    return PretrainingModel(cfg, with_nsp, jnp.bfloat16 if dtype == "bfloat16" else jnp.float32, attention_impl)


def init_params(model: PretrainingModel, rng: Array, seq_len: int, max_predictions: int) -> Dict[str, Any]:
    """Random parameters (float32) for the model."""
    def init(key):
        ids = jnp.zeros((1, seq_len), jnp.int32)
        pos = jnp.zeros((1, max_predictions), jnp.int32)
        return model.init({"params": key}, ids, jnp.ones_like(ids), ids, pos, True)["params"]

    return jax.jit(init)(rng)  # one compiled program instead of one per initialiser op
