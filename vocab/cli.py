"""`bertbeam vocab`: train (default), `report` and `validate` WordPiece / SentencePiece vocabularies."""
import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

from vocab.vocab_file import VocabError

_log = logging.getLogger("bertbeam.vocab")

_TRAIN_BOOL_FLAGS = ("do_lower_case", "strip_accents", "overwrite", "keep_sample", "shuffle_input_sentence",
                     "allow_smaller_vocab")
_REPORT_BOOL_FLAGS = ("do_lower_case", "strip_accents", "compare_do_lower_case", "compare_strip_accents")

USAGE = """usage:
  bertbeam vocab --input_file GLOBS --output_dir DIR --vocab_size N [--model wordpiece|sentencepiece]
                 [--sp_model_type unigram|bpe|char|word] [--do_lower_case=True|False] [--strip_accents=True|False]
                 [--sample_sentences N] [--heldout_file F [--compare_vocab V]] [--input_format bert|text|jsonl]
                 [--lang L] [--presplit_chars CHARS] [--allow_smaller_vocab]
                 [spm_train options: --control_symbols --user_defined_symbols --character_coverage
                  --input_sentence_size --shuffle_input_sentence --pad_id --unk_id --bos_id --eos_id]
                 [Beam pipeline options for the sampling job, e.g. --runner DataflowRunner ...]
  bertbeam vocab report --vocab_file V [--compare_vocab V2] --heldout_file F
  bertbeam vocab validate --vocab_file V[,V2...]
"""


def parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "t", "1", "yes", "y"):
        return True
    if v in ("false", "f", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (True/False), got {value!r}")


def absl_bools(argv: Sequence[str], names: Sequence[str]) -> List[str]:
    """Rewrites absl spellings `--flag` / `--noflag` of boolean flags to `--flag=true/false`."""
    out = []
    for arg in argv:
        bare = arg[2:] if arg.startswith("--") else None
        if bare in names:
            out.append(f"--{bare}=true")
        elif bare and bare.startswith("no") and bare[2:] in names:
            out.append(f"--{bare[2:]}=false")
        else:
            out.append(arg)
    return out


def _train_parser() -> argparse.ArgumentParser:
    from pipeline.flags import ArgumentParser  # pylint: disable=import-outside-toplevel  (plain argparse)
    p = ArgumentParser(prog="bertbeam vocab", usage=USAGE, allow_abbrev=False)
    p.add_argument("--input_file", required=True, help="comma-separated files/globs, local or gs://, .gz ok")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--vocab_size", type=int, required=True,
                   help="total size of vocab.txt (specials and [unusedN] included) / SentencePiece pieces")
    p.add_argument("--model", choices=("wordpiece", "sentencepiece"), default="wordpiece")
    p.add_argument("--sp_model_type", choices=("unigram", "bpe", "char", "word"), default="unigram")
    p.add_argument("--do_lower_case", type=parse_bool, default=None,
                   help="default True (BERT), but False with --lang bo (Tibetan has no case)")
    p.add_argument("--strip_accents", type=parse_bool, default=None,
                   help="default: same as --do_lower_case (BERT); use --strip_accents=False to keep å, é, ü")
    p.add_argument("--input_format", choices=("bert", "text", "jsonl"), default="bert")
    p.add_argument("--lang", default=None,
                   help="split text/jsonl paragraphs into sentences with these rules (no, nb, nn, da, sv, en, bo); "
                        "bo also sets the Tibetan --presplit_chars and --do_lower_case=False")
    p.add_argument("--presplit_chars", default=None,
                   help="SentencePiece: split the text after each of these characters before training (and, via "
                        "vocab_config.json, before encoding); default with --lang bo: ༄༅༈་༌།༑༔༜྾, else none; "
                        "'' or none turns it off")
    p.add_argument("--allow_smaller_vocab", type=parse_bool, default=False,
                   help="write a vocabulary more than 1%% smaller than --vocab_size instead of stopping")
    p.add_argument("--control_symbols", default=None, help="spm_train: comma-separated control symbols")
    p.add_argument("--user_defined_symbols", default=None, help="spm_train: comma-separated user-defined symbols")
    p.add_argument("--input_sentence_size", type=int, default=0, help="spm_train: sentences sampled (0: all)")
    p.add_argument("--shuffle_input_sentence", type=parse_bool, default=True, help="spm_train: sample at random")
    p.add_argument("--pad_id", type=int, default=0, help="spm_train")
    p.add_argument("--unk_id", type=int, default=1, help="spm_train")
    p.add_argument("--bos_id", type=int, default=-1, help="spm_train (-1: none)")
    p.add_argument("--eos_id", type=int, default=-1, help="spm_train (-1: none)")
    p.add_argument("--text_field", default="text", help="jsonl field holding the text")
    p.add_argument("--sample_sentences", type=int, default=0,
                   help="train on a deterministic Beam-drawn sample of N sentences (0: stream everything)")
    p.add_argument("--random_seed", type=int, default=12345, help="seed of the sample and of SentencePiece")
    p.add_argument("--keep_sample", type=parse_bool, default=False, help="keep DIR/sample_sentences.txt")
    p.add_argument("--min_frequency", type=int, default=2, help="WordPiece: least count of a learned token")
    p.add_argument("--limit_alphabet", type=int, default=1000, help="WordPiece: most initial characters kept")
    p.add_argument("--num_unused_before", type=int, default=99, help="[unusedN] slots between [PAD] and [UNK]")
    p.add_argument("--num_unused_after", type=int, default=100, help="[unusedN] slots after [MASK]")
    p.add_argument("--character_coverage", type=float, default=None,
                   help="SentencePiece character coverage (default 0.9999; 1.0 with --lang bo: a ~70-letter "
                        "alphabet whose rare yig mgo heads would otherwise become <unk>)")
    p.add_argument("--heldout_file", default=None, help="report on this text after training")
    p.add_argument("--compare_vocab", default=None, help="vocabulary to compare with in the report")
    p.add_argument("--overwrite", type=parse_bool, default=False)
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _report_parser(prog: str) -> argparse.ArgumentParser:
    from pipeline.flags import ArgumentParser  # pylint: disable=import-outside-toplevel  (plain argparse)
    p = ArgumentParser(prog=prog, allow_abbrev=False)
    p.add_argument("--vocab_file", required=True)
    p.add_argument("--heldout_file", required=True)
    p.add_argument("--compare_vocab", default=None)
    for name in _REPORT_BOOL_FLAGS:
        p.add_argument(f"--{name}", type=parse_bool, default=None,
                       help="default: from the vocabulary's vocab_config.json, else its content")
    p.add_argument("--json_output", default=None, help="also write the report as JSON here")
    return p


