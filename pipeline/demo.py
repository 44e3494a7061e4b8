"""`./run_local.sh`: the main job on an embedded default corpus (CPython's documentation), no downloads.

Writes the corpus in BERT format, trains a small uncased WordPiece vocabulary on it, builds the
pretraining dataset on the DirectRunner and prints where everything is plus a short summary.
"""
import argparse
import os
import sys
import time
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="run_local.sh", description=__doc__)
    parser.add_argument("--output_dir", default="output/demo", help="Where the corpus, vocab and dataset go.")
    # CPython's documentation topics (~400 KB) hold about 4,400 WordPiece tokens at --min_frequency=2 (Python
    # 3.11); `bertbeam vocab` refuses a vocabulary more than 1% smaller than asked, so the default stays below.
    parser.add_argument("--vocab_size", type=int, default=3000, help="WordPiece vocabulary size to train.")
    parser.add_argument("--dupe_factor", type=int, default=5, help="Copies of each document with new masks.")
    parser.add_argument("--max_seq_length", type=int, default=128, help="Sequence length of the dataset.")
    args, beam_args = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pipeline import flags as flaglib  # pylint: disable=import-outside-toplevel
    unknown = flaglib.beam_unknown_args_message(beam_args, parser)  # the rest goes to the build's Beam options
    if unknown:
        parser.error(unknown)  # before the vocabulary is trained, not a traceback from the build after it

    from pipeline import build, inspect_data  # pylint: disable=import-outside-toplevel
    from pipeline.demo_corpus import demo_documents, write_bert_format  # pylint: disable=import-outside-toplevel
    from vocab import cli as vocab_cli  # pylint: disable=import-outside-toplevel

    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    corpus = os.path.join(out, "corpus.txt")
    docs = demo_documents()
    write_bert_format(docs, corpus)
    print(f"[1/3] corpus: {len(docs)} documents of CPython's documentation topics -> {corpus}")

    vocab_dir = os.path.join(out, "vocab")
    started = time.time()
    code = vocab_cli.main(["--input_file", corpus, "--output_dir", vocab_dir, "--vocab_size", str(args.vocab_size),
                           "--do_lower_case=True", "--overwrite"])
    if code:
        return code
    vocab_file = os.path.join(vocab_dir, "vocab.txt")
    print(f"[2/3] vocabulary: {vocab_file} ({time.time() - started:.1f} s)")

    dataset = os.path.join(out, "dataset")
    manifest = build.run([f"--input_file={corpus}", f"--vocab_file={vocab_file}", f"--output_dir={dataset}",
                          f"--max_seq_length={args.max_seq_length}",
                          f"--max_predictions_per_seq={max(1, round(args.max_seq_length * 0.15))}",
                          f"--dupe_factor={args.dupe_factor}", "--do_whole_word_mask", "--overwrite",
                          "--num_shards=4", *beam_args])
    print(f"[3/3] dataset: {dataset}")
    print(build.summarize(manifest, dataset))
    print("\nfirst instance:")
    inspect_data.main([dataset, "--num_instances=1"])
    print(f"\nnext: bertbeam inspect {dataset}   |   ./run_local.sh test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
