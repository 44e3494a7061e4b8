"""`bertbeam train` with the CompassionAI seed's run_pretraining.py flags (values scaled down) on a tiny
ALBERT with type_vocab_size 1, MLM only, on Tibetan records built by the pipeline: the loss falls."""
import json

VOCAB_SIZE = 1000  # the kangyur_spm fixture's model
TINY_ALBERT = {"attention_probs_dropout_prob": 0, "hidden_act": "gelu", "hidden_dropout_prob": 0,
               "embedding_size": 32, "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128,
               "max_position_embeddings": 128, "num_attention_heads": 2, "num_hidden_layers": 2,
               "num_hidden_groups": 1, "net_structure_type": 0, "gap_size": 0, "num_memory_blocks": 0,
               "inner_group_num": 1, "down_scale_factor": 1, "type_vocab_size": 1, "vocab_size": VOCAB_SIZE}


def test_train_with_seed_albert_flags_loss_falls(tmp_path, kangyur_spm, seed_albert_build_flags):
    from pipeline import build
    from training import run_pretrain
    texts, model = kangyur_spm
    corpus = tmp_path / "bo.jsonl"
    corpus.write_text(json.dumps({"id": "w", "text": "".join(texts)[:120_000]}) + "\n", encoding="utf-8")
    data = tmp_path / "records"
    build.run([f"--input_file={corpus}", "--input_format=jsonl", f"--spm_model_file={model}",
               f"--output_dir={data}", "--pairing=none", "--num_shards=2", "--dupe_factor=2",
               *seed_albert_build_flags])
    config = tmp_path / "albert_config.json"
    config.write_text(json.dumps(TINY_ALBERT))
    out = tmp_path / "run"
    # The seed's command, flag for flag; only the sizes are scaled to a CPU test.
    rc = run_pretrain.main([
        f"--input_file={data}/*.tfrecord", f"--output_dir={out}", f"--albert_config_file={config}",
        "--do_train", "--train_batch_size=16", "--max_seq_length=128", "--max_predictions_per_seq=20",
        "--optimizer=lamb", "--learning_rate=.03", "--num_warmup_steps=10", "--num_train_steps=100",
        "--save_checkpoints_steps=25", "--keep_checkpoint_max=2", "--use_tpu=true", "--tpu_name=tibert-tpu",
        "--tpu_zone=us-central1-a", "--num_tpu_cores=8"])
    assert rc == 0
    hist = json.loads((out / "run" / "run_logs.json").read_text())["history"]
    assert [h["step"] for h in hist] == [25, 50, 75, 100]
    first, last = hist[0]["lm_example_loss"], hist[-1]["lm_example_loss"]
    assert last < first - 0.5, (first, last)
    assert "next_sentence_loss" not in hist[-1]  # MLM only: no SOP/NSP head
    assert json.loads((out / "run" / "bert_config.json").read_text())["type_vocab_size"] == 1
    print(f"lm_example_loss {first:.3f} -> {last:.3f}")