def _copy_tree_to(local_dir: str, remote_dir: str) -> None:
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
    for name in sorted(os.listdir(local_dir)):
        with open(os.path.join(local_dir, name), "rb") as src, \
                FileSystems.create(remote_dir.rstrip("/") + "/" + name) as dst:
            shutil.copyfileobj(src, dst)


def _existing_outputs(output_dir: str) -> List[str]:
    names = ("vocab.txt", "spm.model", "vocab_config.json")
    if "://" in output_dir:
        from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
        return [n for n in names if FileSystems.exists(output_dir.rstrip("/") + "/" + n)]
    return [n for n in names if os.path.exists(os.path.join(output_dir, n))]


def _is_tibetan(lang: Optional[str]) -> bool:
    return bool(lang) and lang.lower().replace("_", "-").split("-")[0] in ("bo", "bod", "tib", "xct")


def run_train(args: argparse.Namespace, pipeline_args: Sequence[str]) -> Dict:
    """Trains, writes vocabulary + sidecar (+ report) into args.output_dir; returns the sidecar dict."""
    # pylint: disable=import-outside-toplevel
    from vocab import casing, corpus
    from vocab.spm_model import load_any_vocab

    tibetan = _is_tibetan(args.lang)
    if args.do_lower_case is None:
        args.do_lower_case = not tibetan
    strip = args.do_lower_case if args.strip_accents is None else args.strip_accents
    if args.character_coverage is None:
        args.character_coverage = 1.0 if tibetan else 0.9999
    if args.presplit_chars is None:
        from transforms.presplit import TIBETAN_PRESPLIT_CHARS  # pylint: disable=import-outside-toplevel
        args.presplit_chars = TIBETAN_PRESPLIT_CHARS if tibetan and args.model == "sentencepiece" else ""
    elif args.presplit_chars.lower() == "none":
        args.presplit_chars = ""
    if args.presplit_chars and args.model != "sentencepiece":
        raise SystemExit("--presplit_chars applies to --model sentencepiece only")
    if args.vocab_size < 10:
        raise SystemExit("--vocab_size must be at least 10")
    existing = _existing_outputs(args.output_dir)
    if existing and not args.overwrite:
        raise SystemExit(f"{args.output_dir} already holds {', '.join(existing)}; pass --overwrite to replace")
    paths = corpus.expand_inputs(args.input_file)
    remote = "://" in args.output_dir
    work_dir = tempfile.mkdtemp(prefix="bertbeam_vocab_") if remote else args.output_dir
    os.makedirs(work_dir, exist_ok=True)
    started = time.time()

    sample_path = None
    if args.sample_sentences > 0:
        from vocab.sample import run_sample_pipeline
        sample_dir = args.output_dir if remote else work_dir
        sample_path = (sample_dir.rstrip("/") + "/" if remote else os.path.join(sample_dir, "")) \
            + "sample_sentences.txt"
        _log.info("drawing a %d-sentence sample from %d file(s) with Beam", args.sample_sentences, len(paths))
        run_sample_pipeline(paths, args.sample_sentences, sample_path, seed=args.random_seed,
                            input_format=args.input_format, text_field=args.text_field,
                            pipeline_args=pipeline_args, lang=args.lang)
        def sentences():
            return corpus.iter_sentences([sample_path], "bert")
    else:
        def sentences():
            return corpus.iter_sentences(paths, args.input_format, args.text_field, lang=args.lang)
    watch = _text_progress(args, sample_path or paths)
    if watch is not None:
        read_sentences = sentences
        def sentences():  # noqa: F811 -- the same sentences, counted for the progress line
            return watch.wrap(read_sentences())

    try:
        if args.model == "wordpiece":
            from vocab.train_wordpiece import (bert_layout, check_wordpiece_size, train_wordpiece_tokens,
                                               write_wordpiece_outputs)
            reserved = args.num_unused_before + args.num_unused_after
            if args.vocab_size - reserved - 5 < 50:
                raise SystemExit(f"--vocab_size {args.vocab_size} leaves {args.vocab_size - reserved - 5} learned tokens "
                                 f"after {reserved} [unusedN] slots; lower --num_unused_before/--num_unused_after")
            learned = train_wordpiece_tokens(sentences, args.vocab_size, args.do_lower_case, strip, reserved,
                                             min_frequency=args.min_frequency, limit_alphabet=args.limit_alphabet)
            tokens = bert_layout(learned, args.num_unused_before, args.num_unused_after)
            check_wordpiece_size(len(tokens), args.vocab_size, args.allow_smaller_vocab, args.min_frequency)
            files = write_wordpiece_outputs(work_dir, tokens, args.do_lower_case, strip)
            vocab_path = files["vocab"]
        else:
            from vocab.train_spm import train_sentencepiece
            files = train_sentencepiece(sentences, work_dir, args.vocab_size, args.sp_model_type, args.do_lower_case,
                                        strip, seed=args.random_seed, character_coverage=args.character_coverage,
                                        presplit_chars=args.presplit_chars, control_symbols=args.control_symbols,
                                        user_defined_symbols=args.user_defined_symbols,
                                        input_sentence_size=args.input_sentence_size,
                                        shuffle_input_sentence=args.shuffle_input_sentence, pad_id=args.pad_id,
                                        unk_id=args.unk_id, bos_id=args.bos_id, eos_id=args.eos_id,
                                        allow_smaller_vocab=args.allow_smaller_vocab)
            vocab_path = files["model"]
    finally:  # a refused vocabulary (too small) must not leave the progress thread running
        if watch is not None:
            watch.stop()
    vocab = load_any_vocab(vocab_path)  # the loader's validation is the acceptance test of our own output
    extra = {"sp_model_type": args.sp_model_type, "presplit_chars": args.presplit_chars,
             "character_coverage": args.character_coverage, "control_symbols": args.control_symbols,
             "user_defined_symbols": args.user_defined_symbols, "input_sentence_size": args.input_sentence_size,
             "shuffle_input_sentence": args.shuffle_input_sentence} if args.model == "sentencepiece" else {
        "num_unused_before": args.num_unused_before, "num_unused_after": args.num_unused_after,
        "min_frequency": args.min_frequency}
    config = casing.make_vocab_config(
        vocab_path, args.do_lower_case, strip, args.model, vocab.size, requested_vocab_size=args.vocab_size,
        special_ids=vocab.special_ids(), input_file=args.input_file, input_format=args.input_format,
        sample_sentences=args.sample_sentences or None, random_seed=args.random_seed,
        lang=args.lang, allow_smaller_vocab=args.allow_smaller_vocab,
        training_seconds=round(time.time() - started, 2), **extra)
    casing.write_vocab_config(vocab_path, config)
    if sample_path and not args.keep_sample and not remote:
        os.remove(sample_path)
    kind = f"{args.sp_model_type} {args.model}" if args.model == "sentencepiece" else args.model
    short = (f"; {args.vocab_size - vocab.size:,} fewer than asked (--allow_smaller_vocab)"
             if vocab.size < args.vocab_size * 0.99 else "")
    print(f"wrote {vocab.size:,}-token {kind} vocabulary to {args.output_dir} "
          f"({'uncased' if args.do_lower_case else 'cased'}, accents {'stripped' if strip else 'kept'}"
          f"{', pre-split after ' + args.presplit_chars if args.presplit_chars else ''}{short}) "
          f"in {time.time() - started:.1f}s")
    if args.heldout_file:
        _print_report(vocab_path, args.heldout_file, args.compare_vocab, (None, None), (None, None),
                      json_output=os.path.join(work_dir, "report.json"))
    if remote:
        _copy_tree_to(work_dir, args.output_dir)
        shutil.rmtree(work_dir, ignore_errors=True)
    return config


