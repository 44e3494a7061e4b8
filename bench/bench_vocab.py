"""Vocabulary size sweep: train WordPiece at several sizes, report held-out pieces/word, [UNK] and training time.

    .venv/bin/python bench/bench_vocab.py [--input_file F] [--input_format text] [--heldout_file H]
        [--sizes 4000,8000,12000,16000,24000,32000] [--do_lower_case=True] [--strip_accents=False]

Defaults use ../shared (Norwegian Bokmål UD raw train text, UD dev sentences). The baseline column is
bert-base-uncased measured on the same held-out text in the same run.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=wrong-import-position
from vocab import casing, corpus  # noqa: E402
from vocab.cli import parse_bool  # noqa: E402
from vocab.report import read_heldout, report_vocab  # noqa: E402
from vocab.train_wordpiece import bert_layout, train_wordpiece_tokens, write_wordpiece_outputs  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--input_file", default=os.path.join(SHARED, "ud/no_bokmaal/raw_texts_2016/train.txt"))
    p.add_argument("--input_format", default="text")
    p.add_argument("--heldout_file", default=os.path.join(SHARED, "corpora/no_ud_dev.txt"))
    p.add_argument("--baseline_vocab", default=os.path.join(SHARED, "vocab/bert_base_uncased/vocab.txt"))
    p.add_argument("--sizes", default="4000,8000,12000,16000,24000,32000")
    p.add_argument("--do_lower_case", type=parse_bool, default=True)
    p.add_argument("--strip_accents", type=parse_bool, default=False)
    args = p.parse_args()

    paths = corpus.expand_inputs(args.input_file)
    heldout = read_heldout(args.heldout_file)
    train_lines = list(corpus.iter_sentences(paths, args.input_format))
    n_words = sum(len(s.split()) for s in train_lines)
    print(f"training text: {len(train_lines):,} lines, {n_words:,} words; held-out: {args.heldout_file}")
    base = report_vocab(args.baseline_vocab, heldout)
    print(f"baseline {args.baseline_vocab}: size {base.vocab_size:,}, pieces/word {base.pieces_per_word:.3f}, "
          f"words with [UNK] {100 * base.unk_word_rate:.3f}%")
    print(f"{'size':>7} {'learned':>8} {'train s':>8} {'dev p/w':>8} {'train p/w':>9} {'dev UNK%':>8} "
          f"{'1-piece%':>8} {'p/w vs base':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            t0 = time.perf_counter()
            learned = train_wordpiece_tokens(lambda: iter(train_lines), size, args.do_lower_case,
                                             args.strip_accents, 199)
            seconds = time.perf_counter() - t0
            out = os.path.join(tmp, str(size))
            files = write_wordpiece_outputs(out, bert_layout(learned), args.do_lower_case, args.strip_accents)
            casing.write_vocab_config(files["vocab"], casing.make_vocab_config(
                files["vocab"], args.do_lower_case, args.strip_accents, "wordpiece", size))
            dev = report_vocab(files["vocab"], heldout)
            fit = report_vocab(files["vocab"], train_lines)
            print(f"{dev.vocab_size:>7,} {len(learned):>8,} {seconds:>8.2f} {dev.pieces_per_word:>8.3f} "
                  f"{fit.pieces_per_word:>9.3f} {100 * dev.unk_word_rate:>8.3f} "
                  f"{100 * dev.single_piece_word_rate:>8.1f} {dev.pieces_per_word / base.pieces_per_word:>11.3f}")


if __name__ == "__main__":
    main()
