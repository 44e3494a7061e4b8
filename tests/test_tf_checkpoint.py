"""TF1 checkpoints with Google's original variable names: import == independent numpy BERT/ALBERT; export round-trip."""
import json

import numpy as np
import pytest

V, H, L, A, I, T, PMAX, E = 61, 16, 2, 2, 24, 2, 32, 8
SEQ, PREDS, B = 12, 3, 3


def _bert_names():
    """(name, shape) of Google's BERT checkpoint variables, written out from the TF1 layout."""
    out = [("bert/embeddings/word_embeddings", (V, H)), ("bert/embeddings/token_type_embeddings", (T, H)),
           ("bert/embeddings/position_embeddings", (PMAX, H)), ("bert/embeddings/LayerNorm/gamma", (H,)),
           ("bert/embeddings/LayerNorm/beta", (H,))]
    for l in range(L):
        p = f"bert/encoder/layer_{l}"
        for n in ("query", "key", "value"):
            out += [(f"{p}/attention/self/{n}/kernel", (H, H)), (f"{p}/attention/self/{n}/bias", (H,))]
        out += [(f"{p}/attention/output/dense/kernel", (H, H)), (f"{p}/attention/output/dense/bias", (H,)),
                (f"{p}/attention/output/LayerNorm/gamma", (H,)), (f"{p}/attention/output/LayerNorm/beta", (H,)),
                (f"{p}/intermediate/dense/kernel", (H, I)), (f"{p}/intermediate/dense/bias", (I,)),
                (f"{p}/output/dense/kernel", (I, H)), (f"{p}/output/dense/bias", (H,)),
                (f"{p}/output/LayerNorm/gamma", (H,)), (f"{p}/output/LayerNorm/beta", (H,))]
    out += [("bert/pooler/dense/kernel", (H, H)), ("bert/pooler/dense/bias", (H,)),
            ("cls/predictions/transform/dense/kernel", (H, H)), ("cls/predictions/transform/dense/bias", (H,)),
            ("cls/predictions/transform/LayerNorm/gamma", (H,)), ("cls/predictions/transform/LayerNorm/beta", (H,)),
            ("cls/predictions/output_bias", (V,)), ("cls/seq_relationship/output_weights", (2, H)),
            ("cls/seq_relationship/output_bias", (2,))]
    return out


def _albert_names():
    out = [("bert/embeddings/word_embeddings", (V, E)), ("bert/embeddings/token_type_embeddings", (T, E)),
           ("bert/embeddings/position_embeddings", (PMAX, E)), ("bert/embeddings/LayerNorm/gamma", (E,)),
           ("bert/embeddings/LayerNorm/beta", (E,)),
           ("bert/encoder/embedding_hidden_mapping_in/kernel", (E, H)),
           ("bert/encoder/embedding_hidden_mapping_in/bias", (H,))]
    p = "bert/encoder/transformer/group_0/inner_group_0"
    for n in ("query", "key", "value"):
        out += [(f"{p}/attention_1/self/{n}/kernel", (H, H)), (f"{p}/attention_1/self/{n}/bias", (H,))]
    out += [(f"{p}/attention_1/output/dense/kernel", (H, H)), (f"{p}/attention_1/output/dense/bias", (H,)),
            (f"{p}/LayerNorm/gamma", (H,)), (f"{p}/LayerNorm/beta", (H,)),
            (f"{p}/ffn_1/intermediate/dense/kernel", (H, I)), (f"{p}/ffn_1/intermediate/dense/bias", (I,)),
            (f"{p}/ffn_1/intermediate/output/dense/kernel", (I, H)),
            (f"{p}/ffn_1/intermediate/output/dense/bias", (H,)),
            (f"{p}/LayerNorm_1/gamma", (H,)), (f"{p}/LayerNorm_1/beta", (H,)),
            ("bert/pooler/dense/kernel", (H, H)), ("bert/pooler/dense/bias", (H,)),
            ("cls/predictions/transform/dense/kernel", (H, E)), ("cls/predictions/transform/dense/bias", (E,)),
            ("cls/predictions/transform/LayerNorm/gamma", (E,)), ("cls/predictions/transform/LayerNorm/beta", (E,)),
            ("cls/predictions/output_bias", (V,)), ("cls/seq_relationship/output_weights", (2, H)),
            ("cls/seq_relationship/output_bias", (2,))]
    return out


