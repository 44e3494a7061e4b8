"""`bertbeam export --format hf` on tiny models trained on pipeline-built records: stock transformers loads the
folder, reproduces bertbeam's MLM and NSP/SOP losses on the same 64 records to 1e-4, and its tokenizer
reproduces the records' token ids; a published-style HF folder continues pretraining in bertbeam."""
import json
from pathlib import Path

import numpy as np
import pytest
from test_training import compilation_cache  # noqa: F401,E402  (module fixture: compile once per program)

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EN = SHARED / "corpora" / "en_books_dev.txt"
NO = SHARED / "corpora" / "no_ud_dev.txt"
NO_CASED = SHARED / "vocab" / "norwegian_cased_50k" / "vocab.txt"  # [CLS]=501, [PAD]=503: not BERT's ids
EN_UNCASED = SHARED / "vocab" / "bert_base_uncased" / "vocab.txt"
SPM = SHARED / "spm" / "albert_de_30k-clean.model"
SEQ, PREDS, EVAL_N = 64, 10, 64

pytestmark = pytest.mark.skipif(not all(p.exists() for p in (EN, NO, NO_CASED, EN_UNCASED, SPM)),
                                reason="../shared data absent")

COMMON = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
          "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
          "max_position_embeddings": 128, "initializer_range": 0.02}
# (name, corpus, vocabulary flags, pairing, config file kind, config)
CASES = {
    "bert_nsp_norwegian_cased": (NO, [f"--vocab_file={NO_CASED}", "--nodo_lower_case"], "nsp", "bert",
                                 dict(COMMON, vocab_size=50000, type_vocab_size=2)),
    "albert_sop_spm_uncased": (NO, [f"--spm_model_file={SPM}", "--do_lower_case"], "sop", "albert",
                               dict(COMMON, vocab_size=30000, type_vocab_size=2, embedding_size=16,
                                    num_hidden_groups=1, inner_group_num=1, num_hidden_layers=3)),
    "albert_mlm_only_type1_uncased": (EN, [f"--vocab_file={EN_UNCASED}", "--do_lower_case"], "none", "albert",
                                      dict(COMMON, vocab_size=30522, type_vocab_size=1, embedding_size=16,
                                           num_hidden_groups=1, inner_group_num=1)),
}




def _corpus_lines(corpus: Path, n: int = 800):
    return corpus.read_text(encoding="utf-8").splitlines()[:n]


def _build(root: Path, name: str):
    from pipeline import build
    corpus, vocab_flags, pairing, _, _ = CASES[name]
    text = root / f"{name}_corpus.txt"
    text.write_text("\n".join(_corpus_lines(corpus)) + "\n", encoding="utf-8")
    out = root / f"{name}_data"
    build.run([f"--input_file={text}", f"--output_dir={out}", *vocab_flags, f"--pairing={pairing}",
               f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDS}", "--num_shards=2",
               "--dupe_factor=1", "--random_seed=5"])
    return out, text


def _train(root: Path, name: str, data: Path, steps: int = 6):
    from training import config as config_lib, train
    _, _, _, kind, model = CASES[name]
    cfg_file = root / f"{name}_{kind}_config.json"
    cfg_file.write_text(json.dumps(model))
    flags = {"pretrain_data": data, f"{kind}_config_file": cfg_file, "output_dir": root / f"{name}_out",
             "run_prefix": "r", "train_batch_size": 16, "max_seq_length": SEQ, "max_predictions_per_seq": PREDS,
             "num_epochs": 1, "num_steps_per_epoch": steps, "steps_per_loop": steps, "learning_rate": 5e-3,
             "end_lr": 0.0, "warmup_steps": 1, "optimizer_type": "adamw", "init_weights": True,
             "shuffle_buffer": 32}
    result = train.train(config_lib.build_config([f"--{k}={v}" for k, v in flags.items()]))
    return root / f"{name}_out" / "r", result