def _text_progress(args: argparse.Namespace, paths):
    """Progress lines through the training text (pipeline/progress.py), unless --quiet."""
    from pipeline import progress  # pylint: disable=import-outside-toplevel
    if getattr(args, "quiet", False) or progress.quiet_from_env():
        return None
    paths = [paths] if isinstance(paths, str) else paths
    total = sum(os.path.getsize(p) for p in paths if "://" not in p and os.path.exists(p))
    return progress.TextProgress(total, passes=2 if args.model == "wordpiece" else 1).start()


def _print_report(vocab_file: str, heldout_file: str, compare_vocab: Optional[str],
                  casing_flags: Tuple[Optional[bool], Optional[bool]],
                  compare_flags: Tuple[Optional[bool], Optional[bool]], json_output: Optional[str] = None) -> None:
    from vocab.report import format_reports, read_heldout, report_vocab, reports_json  # pylint: disable=C0415
    lines = read_heldout(heldout_file)
    reports = [report_vocab(vocab_file, lines, *casing_flags)]
    if compare_vocab:
        reports.append(report_vocab(compare_vocab, lines, *compare_flags))
    print(format_reports(reports, heldout_file))
    if json_output:
        with open(json_output, "w", encoding="utf-8") as f:
            f.write(reports_json(reports, heldout_file) + "\n")


