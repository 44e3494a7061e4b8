"""Hugging Face names, safetensors and pytorch_model.bin (read without torch), both directions bit-identical."""
import json
import struct
import sys

import numpy as np
import pytest

from training import hf_checkpoint, model_configs, tf_checkpoint

BERT = model_configs.ModelConfig(vocab_size=40, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=16, max_position_embeddings=32)
ALBERT = model_configs.ModelConfig(vocab_size=40, hidden_size=8, num_hidden_layers=4, num_attention_heads=2,
                                   intermediate_size=16, max_position_embeddings=32, model_type="albert",
                                   embedding_size=4, num_hidden_groups=2, inner_group_num=2, hidden_act="gelu")
ALBERT_MLM = model_configs.ModelConfig(vocab_size=40, hidden_size=8, num_hidden_layers=3, num_attention_heads=2,
                                       intermediate_size=16, max_position_embeddings=32, model_type="albert",
                                       embedding_size=4, type_vocab_size=1)
CASES = [("bert", BERT, True), ("albert_groups", ALBERT, True), ("albert_mlm_type1", ALBERT_MLM, False)]


def _flax_flat(cfg, with_nsp, seed=0):
    import jax
    from training import models
    model = models.build_model(cfg, with_nsp)
    params = models.init_params(model, jax.random.PRNGKey(seed), 16, 4)
    flat = {n: np.asarray(v) for n, v in tf_checkpoint.flatten(params).items()}
    # Random biases/LayerNorm too, so a swapped gamma/beta or bias would show.
    rng = np.random.default_rng(seed)
    return {n: (v + rng.normal(size=v.shape).astype(np.float32) * 0.1).astype(np.float32) for n, v in flat.items()}