def first_records(data_dir: Path, n: int = EVAL_N):
    """The first n records in shard order (train-00000 first), no shuffling, as numpy arrays."""
    import tensorflow as tf
    shards = sorted(str(p) for p in data_dir.glob("train-*.tfrecord"))
    raw = [r.numpy() for r, _ in zip(tf.data.TFRecordDataset(shards), range(n))]
    out = {}
    for r in raw:
        ex = tf.train.Example.FromString(r).features.feature
        for k, f in ex.items():
            v = f.int64_list.value if f.HasField("int64_list") else f.float_list.value
            out.setdefault(k, []).append(list(v))
    return {k: np.asarray(v, np.float32 if k == "masked_lm_weights" else np.int64) for k, v in out.items()}


def bertbeam_evaluate(run_dir: Path, data_dir: Path, capsys):
    """`bertbeam evaluate` on the run: the JSON object on the last line of stdout."""
    from training import evaluate
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(run_dir), "--eval_data", str(data_dir),
                          "--max_eval_examples", str(EVAL_N)]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def transformers_losses(folder: Path, data_dir: Path, with_nsp: bool):
    """The same losses computed by stock transformers from the exported folder."""
    model = transformers.AutoModelForPreTraining.from_pretrained(folder) if with_nsp else \
        transformers.AutoModelForMaskedLM.from_pretrained(folder)
    model.eval()
    rec = first_records(data_dir)
    kwargs = {"input_ids": torch.tensor(rec["input_ids"]), "attention_mask": torch.tensor(rec["input_mask"])}
    kwargs["token_type_ids"] = torch.tensor(rec["segment_ids"])
    with torch.no_grad():
        out = model(**kwargs)
    logits = (out.prediction_logits if with_nsp else out.logits).double()
    pos = torch.tensor(rec["masked_lm_positions"])
    gathered = torch.gather(logits, 1, pos[..., None].expand(-1, -1, logits.shape[-1]))
    logp = torch.log_softmax(gathered, -1).numpy()
    nll = -np.take_along_axis(logp, rec["masked_lm_ids"][..., None], -1)[..., 0]
    w = rec["masked_lm_weights"].astype(np.float64)
    result = {"lm_example_loss": float((nll * w).sum() / (w.sum() + 1e-5)), "next_sentence_loss": None}
    if with_nsp:
        nsp = out.seq_relationship_logits if hasattr(out, "seq_relationship_logits") else out.sop_logits
        nsp_logp = torch.log_softmax(nsp.double(), -1).numpy()
        result["next_sentence_loss"] = float(-np.take_along_axis(nsp_logp, rec["next_sentence_labels"], -1).mean())
    return result, type(model).__name__


def _document_streams(tokenizer, corpus_text: Path):
    """Each document's token ids, concatenated over its lines, as int32 bytes for substring search."""
    docs, cur = [], []
    for line in corpus_text.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if cur:
                docs.append(cur)
            cur = []
        else:
            cur.append(line)
    if cur:
        docs.append(cur)
    streams = []
    for doc in docs:
        ids = [i for e in tokenizer(doc, add_special_tokens=False)["input_ids"] for i in e]
        streams.append(np.asarray(ids, np.int32).tobytes())
    return streams


def check_records_tokens(folder: Path, corpus_text: Path, data_dir: Path, n: int = EVAL_N) -> int:
    """Every segment of the first n records (masked tokens put back) occurs, contiguously, in the exported
    tokenizer's ids of one corpus document; returns the number of segments checked."""
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    tok.model_max_length = 1 << 30  # whole documents are tokenized here, not model inputs
    cls_id, sep_id = tok.cls_token_id, tok.sep_token_id
    streams = _document_streams(tok, corpus_text)
    rec = first_records(data_dir, n)
    checked = 0
    for i in range(n):
        ids = rec["input_ids"][i].copy()
        for p, t, w in zip(rec["masked_lm_positions"][i], rec["masked_lm_ids"][i], rec["masked_lm_weights"][i]):
            if w > 0:
                ids[p] = t
        length = int(rec["input_mask"][i].sum())
        ids = ids[:length]
        assert ids[0] == cls_id and ids[-1] == sep_id, (i, ids[:3], ids[-3:])
        seps = [j for j, t in enumerate(ids) if t == sep_id]
        segments = [ids[1:seps[0]]] + [ids[a + 1:b] for a, b in zip(seps, seps[1:])]
        for seg in segments:
            needle = np.asarray(seg, np.int32).tobytes()
            hit = any(any(k % 4 == 0 for k in _find_all(s, needle)) for s in streams)
            assert hit, f"record {i}: segment {tok.convert_ids_to_tokens(list(seg))[:20]} not in any document"
            checked += 1
    return checked