def _random_weights(names, seed=0):
    rng = np.random.default_rng(seed)
    w = {}
    for name, shape in names:
        scale = 1.0 if name.endswith("gamma") else 0.3
        base = 1.0 if name.endswith("gamma") else 0.0
        w[name] = (base + scale * rng.standard_normal(shape)).astype(np.float32)
    return w


def _write_tf1(weights, prefix, extra_slots=True):
    """A TF1 checkpoint written the TF1 way (graph-mode Saver), with optimizer slots and global_step."""
    import tensorflow as tf
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        var_list = {}
        for name, value in weights.items():
            var_list[name] = v1.Variable(value, name=name)
            if extra_slots:
                for slot in ("adam_m", "adam_v"):
                    var_list[f"{name}/{slot}"] = v1.Variable(np.zeros_like(value), name=f"{name}/{slot}")
        var_list["global_step"] = v1.Variable(np.int64(1234), name="global_step")
        saver = v1.train.Saver(var_list=var_list)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            saver.save(sess, str(prefix))
    return str(prefix)


# ---- an independent numpy forward pass of the original models ----
def _gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def _ln(x, g, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-12) * g + b


def _attention(x, mask, w, p):
    def proj(n):
        return (x @ w[f"{p}/self/{n}/kernel"] + w[f"{p}/self/{n}/bias"]).reshape(B, SEQ, A, H // A).transpose(0, 2, 1, 3)
    q, k, v = proj("query"), proj("key"), proj("value")
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(H // A) + (1.0 - mask[:, None, None, :]) * -10000.0
    s = np.exp(s - s.max(-1, keepdims=True))
    s = s / s.sum(-1, keepdims=True)
    ctx = (s @ v).transpose(0, 2, 1, 3).reshape(B, SEQ, H)
    return ctx @ w[f"{p}/output/dense/kernel"] + w[f"{p}/output/dense/bias"]


def numpy_forward(w, ids, mask, seg, pos, albert=False):
    x = w["bert/embeddings/word_embeddings"][ids] + w["bert/embeddings/token_type_embeddings"][seg] \
        + w["bert/embeddings/position_embeddings"][:SEQ][None]
    x = _ln(x, w["bert/embeddings/LayerNorm/gamma"], w["bert/embeddings/LayerNorm/beta"])
    mask = mask.astype(np.float64)
    if albert:
        x = x @ w["bert/encoder/embedding_hidden_mapping_in/kernel"] + w["bert/encoder/embedding_hidden_mapping_in/bias"]
        p = "bert/encoder/transformer/group_0/inner_group_0"
        for _ in range(L):  # the one group is applied L times (shared weights)
            a = _attention(x, mask, w, f"{p}/attention_1")
            x = _ln(a + x, w[f"{p}/LayerNorm/gamma"], w[f"{p}/LayerNorm/beta"])
            f = _gelu(x @ w[f"{p}/ffn_1/intermediate/dense/kernel"] + w[f"{p}/ffn_1/intermediate/dense/bias"])
            f = f @ w[f"{p}/ffn_1/intermediate/output/dense/kernel"] + w[f"{p}/ffn_1/intermediate/output/dense/bias"]
            x = _ln(f + x, w[f"{p}/LayerNorm_1/gamma"], w[f"{p}/LayerNorm_1/beta"])
    else:
        for l in range(L):
            p = f"bert/encoder/layer_{l}"
            a = _attention(x, mask, w, f"{p}/attention")
            x = _ln(a + x, w[f"{p}/attention/output/LayerNorm/gamma"], w[f"{p}/attention/output/LayerNorm/beta"])
            h = _gelu(x @ w[f"{p}/intermediate/dense/kernel"] + w[f"{p}/intermediate/dense/bias"])
            o = h @ w[f"{p}/output/dense/kernel"] + w[f"{p}/output/dense/bias"]
            x = _ln(o + x, w[f"{p}/output/LayerNorm/gamma"], w[f"{p}/output/LayerNorm/beta"])
    pooled = np.tanh(x[:, 0] @ w["bert/pooler/dense/kernel"] + w["bert/pooler/dense/bias"])
    g = np.stack([x[b, pos[b]] for b in range(B)])
    t = _gelu(g @ w["cls/predictions/transform/dense/kernel"] + w["cls/predictions/transform/dense/bias"])
    t = _ln(t, w["cls/predictions/transform/LayerNorm/gamma"], w["cls/predictions/transform/LayerNorm/beta"])
    mlm = t @ w["bert/embeddings/word_embeddings"].T + w["cls/predictions/output_bias"]
    nsp = pooled @ w["cls/seq_relationship/output_weights"].T + w["cls/seq_relationship/output_bias"]
    return mlm, nsp


def _inputs(seed=1):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (B, SEQ))
    lengths = np.array([SEQ, SEQ - 3, 5])
    mask = (np.arange(SEQ)[None] < lengths[:, None]).astype(np.int32)
    seg = ((np.arange(SEQ)[None] >= lengths[:, None] // 2) & (mask == 1)).astype(np.int32)
    pos = np.stack([rng.choice(int(n), PREDS, replace=False) for n in lengths])
    return ids, mask, seg, pos


def _model_config(albert):
    from training import model_configs
    d = dict(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=A, intermediate_size=I,
             max_position_embeddings=PMAX, type_vocab_size=T, hidden_dropout_prob=0.1,
             attention_probs_dropout_prob=0.1)
    if albert:
        d.update(embedding_size=E, num_hidden_groups=1, inner_group_num=1)
    return model_configs.from_dict(d, "albert" if albert else "bert")


def _load(prefix, albert, load_heads=True, with_nsp=True):
    import jax
    from training import models, tf_checkpoint
    model = models.build_model(_model_config(albert), with_nsp=with_nsp)
    params = models.init_params(model, jax.random.PRNGKey(0), SEQ, PREDS)
    tf_vars = tf_checkpoint.read_tf_checkpoint(prefix)
    params, report = tf_checkpoint.load_into_params(params, tf_vars, load_heads)
    return model, params, report


@pytest.mark.parametrize("albert", [False, True])
def test_tf1_checkpoint_matches_numpy_reference(tmp_path, albert):
    w = _random_weights(_albert_names() if albert else _bert_names())
    prefix = _write_tf1(w, tmp_path / "bert_model.ckpt")
    model, params, report = _load(prefix, albert)
    assert len(report["loaded"]) == len(w)  # every model variable used; slots + global_step skipped
    ids, mask, seg, pos = _inputs()
    out = model.apply({"params": params}, ids, mask, seg, pos, True)
    ref_mlm, ref_nsp = numpy_forward({k: v.astype(np.float64) for k, v in w.items()}, ids, mask, seg, pos, albert)
    np.testing.assert_allclose(np.asarray(out["mlm_logits"]), ref_mlm, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(np.asarray(out["nsp_logits"]), ref_nsp, rtol=2e-4, atol=2e-4)
    assert out["mlm_logits"].dtype == np.float32


def test_bf16_compute_keeps_float32_logits(tmp_path):
    import jax
    from training import models
    w = _random_weights(_bert_names())
    prefix = _write_tf1(w, tmp_path / "bert_model.ckpt", extra_slots=False)
    _, params, _ = _load(prefix, False)
    model16 = models.build_model(_model_config(False), with_nsp=True, dtype="bfloat16")
    ids, mask, seg, pos = _inputs()
    out = model16.apply({"params": params}, ids, mask, seg, pos, True)
    assert out["mlm_logits"].dtype == np.float32 and out["nsp_logits"].dtype == np.float32
    ref_mlm, _ = numpy_forward({k: v.astype(np.float64) for k, v in w.items()}, ids, mask, seg, pos)
    # bf16 matmuls: close to the float reference, not equal.
    assert np.abs(np.asarray(out["mlm_logits"]) - ref_mlm).max() < 0.25 * np.abs(ref_mlm).max()
    del jax


def test_missing_heads_is_an_error_not_a_random_start(tmp_path):
    from training import tf_checkpoint
    w = {k: v for k, v in _random_weights(_bert_names()).items() if not k.startswith("cls/")}
    prefix = _write_tf1(w, tmp_path / "bert_model.ckpt", extra_slots=False)
    with pytest.raises(tf_checkpoint.CheckpointError, match="lacks head variables"):
        _load(prefix, False, load_heads=True)
    _, _, report = _load(prefix, False, load_heads=False)  # encoder only: fine, heads reported random
    assert report["random_heads"] and all(n.startswith("cls/") for n in report["random_heads"])


def test_wrong_shape_names_the_variable(tmp_path):
    from training import tf_checkpoint
    w = _random_weights(_bert_names())
    w["bert/encoder/layer_1/intermediate/dense/kernel"] = np.zeros((H, I + 1), np.float32)
    prefix = _write_tf1(w, tmp_path / "bert_model.ckpt", extra_slots=False)
    with pytest.raises(tf_checkpoint.CheckpointError, match="layer_1/intermediate/dense/kernel"):
        _load(prefix, False)


def test_export_import_round_trip(tmp_path):
    """Orbax run checkpoint -> `bertbeam export` -> TF1 checkpoint with original names -> same weights."""
    import tensorflow as tf
    from training import checkpoints, export, metrics, tf_checkpoint
    w = _random_weights(_bert_names(), seed=3)
    prefix = _write_tf1(w, tmp_path / "src" / "bert_model.ckpt", extra_slots=False)
    _, params, _ = _load(prefix, False)
    run_dir = tmp_path / "run"
    manager = checkpoints.make_manager(str(run_dir), keep=2)
    checkpoints.save(manager, 17, params, {"dummy": np.zeros(2, np.float32)}, {"note": "test"})
    manager.wait_until_finished()
    manager.close()
    metrics.write_model_config(str(run_dir), _model_config(False))
    assert export.main(["--checkpoint", str(run_dir), "--output_dir", str(tmp_path / "exported")]) == 0
    reader = tf.train.load_checkpoint(str(tmp_path / "exported" / "bert_model.ckpt"))
    names = set(reader.get_variable_to_shape_map())
    assert names == set(w) | {"global_step"}
    assert reader.get_tensor("global_step") == 17
    for name, value in w.items():
        np.testing.assert_array_equal(reader.get_tensor(name), value)
    cfg = json.loads((tmp_path / "exported" / "bert_config.json").read_text())
    assert cfg["hidden_size"] == H and cfg["vocab_size"] == V and "model_type" not in cfg
    # And back in: the exported checkpoint loads into the model and reproduces the reference outputs.
    model, params2, _ = _load(str(tmp_path / "exported"), False)
    ids, mask, seg, pos = _inputs(5)
    out = model.apply({"params": params2}, ids, mask, seg, pos, True)
    ref_mlm, _ = numpy_forward({k: v.astype(np.float64) for k, v in w.items()}, ids, mask, seg, pos)
    np.testing.assert_allclose(np.asarray(out["mlm_logits"]), ref_mlm, rtol=2e-4, atol=2e-4)
    assert tf_checkpoint.resolve_tf_checkpoint(str(tmp_path / "exported")).endswith("bert_model.ckpt")


def test_tf2_object_checkpoint_is_rejected_clearly(tmp_path):
    import tensorflow as tf
    from training import tf_checkpoint
    ckpt = tf.train.Checkpoint(encoder=tf.Variable(np.zeros((2, 2), np.float32)))
    path = ckpt.write(str(tmp_path / "tf2" / "ckpt"))
    with pytest.raises(tf_checkpoint.CheckpointError, match="TF2 object-based"):
        tf_checkpoint.read_tf_checkpoint(path)
