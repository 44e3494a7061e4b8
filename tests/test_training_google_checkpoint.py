"""A checkpoint laid out like Google's released multi_cased_L-12_H-768_A-12/bert_model.ckpt (every variable name,
12 layers, the 119,547-row vocabulary, cls/ heads; hidden size shrunk to keep it small), written by TF1's
tf.compat.v1.train.Saver with random values, loads into the Flax model with every variable landing."""
import json

import numpy as np

# multi_cased_L-12_H-768_A-12 with H=768 -> 24 and intermediate 3072 -> 48 (12 heads of width 2).
CONFIG = {"attention_probs_dropout_prob": 0.1, "directionality": "bidi", "hidden_act": "gelu",
          "hidden_dropout_prob": 0.1, "hidden_size": 24, "initializer_range": 0.02, "intermediate_size": 48,
          "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
          "pooler_fc_size": 768, "pooler_num_attention_heads": 12, "pooler_num_fc_layers": 3,
          "pooler_size_per_head": 128, "pooler_type": "first_token_transform", "type_vocab_size": 2,
          "vocab_size": 119547}


def google_variables(cfg):
    """The released checkpoint's variable names and shapes (google-research/bert modeling.py scopes)."""
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    out = {"bert/embeddings/word_embeddings": (v, h), "bert/embeddings/token_type_embeddings": (2, h),
           "bert/embeddings/position_embeddings": (cfg["max_position_embeddings"], h),
           "bert/embeddings/LayerNorm/beta": (h,), "bert/embeddings/LayerNorm/gamma": (h,),
           "bert/pooler/dense/kernel": (h, h), "bert/pooler/dense/bias": (h,),
           "cls/predictions/output_bias": (v,), "cls/predictions/transform/dense/kernel": (h, h),
           "cls/predictions/transform/dense/bias": (h,), "cls/predictions/transform/LayerNorm/beta": (h,),
           "cls/predictions/transform/LayerNorm/gamma": (h,), "cls/seq_relationship/output_bias": (2,),
           "cls/seq_relationship/output_weights": (2, h)}
    for n in range(cfg["num_hidden_layers"]):
        layer = f"bert/encoder/layer_{n}"
        for proj in ("query", "key", "value"):
            out[f"{layer}/attention/self/{proj}/kernel"] = (h, h)
            out[f"{layer}/attention/self/{proj}/bias"] = (h,)
        out[f"{layer}/attention/output/dense/kernel"] = (h, h)
        out[f"{layer}/attention/output/dense/bias"] = (h,)
        out[f"{layer}/intermediate/dense/kernel"] = (h, i)
        out[f"{layer}/intermediate/dense/bias"] = (i,)
        out[f"{layer}/output/dense/kernel"] = (i, h)
        out[f"{layer}/output/dense/bias"] = (h,)
        for scope in ("attention/output/LayerNorm", "output/LayerNorm"):
            out[f"{layer}/{scope}/beta"] = (h,)
            out[f"{layer}/{scope}/gamma"] = (h,)
    return out


def write_with_tf1_saver(folder, cfg, seed=0):
    """bert_model.ckpt.{index,data-00000-of-00001,meta} + bert_config.json, as the release ships them."""
    import tensorflow as tf
    rng = np.random.default_rng(seed)
    values = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in google_variables(cfg).items()}
    folder.mkdir(parents=True, exist_ok=True)
    with tf.Graph().as_default():
        for name, value in values.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(value))
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(folder / "bert_model.ckpt"), write_meta_graph=True)
    (folder / "bert_config.json").write_text(json.dumps(CONFIG, indent=2))
    return values


def test_released_bert_layout_loads_every_variable(tmp_path):
    import jax
    from training import evaluate, model_configs, models, tf_checkpoint
    folder = tmp_path / "multi_cased_L-12_H-768_A-12"
    saved = write_with_tf1_saver(folder, CONFIG)
    assert len(saved) == 5 + 12 * 16 + 2 + 7 == 206
    prefix = tf_checkpoint.resolve_tf_checkpoint(str(folder))  # a folder with a `checkpoint` file, as released
    assert prefix == str(folder / "bert_model.ckpt")
    tf_vars = tf_checkpoint.read_tf_checkpoint(prefix)
    assert set(tf_vars) == set(saved)
    cfg = model_configs.load_config_file(str(folder / "bert_config.json"))
    model = models.build_model(cfg, with_nsp=True)
    init = models.init_params(model, jax.random.PRNGKey(0), 16, 4)
    assert set(tf_checkpoint.flatten(init)) == set(saved)  # the model's names are exactly Google's
    params, report = tf_checkpoint.load_into_params(jax.device_get(init), tf_vars, load_heads=True, source=prefix)
    assert sorted(report["loaded"]) == sorted(saved) and not report["random_heads"] and not report["unused"]
    flat = tf_checkpoint.flatten(params)
    for name, value in saved.items():
        np.testing.assert_array_equal(np.asarray(flat[name]), value, err_msg=name)
    # Without --load_mlm_nsp_weights the encoder lands and the 7 cls/ variables start from random.
    _, body_only = tf_checkpoint.load_into_params(jax.device_get(init), tf_vars, load_heads=False)
    assert len(body_only["loaded"]) == 199 and len(body_only["random_heads"]) == 7
    # `bertbeam evaluate` reads the same release layout (config from bert_config.json beside the checkpoint).
    cfg2, params2, step = evaluate.load_checkpoint(str(folder / "bert_model.ckpt"))
    assert cfg2 == cfg and step is None
    ids = np.full((1, 16), 101, np.int32)
    out = model.apply({"params": params2}, ids, np.ones_like(ids), np.zeros_like(ids), np.zeros((1, 4), np.int32))
    assert out["mlm_logits"].shape == (1, 4, 119547) and np.isfinite(np.asarray(out["nsp_logits"])).all()