def _find_all(haystack: bytes, needle: bytes):
    k = haystack.find(needle)
    while k >= 0:
        yield k
        k = haystack.find(needle, k + 1)


_EXPORTED = {}


def exported(name: str, tmp_path_factory):
    """Build (pipeline) -> train a few steps -> `bertbeam export --format hf`, once per case in this module."""
    if name not in _EXPORTED:
        from training import export
        root = tmp_path_factory.mktemp(name)
        data, text = _build(root, name)
        run_dir, result = _train(root, name, data)
        out = root / "hf"
        assert export.main(["--format", "hf", "--checkpoint", str(run_dir), "--output_dir", str(out)]) == 0
        _EXPORTED[name] = (data, text, run_dir, result, out)
    return _EXPORTED[name]


@pytest.mark.parametrize("name", list(CASES))
def test_export_hf_loss_and_tokens_match(name, tmp_path_factory, capsys):
    from training import hf_checkpoint
    data, text, run_dir, result, out = exported(name, tmp_path_factory)
    config = json.loads((out / "config.json").read_text())
    _, _, pairing, kind, model = CASES[name]
    with_nsp = pairing != "none"
    assert config["model_type"] == kind and config["hidden_act"] == "gelu_new"
    assert config["architectures"] == [("Albert" if kind == "albert" else "Bert") +
                                       ("ForPreTraining" if with_nsp else "ForMaskedLM")]
    assert config["type_vocab_size"] == model["type_vocab_size"]
    # Stock loaders take the folder; a MLM-only model also loads as *ForPreTraining (its SOP head then random).
    loaded = transformers.AutoModelForPreTraining.from_pretrained(out)
    assert type(loaded).__name__ == config["architectures"][0].replace("ForMaskedLM", "ForPreTraining")
    from training import model_configs
    model_cfg = hf_checkpoint.model_config_from_hf(config)
    assert model_cfg == model_configs.from_dict(model, kind)
    ours = bertbeam_evaluate(run_dir, data, capsys)
    assert ours["num_examples"] == EVAL_N and ours["step"] == result["step"]
    theirs, cls_name = transformers_losses(out, data, with_nsp)
    with capsys.disabled():
        print(f"\n[{name}] {EVAL_N} records, step {result['step']}: lm_example_loss `bertbeam evaluate` "
              f"{ours['lm_example_loss']:.8f} vs transformers {cls_name} "
              f"{theirs['lm_example_loss']:.8f}"
              + (f"; next_sentence_loss {ours['next_sentence_loss']:.8f} vs {theirs['next_sentence_loss']:.8f}"
                 if with_nsp else ""))
    assert abs(ours["lm_example_loss"] - theirs["lm_example_loss"]) < 1e-4
    if with_nsp:
        assert abs(ours["next_sentence_loss"] - theirs["next_sentence_loss"]) < 1e-4
    # `bertbeam evaluate` also takes the exported folder itself: the same metrics as the run.
    from_folder = bertbeam_evaluate(out, data, capsys)
    for key in ("masked_lm_accuracy", "lm_example_loss", "next_sentence_accuracy", "next_sentence_loss"):
        if key in ours:
            assert abs(from_folder[key] - ours[key]) < 1e-5, key
    # The exported tokenizer gives the records' token ids.
    assert check_records_tokens(out, text, data) >= EVAL_N
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    manifest = json.loads((data / "manifest.json").read_text())
    assert tok_cfg["do_lower_case"] == manifest["do_lower_case"]
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok.mask_token_id == manifest["vocab"]["special_ids"]["[MASK]"]
    assert tok.cls_token_id == manifest["vocab"]["special_ids"]["[CLS]"]
    pair = tok("Første setning.", "Andre.")
    if model["type_vocab_size"] == 1:
        assert "token_type_ids" not in pair  # a one-row token-type table must never see segment id 1
    else:
        assert set(pair["token_type_ids"]) == {0, 1}