def test_safetensors_roundtrip_and_bf16(tmp_path):
    rng = np.random.default_rng(1)
    tensors = {"b": rng.normal(size=(3, 5)).astype(np.float32), "a": np.arange(4, dtype=np.float32)}
    path = str(tmp_path / "m.safetensors")
    hf_checkpoint.write_safetensors(path, tensors)
    back = hf_checkpoint.read_safetensors(path)
    assert sorted(back) == ["a", "b"]
    for k in tensors:
        np.testing.assert_array_equal(back[k], tensors[k])
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0 and json.loads(raw[8:8 + n])["__metadata__"] == {"format": "pt"}
    # A BF16 tensor (how some hub models are stored) widens to float32 exactly.
    vals = np.array([1.0, -2.5, 3.140625], np.float32)
    bf16 = (vals.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps({"x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    (tmp_path / "bf.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bf16)
    np.testing.assert_array_equal(hf_checkpoint.read_safetensors(str(tmp_path / "bf.safetensors"))["x"], vals)
    (tmp_path / "bad.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00nope!")
    with pytest.raises(hf_checkpoint.HFCheckpointError, match="bad.safetensors"):
        hf_checkpoint.read_safetensors(str(tmp_path / "bad.safetensors"))


@pytest.mark.parametrize("name,cfg,with_nsp", CASES)
def test_names_bertbeam_hf_bertbeam_bit_identical(name, cfg, with_nsp):
    flat = _flax_flat(cfg, with_nsp)
    state = hf_checkpoint.to_hf_state_dict(flat, cfg.is_albert)
    assert len(state) == len(flat)
    back, unused = hf_checkpoint.from_hf_state_dict(state, {n: v.shape for n, v in flat.items()}, cfg.is_albert)
    assert unused == [] and sorted(back) == sorted(flat)
    for n in flat:
        assert back[n].dtype == np.float32
        np.testing.assert_array_equal(back[n], flat[n], err_msg=n)
    if cfg.is_albert:
        assert "albert.encoder.albert_layer_groups.1.albert_layers.1.ffn_output.weight" in state or name != "albert_groups"
        assert ("sop_classifier.classifier.weight" in state) == with_nsp
        assert state["albert.embeddings.token_type_embeddings.weight"].shape == (cfg.type_vocab_size, 4)


def _hf_model(cfg, with_nsp):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    import torch
    torch.manual_seed(0)
    hf_cfg = transformers.AutoConfig.for_model(**hf_checkpoint.hf_config(cfg, with_nsp))
    cls = {(False, True): transformers.BertForPreTraining, (True, True): transformers.AlbertForPreTraining,
           (False, False): transformers.BertForMaskedLM, (True, False): transformers.AlbertForMaskedLM}
    model = cls[(cfg.is_albert, with_nsp)](hf_cfg)
    with torch.no_grad():  # non-trivial biases and LayerNorm parameters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.mark.parametrize("name,cfg,with_nsp", CASES)
def test_transformers_folder_to_bertbeam_and_back_bit_identical(name, cfg, with_nsp, tmp_path):
    """A model saved by transformers (safetensors and pytorch_model.bin) -> bertbeam names -> HF names:
    the same keys transformers writes and bit-identical tensors, both file formats read without torch."""
    model = _hf_model(cfg, with_nsp)
    model.save_pretrained(tmp_path / "st")
    (tmp_path / "bin").mkdir()  # transformers 5 writes safetensors only; older models ship torch.save'd .bin
    import torch
    torch.save(model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    (tmp_path / "bin" / "config.json").write_bytes((tmp_path / "st" / "config.json").read_bytes())
    saved = hf_checkpoint.read_safetensors(str(tmp_path / "st" / "model.safetensors"))
    names = {n: v.shape for n, v in _flax_flat(cfg, with_nsp).items()}
    for folder in ("st", "bin"):
        assert hf_checkpoint.is_hf_folder(str(tmp_path / folder))
        found, report = hf_checkpoint.read_hf_folder(str(tmp_path / folder), names, cfg.is_albert)
        assert report["file"].endswith("model.safetensors" if folder == "st" else "pytorch_model.bin")
        assert report["unused"] == [] and sorted(found) == sorted(names), report
        again = hf_checkpoint.to_hf_state_dict(found, cfg.is_albert)
        assert sorted(again) == sorted(saved)  # exactly the keys transformers' save_pretrained writes
        for k in saved:
            np.testing.assert_array_equal(again[k], saved[k], err_msg=f"{folder}:{k}")
    # The other way: bertbeam weights written by the exporter load into transformers unchanged.
    flat = _flax_flat(cfg, with_nsp, seed=3)
    hf_checkpoint.write_safetensors(str(tmp_path / "st" / "model.safetensors"),
                                    hf_checkpoint.to_hf_state_dict(flat, cfg.is_albert))
    import transformers
    loaded = type(model).from_pretrained(tmp_path / "st")
    sd = {k: v.detach().numpy() for k, v in loaded.state_dict().items()}
    expect = hf_checkpoint.to_hf_state_dict(flat, cfg.is_albert)
    for k, v in expect.items():
        np.testing.assert_array_equal(sd[k], v, err_msg=k)
    decoder = "cls.predictions.decoder.weight" if not cfg.is_albert else "predictions.decoder.weight"
    np.testing.assert_array_equal(sd[decoder], flat["bert/embeddings/word_embeddings"])  # tied, as in bertbeam
    assert transformers is not None


def test_torch_bin_read_without_torch(tmp_path, monkeypatch):
    """pytorch_model.bin is read by the restricted unpickler even when torch cannot be imported; a pickle
    holding anything but tensors is refused."""
    pytest.importorskip("torch")
    import pickle
    import torch
    state = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),  # non-contiguous view
             "h": torch.tensor([1.5, -2.0], dtype=torch.float16), "b": torch.tensor([0.5, 1.25], dtype=torch.bfloat16),
             "s": torch.tensor(3.0)}
    torch.save(state, tmp_path / "pytorch_model.bin")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    got = hf_checkpoint.read_torch_bin(str(tmp_path / "pytorch_model.bin"))
    np.testing.assert_array_equal(got["w"], np.arange(12, dtype=np.float32).reshape(3, 4).T)
    np.testing.assert_array_equal(got["h"], np.array([1.5, -2.0], np.float16))
    np.testing.assert_array_equal(got["b"], np.array([0.5, 1.25], np.float32))
    assert got["s"].shape == () and float(got["s"]) == 3.0
    monkeypatch.undo()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    torch.save({"x": torch.zeros(1), "y": Evil()}, tmp_path / "evil.bin", pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(hf_checkpoint.HFCheckpointError, match="builtins.print"):
        hf_checkpoint.read_torch_bin(str(tmp_path / "evil.bin"))


def test_config_json_both_ways(tmp_path):
    cfg = hf_checkpoint.hf_config(BERT, True, {"[PAD]": 503, "[CLS]": 501, "[SEP]": 504})
    assert cfg["hidden_act"] == "gelu_new" and cfg["architectures"] == ["BertForPreTraining"]
    assert cfg["pad_token_id"] == 503 and cfg["model_type"] == "bert"
    assert hf_checkpoint.model_config_from_hf(cfg) == BERT
    acfg = hf_checkpoint.hf_config(ALBERT_MLM, False)
    assert acfg["architectures"] == ["AlbertForMaskedLM"] and acfg["type_vocab_size"] == 1
    assert hf_checkpoint.model_config_from_hf(acfg) == ALBERT_MLM
    from training import models  # every activation the Flax models know has a transformers name
    for act in models.ACTIVATIONS:
        import dataclasses
        back = hf_checkpoint.model_config_from_hf(hf_checkpoint.hf_config(dataclasses.replace(BERT, hidden_act=act), True))
        assert models.ACTIVATIONS[back.hidden_act] is models.ACTIVATIONS[act]
    # HF's "gelu" is exact GELU: imported as bertbeam's gelu_exact, not the tanh form.
    assert hf_checkpoint.model_config_from_hf(dict(cfg, hidden_act="gelu")).hidden_act == "gelu_exact"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(dict(cfg, transformers_version="5.0.0")))
    assert model_configs.load_config_file(str(path)) == BERT  # --bert_config_file HF_FOLDER/config.json
    with pytest.raises(hf_checkpoint.HFCheckpointError, match="model_type 'roberta'"):
        hf_checkpoint.model_config_from_hf(dict(cfg, model_type="roberta"))


def test_folder_errors(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(hf_checkpoint.hf_config(BERT, True)))
    assert not hf_checkpoint.is_hf_folder(str(tmp_path))  # no weights
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert hf_checkpoint.is_hf_folder(str(tmp_path))
    names = {n: v.shape for n, v in _flax_flat(ALBERT, True).items()}
    with pytest.raises(hf_checkpoint.HFCheckpointError, match="a bert model, but the run's model config is albert"):
        hf_checkpoint.read_hf_folder(str(tmp_path), names, True)
    # Missing encoder tensors are reported by name, as for TF checkpoints.
    flat = _flax_flat(BERT, True)
    state = hf_checkpoint.to_hf_state_dict(flat, False)
    del state["bert.encoder.layer.1.output.dense.weight"]
    hf_checkpoint.write_safetensors(str(tmp_path / "model.safetensors"), state)
    import jax
    from training import models
    params = models.init_params(models.build_model(BERT, True), jax.random.PRNGKey(1), 16, 4)
    with pytest.raises(tf_checkpoint.CheckpointError, match="bert/encoder/layer_1/output/dense/kernel"):
        hf_checkpoint.load_into(params, str(tmp_path), True, False)


def test_sharded_safetensors_and_legacy_bin(tmp_path):
    """A sharded folder (model.safetensors.index.json, as the hub stores large models) reads as one state dict;
    a pre-1.6 (non-zip) pytorch_model.bin is a clear error naming torch."""
    state = hf_checkpoint.to_hf_state_dict(_flax_flat(BERT, True), False)
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in shards.items():
        hf_checkpoint.write_safetensors(str(tmp_path / name), {k: state[k] for k in part})
    index = {"metadata": {}, "weight_map": {k: name for name, part in shards.items() for k in part}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps(hf_checkpoint.hf_config(BERT, True)))
    assert hf_checkpoint.is_hf_folder(str(tmp_path))
    got, source = hf_checkpoint.read_hf_weights(str(tmp_path))
    assert source.endswith("model.safetensors.index.json") and sorted(got) == keys
    for k in keys:
        np.testing.assert_array_equal(got[k], state[k])
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "pytorch_model.bin").write_bytes(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.")
    with pytest.raises(hf_checkpoint.HFCheckpointError, match="legacy .*needs torch"):
        hf_checkpoint.read_hf_weights(str(legacy))


@pytest.mark.parametrize("name,cfg,with_nsp", CASES)
def test_exported_weights_same_outputs_in_transformers(name, cfg, with_nsp, tmp_path):
    """bertbeam's Flax forward and transformers' forward on exported weights agree (shared ALBERT groups with
    two inner layers, MLM-only with one token type, padding) to 3e-6 (measured <= 3e-7; transformers' exact
    "gelu" instead of "gelu_new" would be off by 3e-5), without ../shared."""
    import jax.numpy as jnp
    from training import models
    model = _hf_model(cfg, with_nsp)
    import torch
    flat = _flax_flat(cfg, with_nsp, seed=5)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in hf_checkpoint.to_hf_state_dict(flat, cfg.is_albert).items()},
                          strict=False)
    rng = np.random.default_rng(2)
    ids = rng.integers(5, cfg.vocab_size, size=(3, 16))
    mask = np.ones((3, 16), np.int64)
    mask[1, 10:] = 0
    seg = np.zeros((3, 16), np.int64) if cfg.type_vocab_size == 1 else (np.arange(16) >= 7).astype(np.int64)[None].repeat(3, 0)
    pos = np.array([[1, 3, 5, 0], [2, 4, 9, 0], [0, 7, 8, 15]])
    out = models.build_model(cfg, with_nsp).apply({"params": tf_checkpoint.unflatten(flat)}, jnp.asarray(ids),
                                                  jnp.asarray(mask), jnp.asarray(seg), jnp.asarray(pos), True)
    with torch.no_grad():
        hf = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(seg))
    logits = (hf.prediction_logits if with_nsp else hf.logits).numpy()
    np.testing.assert_allclose(np.take_along_axis(logits, pos[..., None], 1), np.asarray(out["mlm_logits"]),
                               atol=3e-6, rtol=0)
    if with_nsp:
        nsp = hf.seq_relationship_logits if not cfg.is_albert else hf.sop_logits
        np.testing.assert_allclose(nsp.numpy(), np.asarray(out["nsp_logits"]), atol=3e-6, rtol=0)