def run_validate(vocab_files: str) -> int:
    """Loads each vocabulary with full validation; prints a summary line or the error. 0 if all are fine."""
    # pylint: disable=import-outside-toplevel
    from vocab.casing import check_casing, read_vocab_config
    from vocab.spm_model import load_any_vocab
    status = 0
    for path in [p.strip() for p in vocab_files.split(",") if p.strip()]:
        try:
            vocab = load_any_vocab(path)
            sidecar = read_vocab_config(path)
            lower, strip = check_casing(path)
        except VocabError as e:
            print(f"INVALID {e}", file=sys.stderr)
            status = 1
            continue
        source = "vocab_config.json" if sidecar else "inferred"
        print(f"OK {path}: {vocab.kind}, {vocab.size:,} tokens, special ids {json.dumps(vocab.special_ids())}, "
              f"do_lower_case={lower} strip_accents={strip} ({source}), sha256 {vocab.sha256[:16]}")
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of `bertbeam vocab`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # This command's own INFO lines, not Beam's: its import-time notes (e.g. "No module named
    # google.cloud.bigquery_storage_v1" without the `dataflow` extra) and a sampling job's runner chatter.
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    try:
        if argv and argv[0] == "report":
            args = _report_parser("bertbeam vocab report").parse_args(absl_bools(argv[1:], _REPORT_BOOL_FLAGS))
            _print_report(args.vocab_file, args.heldout_file, args.compare_vocab,
                          (args.do_lower_case, args.strip_accents),
                          (args.compare_do_lower_case, args.compare_strip_accents), args.json_output)
            return 0
        if argv and argv[0] == "validate":
            from pipeline.flags import ArgumentParser  # pylint: disable=import-outside-toplevel
            p = ArgumentParser(prog="bertbeam vocab validate", allow_abbrev=False)
            p.add_argument("--vocab_file", required=True, help="comma-separated vocab.txt / .model paths")
            return run_validate(p.parse_args(argv[1:]).vocab_file)
        if argv and argv[0] == "train":
            argv = argv[1:]
        parser = _train_parser()
        args, pipeline_args = parser.parse_known_args(absl_bools(argv, _TRAIN_BOOL_FLAGS))
        if pipeline_args:
            from pipeline import flags as flaglib  # pylint: disable=import-outside-toplevel
            # Without a sampling job nothing consumes Beam options, so these can only be typos; with one,
            # what neither this command nor Beam's PipelineOptions knows is (Beam would only log it).
            if args.sample_sentences:
                unknown = flaglib.beam_unknown_args_message(pipeline_args, parser)
            else:
                unknown = flaglib.unknown_args_message(pipeline_args, flaglib.option_strings(parser))
                unknown = unknown and f"{unknown} (Beam pipeline options apply only with --sample_sentences)"
            if unknown:
                print(f"{USAGE}\nbertbeam vocab: error: {unknown}", file=sys.stderr)
                return 2
        run_train(args, pipeline_args)
        return 0
    except VocabError as e:
        print(f"bertbeam vocab: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # CorpusError and bad flag values
        print(f"bertbeam vocab: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
