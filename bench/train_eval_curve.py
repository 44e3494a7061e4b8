"""A short CPU pretraining run with held-out evaluation: prints eval_* from run_logs.json (the eval curve).

Builds a train set from the first lines of a corpus and a held-out set from later lines (`bertbeam build`),
trains a tiny BERT with --eval_data/--eval_every_steps, and prints the train and eval metrics per evaluation.

  nice -n 10 python bench/train_eval_curve.py --work /tmp/eval_curve --steps 300
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", required=True)
    p.add_argument("--corpus", default=os.path.join(SHARED, "data/corpora/en_books_dev.txt"))
    p.add_argument("--vocab", default=os.path.join(SHARED, "data/vocab/bert_base_uncased/vocab.txt"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval_every", type=int, default=50)
    p.add_argument("--train_lines", type=int, default=6000)
    args = p.parse_args()
    from pipeline import main as cli
    os.makedirs(args.work, exist_ok=True)
    with open(args.corpus, encoding="utf-8") as f:
        lines = f.read().splitlines()
    # Held-out text starts at a blank line (document boundary) after the training lines.
    cut = args.train_lines
    while cut < len(lines) and lines[cut].strip():
        cut += 1
    for name, part in (("train", lines[:cut]), ("heldout", lines[cut:])):
        text = os.path.join(args.work, f"{name}.txt")
        with open(text, "w", encoding="utf-8") as f:
            f.write("\n".join(part) + "\n")
        if not os.path.exists(os.path.join(args.work, name, "manifest.json")):
            assert cli.main(["build", f"--input_file={text}", f"--vocab_file={args.vocab}", "--do_lower_case",
                             f"--output_dir={os.path.join(args.work, name)}", "--max_seq_length=64",
                             "--max_predictions_per_seq=10", "--num_shards=2", "--dupe_factor=2"]) == 0
    config = os.path.join(args.work, "bert_config.json")
    with open(config, "w", encoding="utf-8") as f:
        json.dump({"vocab_size": 30522, "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                   "intermediate_size": 512, "max_position_embeddings": 128, "hidden_act": "gelu"}, f)
    rc = cli.main(["train", f"--pretrain_data={os.path.join(args.work, 'train')}", f"--bert_config_file={config}",
                   f"--output_dir={args.work}/runs", "--run_prefix=curve", "--init_weights",
                   "--train_batch_size=32", "--max_seq_length=64", "--max_predictions_per_seq=10",
                   f"--num_steps_per_epoch={args.steps}", f"--steps_per_loop={args.eval_every}",
                   "--learning_rate=1e-3", f"--warmup_steps={args.steps // 10}", "--optimizer_type=adamw",
                   f"--eval_data={os.path.join(args.work, 'heldout')}", f"--eval_every_steps={args.eval_every}",
                   "--max_eval_examples=512", "--eval_batch_size=64"])
    if rc:
        return rc
    with open(os.path.join(args.work, "runs", "curve", "run_logs.json"), encoding="utf-8") as f:
        logs = json.load(f)
    train_at = {h["step"]: h for h in logs["history"]}
    print("step  train_masked_lm_accuracy  train_lm_example_loss  eval_masked_lm_accuracy  eval_lm_example_loss  "
          "eval_next_sentence_accuracy  eval_next_sentence_loss")
    for e in logs["eval_history"]:
        t = train_at.get(e["step"], {})
        print(f"{e['step']:>4}  {t.get('masked_lm_accuracy', float('nan')):>24.4f}  "
              f"{t.get('lm_example_loss', float('nan')):>21.4f}  {e['eval_masked_lm_accuracy']:>23.4f}  "
              f"{e['eval_lm_example_loss']:>20.4f}  {e['eval_next_sentence_accuracy']:>27.4f}  "
              f"{e['eval_next_sentence_loss']:>23.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