def test_continue_pretraining_from_hf_folder(tmp_path_factory, tmp_path, capsys):
    """--init_checkpoint HF_FOLDER (--bert_config_file HF_FOLDER/config.json): the weights arrive bit-identical
    from model.safetensors and from a pytorch_model.bin written by transformers (read without torch)."""
    import jax
    from training import config as config_lib, hf_checkpoint, tf_checkpoint, train
    data, _, _, result, out = exported("bert_nsp_norwegian_cased", tmp_path_factory)
    binary = tmp_path / "bin"
    # What transformers 4.x and older hub models ship: a torch.save'd state dict next to config.json.
    binary.mkdir()
    model = transformers.AutoModelForPreTraining.from_pretrained(out)
    torch.save(model.state_dict(), binary / "pytorch_model.bin")
    (binary / "config.json").write_bytes((out / "config.json").read_bytes())
    want = tf_checkpoint.flatten(jax.device_get(result["params"]))
    for folder in (out, binary):
        flags = {"pretrain_data": data, "bert_config_file": folder / "config.json", "init_checkpoint": folder,
                 "load_mlm_nsp_weights": True, "output_dir": tmp_path / f"cont_{folder.name}", "run_prefix": "r",
                 "train_batch_size": 16, "max_seq_length": SEQ, "max_predictions_per_seq": PREDS, "num_epochs": 1,
                 "num_steps_per_epoch": 1, "steps_per_loop": 1, "learning_rate": 0.0, "warmup_steps": 0,
                 "optimizer_type": "adamw", "shuffle_buffer": 8}
        cont = train.train(config_lib.build_config([f"--{k}={v}" for k, v in flags.items()]))
        assert cont["origin"].startswith(f"Hugging Face folder {folder}"), cont["origin"]
        got = tf_checkpoint.flatten(jax.device_get(cont["params"]))
        assert sorted(got) == sorted(want)
        for k in want:  # lr 0: the step leaves the weights as loaded
            np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]), err_msg=f"{folder.name}:{k}")
    # HF -> bertbeam -> HF: exporting the continued run gives back the same tensors, bit for bit.
    again = tmp_path / "again"
    from training import export
    assert export.main(["--format", "hf", "--checkpoint", str(tmp_path / "cont_hf" / "r"),
                        "--output_dir", str(again)]) == 0
    a = hf_checkpoint.read_safetensors(str(out / "model.safetensors"))
    b = hf_checkpoint.read_safetensors(str(again / "model.safetensors"))
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert (out / "tokenizer.json").read_bytes() == (again / "tokenizer.json").read_bytes()
    # A TF1 export of the same run (`--format tf1`, the default) converts to the same Hugging Face tensors.
    assert export.main(["--checkpoint", str(tmp_path / "cont_hf" / "r"), "--output_dir", str(tmp_path / "tf")]) == 0
    assert export.main(["--format", "hf", "--checkpoint", str(tmp_path / "tf" / "bert_model.ckpt"),
                        "--vocab_file", str(NO_CASED), "--nodo_lower_case", "--output_dir", str(tmp_path / "from_tf")]) == 0
    c = hf_checkpoint.read_safetensors(str(tmp_path / "from_tf" / "model.safetensors"))
    for k in a:
        np.testing.assert_array_equal(a[k], c[k], err_msg=k)
    assert (out / "tokenizer.json").read_bytes() == (tmp_path / "from_tf" / "tokenizer.json").read_bytes()
    assert json.loads((tmp_path / "from_tf" / "config.json").read_text()) == json.loads((out / "config.json").read_text())
    # The wrong vocabulary is refused with the reason, not exported.
    refused = tmp_path / "refused"
    capsys.readouterr()
    code = export.main(["--format", "hf", "--checkpoint", str(tmp_path / "cont_hf" / "r"), "--vocab_file",
                        str(EN_UNCASED), "--output_dir", str(refused)])
    assert code == 2 and not refused.exists()
    assert "has 30522 tokens but the model's vocab_size is 50000" in capsys.readouterr().err
