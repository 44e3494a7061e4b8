"""`bertbeam build`: corpus -> sharded BERT pretraining TFRecords + manifest.json, on any Beam runner."""
import argparse
import contextlib
import logging
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pipeline import __version__
from pipeline import albert_flags
from pipeline import flags as flaglib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow (tf-text) start-up chatter

BOOL_FLAGS = ("do_lower_case", "do_whole_word_mask", "overwrite", "favor_shorter_ngram", "strip_accents",
              "write_document_ids", "allow_local_paths")
# Rough TFRecord bytes per input byte per dupe copy (measured: ~1.9 on English books at seq 128),
# used only to pick a shard count when --num_shards is not given.
OUTPUT_BYTES_PER_INPUT_BYTE = 2.0


class FlagError(ValueError):
    """A flag value that cannot work; the message names the flag."""


class BuildFailed(RuntimeError):
    """The job could not finish for a reason outside the data (e.g. a stalled cluster); the message says what
    to change. Partial output is left without a manifest, as after any failed run (rerun with --overwrite)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bertbeam build", description=__doc__,
                                epilog="Every other argument is passed to Beam's PipelineOptions "
                                       "(--runner, --direct_num_workers, --direct_running_mode, Dataflow flags).")
    p.add_argument("--input_file", required=True,
                   help="Comma-separated input files or globs (local or gs://; gzip read transparently).")
    p.add_argument("--output_dir", required=True, help="Output folder (local or gs://).")
    p.add_argument("--vocab_file", default=None, help="WordPiece vocab.txt the model will be trained with.")
    p.add_argument("--spm_model_file", default=None, help="SentencePiece model (ALBERT format) instead of WordPiece.")
    p.add_argument("--model_class", default=None, help="Model class whose vocabulary/casing defaults to use.")
    flaglib.add_bool(p, "do_lower_case", None, "Lower case the input (default True for WordPiece).")
    flaglib.add_bool(p, "strip_accents", None, "Strip accents when lower casing (default: as do_lower_case).")
    flaglib.add_bool(p, "do_whole_word_mask", None, "Mask whole words instead of WordPiece pieces (default False).")
    p.add_argument("--max_seq_length", type=flaglib.int_list, default=[128],
                   help="Maximum sequence length; a comma-separated list (e.g. 128,512) builds one dataset per "
                        "length from a single read, in DIR/seqL/.")
    p.add_argument("--max_predictions_per_seq", type=flaglib.int_list, default=[20],
                   help="Maximum masked LM predictions per sequence (one value, or one per length).")
    p.add_argument("--masked_lm_prob", type=float, default=0.15, help="Masked LM probability.")
    p.add_argument("--short_seq_prob", type=float, default=0.1,
                   help="Probability of creating sequences shorter than the maximum length.")
    p.add_argument("--dupe_factor", type=flaglib.int_list, default=[10],
                   help="Number of times to duplicate the input data (with different masks); one value, or one "
                        "per length.")
    p.add_argument("--random_seed", type=int, default=12345, help="Random seed for data generation.")
    p.add_argument("--pairing", default=None, choices=("nsp", "sop", "none"),
                   help="Pair task: BERT next-sentence (nsp, the default), ALBERT sentence-order (sop), or none "
                        "(MLM only).")
    p.add_argument("--max_ngram_size", "--ngram", type=int, default=1,
                   help="ALBERT n-gram masking: spans of 1..N words (--ngram is ALBERT's name).")
    flaglib.add_bool(p, "favor_shorter_ngram", True, "n-gram length probability ∝ 1/n.")
    p.add_argument("--sop_single_sentence", default="random_document", choices=("random_document", "split", "drop"),
                   help="sop: a one-sentence chunk is paired with another document and labelled 1 as ALBERT "
                        "does (random_document), cut inside the sentence (split), or dropped (drop).")
    flaglib.add_bool(p, "write_document_ids", None,
                     "Add a `document_id` bytes feature (the --id_field value, else file@offset); default on "
                     "with --id_field. run_pretraining.py ignores it.")
    p.add_argument("--masking", default="static", choices=("static", "dynamic"),
                   help="static: masks written in the records; dynamic: masked at load time by the trainer.")
    p.add_argument("--input_format", default="bert", choices=("bert", "text", "jsonl"),
                   help="bert: a sentence a line; text: a paragraph a line; jsonl: a document a line. "
                        "Blank lines separate documents (bert, text).")
    p.add_argument("--text_field", default="text", help="jsonl: field holding the text.")
    p.add_argument("--id_field", default=None, help="jsonl: optional field holding a document id.")
    p.add_argument("--lang", default=None, help="Sentence segmentation rules for text/jsonl (no, nb, nn, da, sv, en, bo).")
    p.add_argument("--num_shards", type=int, default=0, help="Output shards (0: from --target_shard_mb).")
    p.add_argument("--target_shard_mb", type=float, default=256.0,
                   help="Approximate shard size used to choose the shard count when --num_shards is 0.")
    p.add_argument("--compression", default="none", choices=("none", "gzip"), help="Output TFRecord compression.")
    flaglib.add_bool(p, "overwrite", False, "Replace an earlier output in --output_dir.")
    p.add_argument("--random_next_bucket_size", type=int, default=1000,
                   help="Documents per bucket from which NSP random-next documents are drawn "
                        "(the reference draws from one input file).")
    p.add_argument("--bucket_max_mb", type=float, default=1.0,
                   help="A bucket also closes at this much text once it holds 16 documents (bounds worker "
                        "memory: about 150 MB per MB of text at seq 128, dupe_factor 5).")
    p.add_argument("--input_split_mb", type=float, default=0.0,
                   help="Input files are read in ranges of this size (the unit a worker reads). 0 (default): from "
                        "the corpus size alone, total/64 clamped to 1..64 MB, so a mid-size corpus still spreads "
                        "over local workers (the output never depends on the worker count).")
    p.add_argument("--quiet", action="store_true",
                   help="No progress lines or time table on stderr (local runs print a line every few seconds).")
    p.add_argument("--max_line_bytes", type=int, default=0,
                   help="Longest input line kept; a document with a longer line is dropped and counted "
                        "(0: 1 MiB for bert, 4 MiB for text, 64 MiB for jsonl).")
    albert_flags.add_albert_aliases(p)
    p.add_argument("--shuffle", default="auto", choices=("auto", "runner", "local_files"),
                   help="How records reach their shard: through the runner's GroupByKey (runner: Dataflow/Flink/"
                        "Spark/Dask shuffle, no intermediate files) or through key-sorted run files in "
                        "--output_dir (local_files: flat memory on one machine). auto: local_files on the local "
                        "DirectRunner, runner elsewhere. Both give identical bytes.")
    flaglib.add_bool(p, "allow_local_paths", False,
                     "Let a non-local runner (Dataflow, Dask, Flink, ...) use local paths, e.g. a folder every "
                     "worker mounts; without it they are an error before the job is submitted.")
    return p


def parse_args(argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(flaglib.normalize_argv(argv, BOOL_FLAGS + albert_flags.ALBERT_BOOL_FLAGS))
    try:
        albert_flags.apply_albert_aliases(args)
    except albert_flags.AlbertFlagError as e:
        raise FlagError(str(e)) from e
    return args, beam_args


def resolve_vocabulary_flags(args: argparse.Namespace) -> None:
    """Fills vocabulary, casing and whole-word defaults: explicit flags, then --model_class, then the
    vocabulary's casing sidecar (vocab_config.json) or content. A flag contradicting the sidecar is an error."""
    from vocab.casing import check_casing  # pylint: disable=import-outside-toplevel
    from vocab.registry import apply_model_class_defaults  # pylint: disable=import-outside-toplevel
    if args.model_class:
        explicit = {"vocab_file": args.vocab_file or args.spm_model_file, "do_lower_case": args.do_lower_case,
                    "strip_accents": args.strip_accents, "do_whole_word_mask": args.do_whole_word_mask}
        try:
            filled = apply_model_class_defaults(args.model_class, explicit)
        except ValueError as e:
            raise FlagError(str(e)) from e
        vocab_path = filled.get("vocab_file")
        if vocab_path and not (args.vocab_file or args.spm_model_file):
            if vocab_path.endswith(".model"):
                args.spm_model_file = vocab_path
            else:
                args.vocab_file = vocab_path
        args.do_lower_case = filled.get("do_lower_case")
        args.strip_accents = filled.get("strip_accents")
        args.do_whole_word_mask = filled.get("do_whole_word_mask")
    if args.do_whole_word_mask is None:
        args.do_whole_word_mask = False
    if args.vocab_file and not args.spm_model_file:
        args.do_lower_case, args.strip_accents = check_casing(args.vocab_file, args.do_lower_case, args.strip_accents)
    elif args.do_lower_case is None:
        args.do_lower_case = False  # SentencePiece models carry their own normalisation


def validate_args(args: argparse.Namespace) -> List[str]:
    """Raises FlagError for settings that cannot work; returns warnings for doubtful ones."""
    from transforms.instances import min_seq_length  # pylint: disable=import-outside-toplevel
    warnings = []
    if not args.vocab_file and not args.spm_model_file:
        raise FlagError("--vocab_file (WordPiece) or --spm_model_file (SentencePiece) is required")
    if args.vocab_file and args.spm_model_file:
        raise FlagError("give either --vocab_file or --spm_model_file, not both")
    if not 0.0 < args.masked_lm_prob <= 1.0:
        raise FlagError(f"--masked_lm_prob={args.masked_lm_prob}: must be in (0, 1]")
    if not 0.0 <= args.short_seq_prob <= 1.0:
        raise FlagError(f"--short_seq_prob={args.short_seq_prob}: must be in [0, 1]")
    if args.dupe_factor < 1:
        raise FlagError(f"--dupe_factor={args.dupe_factor}: must be at least 1")
    need = min_seq_length(args.pairing)
    if args.max_seq_length < need:
        raise FlagError(f"--max_seq_length={args.max_seq_length}: --pairing={args.pairing} needs at least {need} "
                        f"([CLS], [SEP]{', [SEP]' if args.pairing != 'none' else ''} and a token per segment)")
    if args.max_predictions_per_seq < 1:
        raise FlagError(f"--max_predictions_per_seq={args.max_predictions_per_seq}: must be at least 1")
    if args.max_predictions_per_seq > args.max_seq_length:
        raise FlagError(f"--max_predictions_per_seq={args.max_predictions_per_seq} exceeds "
                        f"--max_seq_length={args.max_seq_length}")
    expected = args.max_seq_length * args.masked_lm_prob
    # What masking asks for in a full-length sequence (the reference: round(len(tokens) * masked_lm_prob)).
    wanted = max(1, int(round(expected)))
    if args.max_predictions_per_seq < wanted:
        warnings.append(f"--max_predictions_per_seq={args.max_predictions_per_seq} is below max_seq_length * "
                        f"masked_lm_prob = {expected:.1f}: long sequences get fewer masks than masked_lm_prob "
                        f"asks (the BERT README sets it to about max_seq_length * masked_lm_prob, e.g. {wanted})")
    elif args.max_predictions_per_seq > wanted + max(2, math.ceil(0.25 * wanted)):
        warnings.append(f"--max_predictions_per_seq={args.max_predictions_per_seq} is well above max_seq_length * "
                        f"masked_lm_prob = {expected:.1f}: the extra slots are only padding (the BERT README "
                        f"sets it to about max_seq_length * masked_lm_prob, e.g. {wanted})")
    if args.max_ngram_size < 1:
        raise FlagError(f"--max_ngram_size={args.max_ngram_size}: must be at least 1")
    if args.num_shards < 0:
        raise FlagError(f"--num_shards={args.num_shards}: must be >= 0")
    if args.random_next_bucket_size < 2:
        raise FlagError(f"--random_next_bucket_size={args.random_next_bucket_size}: must be at least 2")
    if args.bucket_max_mb <= 0:
        raise FlagError("--bucket_max_mb must be positive")
    if args.input_split_mb < 0:
        raise FlagError(f"--input_split_mb={args.input_split_mb:g}: must be positive (or 0 for automatic)")
    return warnings


# Inputs checked by content on the launching machine at most (more, or a non-local runner: on the workers).
SNIFF_ON_LAUNCHER_MAX_FILES = 1000
# Ranges listed inline in the job graph at most; beyond, the input list travels through a file (a small graph
# for 40,000 inputs) and ranges are cut on the workers.
INLINE_RANGES_MAX = 5000
MATCH_THREADS = 16


def sniffs_on_launcher(sniff: bool, n_files: int) -> bool:
    """Whether the launcher checks the inputs' first bytes itself (discover_inputs), leaving the pipeline
    to read them without checking again."""
    return sniff and n_files <= SNIFF_ON_LAUNCHER_MAX_FILES


def _match_pattern(pattern: str):
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
    from transforms import fileio  # pylint: disable=import-outside-toplevel
    try:
        result = FileSystems.match([pattern])[0]
    except Exception as e:  # Beam raises BeamIOError for unreachable locations
        raise FlagError(f"--input_file: cannot list {pattern!r}: {e}") from e
    files = [m for m in result.metadata_list if not m.path.endswith("/")]
    if not files:
        if not any(c in pattern for c in "*?["):
            raise FlagError(f"--input_file: {pattern}: no such file")
        raise FlagError(f"--input_file: {pattern!r} matches no file")
    for m in files:
        if not fileio.is_remote(m.path) and os.path.isdir(m.path):
            raise FlagError(f"--input_file: {m.path} is a folder; give its files, e.g. "
                            f"--input_file={m.path.rstrip('/')}/*")
    return [(m.path, m.size_in_bytes) for m in files]


def discover_inputs(patterns: str, sniff: bool = True):
    """Matches the comma-separated patterns (metadata only: names and sizes, patterns listed in bounded
    parallel), so that a missing or empty input fails now, naming the file, not hours later in a worker.

    With sniff (and at most SNIFF_ON_LAUNCHER_MAX_FILES files), also checks each file's first bytes here
    (gzip by content, whatever the extension; damaged gzip starts; UTF-16). Without it, gzip is guessed
    from the `.gz` extension (only to choose a shard count) and the same checks run in the pipeline
    (corpus_reader.ranges_for_file), failing the job with the same message."""
    from concurrent.futures import ThreadPoolExecutor  # pylint: disable=import-outside-toplevel
    from transforms import corpus_reader, fileio  # pylint: disable=import-outside-toplevel

    pattern_list = [p.strip() for p in patterns.split(",") if p.strip()]
    if not pattern_list:
        raise FlagError("--input_file: no input files given")
    with ThreadPoolExecutor(max_workers=min(MATCH_THREADS, len(pattern_list))) as pool:
        matched = list(pool.map(_match_pattern, pattern_list))
    found: Dict[str, int] = {path: size for files in matched for path, size in files}
    if not any(found.values()):
        raise FlagError(f"--input_file: all {len(found)} matched file(s) are empty, e.g. {min(found)}")
    paths = sorted(found)
    root = corpus_reader.common_root(paths)
    sniff = sniffs_on_launcher(sniff, len(paths))
    inputs = []
    for path in paths:
        if sniff:
            try:
                is_gzip = corpus_reader.sniff_input(path, found[path], fileio.open_read)
            except corpus_reader.InputError as e:
                raise FlagError(f"--input_file: {e}") from e
        else:
            is_gzip = path.endswith(".gz")
        inputs.append(corpus_reader.InputFile(path=path, key=path[len(root):], size=found[path], is_gzip=is_gzip))
    return inputs


def gzip_split_warning(inputs, split_bytes: int) -> Optional[str]:
    """One warning naming the largest gzip input over --input_split_mb: a gzip file cannot be split, so it is
    read by one worker from start to end (with --shuffle=runner its buckets are still built on all workers)."""
    big = sorted((f for f in inputs if f.is_gzip and f.size > split_bytes), key=lambda f: (-f.size, f.path))
    if not big:
        return None
    more = f" (and {len(big) - 1} more)" if len(big) > 1 else ""
    return (f"--input_file: {big[0].path} is gzip and {big[0].size / 1e6:.1f} MB{more}, larger than "
            f"--input_split_mb={split_bytes / (1 << 20):g}: gzip cannot be split, so one worker reads it whole; "
            f"recompress it in parts (or store it uncompressed) to read it in parallel")


LOCAL_RUNNERS = ("directrunner", "direct", "fnapirunner", "bundlebaseddirectrunner", "switchingdirectrunner",
                 "prismrunner", "testdirectrunner")


def _runner_short_name(runner_name: str) -> str:
    """`--runner`'s class name, lower case, also when given as a dotted path."""
    return runner_name.rsplit(".", 1)[-1].lower()


def is_local_runner(runner_name: str) -> bool:
    """Whether the runner runs in this machine's process tree (its workers see this machine's files)."""
    return _runner_short_name(runner_name) in LOCAL_RUNNERS


def is_dask_runner(runner_name: str) -> bool:
    """`--runner=DaskRunner` (or its dotted path): Beam's DaskRunner, which Beam's short names do not include."""
    return _runner_short_name(runner_name) in ("daskrunner", "dask")


def _holds_grouped_data_in_memory(runner_name: str, options: Dict[str, Any]) -> bool:
    """Whether the runner keeps a GroupByKey's values in memory (so the records themselves must not go through
    one): Beam's DaskRunner, and the PortableRunner on the embedded job server (`--job_endpoint=embed`, Beam's
    in-process FnApiRunner, whose data plane also carries a whole stage's output through one gRPC stream)."""
    name = _runner_short_name(runner_name)
    if name in ("daskrunner", "dask"):
        return True
    return name in ("portablerunner", "portable") and options.get("job_endpoint") == "embed"


def resolve_shuffle(shuffle: str, runner_name: str, options: Optional[Dict[str, Any]] = None,
                    output_dir: str = "") -> str:
    """--shuffle=auto: run files under --output_dir (only file references are grouped, memory flat in corpus
    size) for the runners that hold grouped data in memory, whose workers all see --output_dir: the local
    DirectRunner, Beam's DaskRunner and the embedded portable job server with a local --output_dir (a folder
    every worker mounts: --allow_local_paths says so for a distributed runner). The runner's own GroupByKey
    where it spills to disk (Dataflow, Flink, Spark job servers), or where --output_dir is remote (run files on
    object storage cost buckets x shards reads)."""
    if shuffle != "auto":
        return shuffle
    if is_local_runner(runner_name):
        return "local_files"
    remote = "://" in output_dir  # as fileio.is_remote, without loading Beam (launch's dry runs call this)
    if _holds_grouped_data_in_memory(runner_name, options or {}) and not remote:
        return "local_files"
    return "runner"


def in_memory_shuffle_warning(shuffle: str, runner_name: str, options: Dict[str, Any]) -> Optional[str]:
    """A warning when the records go through a GroupByKey that a runner holds in memory: worker memory then
    grows with the corpus."""
    if shuffle != "runner" or not _holds_grouped_data_in_memory(runner_name, options):
        return None
    return (f"--shuffle=runner on --runner={runner_name}: this runner holds every grouped record in memory, so "
            f"worker memory grows with the output (about 37x the input text at seq 128+512, dupe_factor 5); for a "
            f"corpus larger than a small slice of the cluster's memory use --shuffle=local_files with an "
            f"--output_dir every worker mounts (memory flat in corpus size)")


def _path_flags(args: argparse.Namespace) -> List[Tuple[str, str]]:
    """(flag, path) for every file or folder a build reads or writes."""
    named = [("input_file", p.strip()) for p in args.input_file.split(",") if p.strip()]
    return named + [(flag, getattr(args, flag)) for flag in ("output_dir", "vocab_file", "spm_model_file")
                    if getattr(args, flag)]


def check_remote_paths(args: argparse.Namespace, runner_name: str) -> None:
    """A non-local runner's workers cannot see this machine's files: a local --input_file, --output_dir,
    --vocab_file or --spm_model_file fails now, before submission, unless --allow_local_paths."""
    if is_local_runner(runner_name) or args.allow_local_paths:
        return
    from transforms import fileio  # pylint: disable=import-outside-toplevel
    for flag, path in _path_flags(args):
        if not fileio.is_remote(path):
            raise FlagError(f"--{flag}={path} is a local path, but --runner={runner_name} runs on other "
                            f"machines that cannot see it; use a shared location (e.g. gs://...), or pass "
                            f"--allow_local_paths if every worker mounts this path")


def check_remote_support(args: argparse.Namespace, runner_name: str, dry_run: bool = False) -> None:
    """A gs:// flag, or --runner=DataflowRunner, without the Google Cloud libraries (a local install leaves them
    out) fails now, naming the flag and the package to install, not later inside a worker. Beam's --dry_run
    (the job graph, nothing submitted) needs no storage."""
    from transforms import fileio  # pylint: disable=import-outside-toplevel
    for flag, path in _path_flags(args):
        problem = fileio.remote_support_problem(path)
        if problem:
            raise FlagError(f"--{flag}={path}: {problem}")
    # Dataflow stages the job through gs:// (Beam's DataflowRunner itself imports without the libraries).
    if _runner_short_name(runner_name) in ("dataflowrunner", "dataflow") and not dry_run and \
            fileio.remote_support_problem("gs://staging/"):
        raise FlagError(f"--runner={runner_name} needs Beam's Google Cloud libraries: {fileio.REMOTE_EXTRA_HINT}")


# What a build writes under --output_dir (or its seqN/ folder when several lengths are built).
_OWN_OUTPUT = (r"(seq\d+/)?((\.tmp-[0-9a-f]{32}-)?(train-\d{5,}-of-\d{5,}\.tfrecord(\.gz)?|manifest\.json|_SUCCESS|"
               r"\.bertbeam_write_test)(\.tmp-[0-9a-f]{32})?|_bertbeam_tmp/.*)")


def _is_own_output(name: str) -> bool:
    """Whether a path relative to --output_dir is something a build writes (and --overwrite may delete)."""
    import re  # pylint: disable=import-outside-toplevel
    return bool(re.fullmatch(_OWN_OUTPUT, name, flags=re.DOTALL))


def prepare_output_dir(output_dir: str, overwrite: bool) -> None:
    """Refuses a non-empty folder without --overwrite, saying whether it holds a complete dataset or an
    interrupted run; with --overwrite, deletes what earlier builds wrote (shards of any shard count,
    manifest, marker, temporary runs) and nothing else. Then checks the folder can be written."""
    from transforms import fileio  # pylint: disable=import-outside-toplevel
    try:
        existing = fileio.list_dir(output_dir)
    except Exception as e:  # unreachable bucket, permission denied
        raise FlagError(f"--output_dir={output_dir} cannot be listed: {e}") from e
    if not fileio.is_remote(output_dir) and os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise FlagError(f"--output_dir={output_dir} is a file, not a folder")
    prefix = output_dir.rstrip("/") + "/"
    names = [p[len(prefix):] if p.startswith(prefix) else p for p in existing]
    if existing and not overwrite:
        if any(n.rsplit("/", 1)[-1] == "_SUCCESS" for n in names):
            state = "it holds a complete earlier dataset"
        elif any(_is_own_output(n) for n in names):
            state = ("it holds an incomplete earlier run (no manifest.json/_SUCCESS: the run was interrupted "
                     "or failed)")
        else:
            state = "it holds other files"
        raise FlagError(f"--output_dir={output_dir} is not empty ({len(existing)} files, e.g. {existing[0]}): "
                        f"{state}; pass --overwrite to replace it")
    if existing:
        own = [p for p, n in zip(existing, names) if _is_own_output(n)]
        kept = len(existing) - len(own)
        if kept:
            logging.warning("--output_dir=%s: --overwrite keeps %d file(s) a build did not write", output_dir, kept)
        # The marker goes first: a reader must never see _SUCCESS beside a half-deleted dataset.
        own.sort(key=lambda p: (not p.endswith("_SUCCESS"), not p.endswith("manifest.json"), p))
        try:
            fileio.delete(own)
        except Exception as e:
            raise FlagError(f"--output_dir={output_dir}: cannot delete the earlier output: {e}") from e
    probe = fileio.join(output_dir, ".bertbeam_write_test")
    try:
        fileio.makedirs(output_dir)
        fileio.write_atomic(probe, b"ok")
        fileio.delete([probe])
    except Exception as e:
        raise FlagError(f"--output_dir={output_dir} cannot be written: {e}") from e


def text_bytes(inputs) -> int:
    """The corpus's size as text: gzip sizes are compressed, and text compresses about 3x, so they count 3x."""
    return sum(f.size * (3 if f.is_gzip else 1) for f in inputs)


AUTO_SPLIT_RANGES = 64  # --input_split_mb=0: aim for this many ranges ...
AUTO_SPLIT_MIN_MB, AUTO_SPLIT_MAX_MB = 1.0, 64.0  # ... of 1 to 64 MB each


def choose_split_bytes(input_split_mb: float, inputs) -> int:
    """Range size in bytes: the flag's, or (0) one that depends on the corpus size only -- never on the runner or
    worker count, since ranges decide which documents share a bucket and so the output bytes. Ranges of at
    least 1 MB keep buckets (1 MB of text) whole; at most 64 MB keeps a range a few minutes of one worker."""
    if input_split_mb > 0:
        return int(input_split_mb * (1 << 20))
    total_mb = text_bytes(inputs) / (1 << 20)
    mb = min(AUTO_SPLIT_MAX_MB, max(AUTO_SPLIT_MIN_MB, total_mb / AUTO_SPLIT_RANGES))
    return int(mb * (1 << 20))


def estimated_output_bytes(args, inputs) -> float:
    """TFRecord bytes a build will write, roughly (to choose and check shard sizes, never the output)."""
    return text_bytes(inputs) * args.dupe_factor * OUTPUT_BYTES_PER_INPUT_BYTE


def choose_num_shards(args, inputs) -> int:
    if args.num_shards:
        return args.num_shards
    return max(1, int(math.ceil(estimated_output_bytes(args, inputs) / (args.target_shard_mb * (1 << 20)))))


# A shard is ordered in one worker's memory on the runner path (about 1.3x its size at the peak, launch.py).
MAX_SHARD_MB_RUNNER_SHUFFLE = 1024


def shard_size_warning(args, inputs, num_shards: int) -> Optional[str]:
    """With --shuffle=runner a shard is held and sorted in one worker's memory: warn when the estimated shard
    size exceeds MAX_SHARD_MB_RUNNER_SHUFFLE (raise --num_shards or lower --target_shard_mb)."""
    per_shard_mb = estimated_output_bytes(args, inputs) / max(1, num_shards) / (1 << 20)
    if per_shard_mb <= MAX_SHARD_MB_RUNNER_SHUFFLE:
        return None
    return (f"--num_shards={num_shards}: about {per_shard_mb:.0f} MB per shard, and with --shuffle=runner a "
            f"shard is sorted in one worker's memory; use more shards (or --num_shards=0 with --target_shard_mb "
            f"<= 256)")


def make_plan(args, num_shards: int):
    from transforms.beam_build import BuildPlan  # pylint: disable=import-outside-toplevel
    from transforms.bucket_builder import BuildConfig  # pylint: disable=import-outside-toplevel
    from transforms.tokenizer_factory import TokenizerSpec  # pylint: disable=import-outside-toplevel
    cfg = BuildConfig(max_seq_length=args.max_seq_length, max_predictions_per_seq=args.max_predictions_per_seq,
                      masked_lm_prob=args.masked_lm_prob, short_seq_prob=args.short_seq_prob,
                      dupe_factor=args.dupe_factor, random_seed=args.random_seed,
                      do_whole_word_mask=bool(args.do_whole_word_mask), max_ngram_size=args.max_ngram_size,
                      favor_shorter_ngram=bool(args.favor_shorter_ngram), pairing=args.pairing,
                      masking=args.masking, num_shards=num_shards, sop_single_sentence=args.sop_single_sentence,
                      write_document_ids=bool(args.write_document_ids if args.write_document_ids is not None
                                              else args.id_field),
                      split_long_sentences=args.input_format != "bert")
    tok = TokenizerSpec(vocab_file=args.vocab_file, spm_model_file=args.spm_model_file,
                        do_lower_case=bool(args.do_lower_case), strip_accents=args.strip_accents)
    return BuildPlan(cfg=cfg, tokenizer=tok, output_dir=args.output_dir.rstrip("/"), input_format=args.input_format,
                     text_field=args.text_field, id_field=args.id_field, lang=args.lang,
                     bucket_docs=args.random_next_bucket_size, bucket_bytes=int(args.bucket_max_mb * (1 << 20)),
                     compression=None if args.compression == "none" else args.compression,
                     max_line_bytes=args.max_line_bytes or None)


def manifest_base(args, plan, vocab, runner: str, argv: Sequence[str]) -> Dict[str, Any]:
    from transforms.bucket_builder import feature_spec  # pylint: disable=import-outside-toplevel
    cfg = plan.cfg
    return {
        "max_seq_length": cfg.max_seq_length, "max_predictions_per_seq": cfg.max_predictions_per_seq,
        "dupe_factor": cfg.dupe_factor, "short_seq_prob": cfg.short_seq_prob, "random_seed": cfg.random_seed,
        "masked_lm_prob": cfg.masked_lm_prob, "do_whole_word_mask": cfg.do_whole_word_mask,
        "do_lower_case": plan.tokenizer.do_lower_case, "strip_accents": plan.tokenizer.strip_accents,
        "pairing": cfg.pairing, "masking": cfg.masking, "max_ngram_size": cfg.max_ngram_size,
        "favor_shorter_ngram": cfg.favor_shorter_ngram, "input_format": plan.input_format,
        "sop_single_sentence": cfg.sop_single_sentence, "write_document_ids": cfg.write_document_ids,
        "lang": plan.lang, "text_field": plan.text_field, "id_field": plan.id_field,
        "random_next_bucket_size": plan.bucket_docs, "bucket_max_bytes": plan.bucket_bytes,
        "vocab": {"path": vocab.path, "sha256": vocab.sha256, "size": vocab.size, "kind": vocab.kind,
                  "special_ids": vocab.special_ids()},
        "compression": plan.compression, "num_shards": cfg.num_shards,
        "features": feature_spec(cfg), "input_files": args.input_file,
        "bertbeam_version": __version__, "runner": runner, "command": list(argv),
    }


def local_runner(runner_name: str):
    """The runner object for names Beam does not resolve as wanted: the FnApiRunner for DirectRunner (Beam's
    DirectRunner would first try to download the Prism binary, which fails without internet; FnApiRunner
    honours --direct_running_mode and --direct_num_workers itself) and Beam's DaskRunner for `DaskRunner`
    (not among Beam's short names). Other runners are left to Beam."""
    if runner_name in ("DirectRunner", "direct"):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # pylint: disable=import-outside-toplevel
        return FnApiRunner()
    if is_dask_runner(runner_name):
        try:
            from apache_beam.runners.dask.dask_runner import DaskRunner  # pylint: disable=import-outside-toplevel
        except ImportError as e:
            raise FlagError(f"--runner={runner_name} needs dask[distributed]: pip install 'bertbeam[dask]' ({e})") from e
        return DaskRunner()
    return None


def dask_beam_args(beam_args: List[str]) -> List[str]:
    """Beam's DaskRunner puts up to 128 Create elements in one Dask partition, and a partition is one task:
    give every range its own partition unless the user chose (--dask_npartitions/--dask_partition_size)."""
    if any(a.startswith(("--dask_npartitions", "--dask_partition_size")) for a in beam_args):
        return beam_args
    return list(beam_args) + ["--dask_partition_size=1"]


def per_length_args(args: argparse.Namespace) -> List[argparse.Namespace]:
    """One namespace per sequence length with scalar max_seq_length/max_predictions_per_seq/dupe_factor."""
    lengths = list(args.max_seq_length)
    n = len(lengths)
    if n == 0:
        raise FlagError("--max_seq_length: give at least one length")
    if len(set(lengths)) != n:
        raise FlagError(f"--max_seq_length={','.join(map(str, lengths))}: lengths must be distinct")
    columns = {}
    for flag in ("max_predictions_per_seq", "dupe_factor"):
        values = list(getattr(args, flag))
        if len(values) == 1:
            values = values * n
        if len(values) != n:
            raise FlagError(f"--{flag}={','.join(map(str, getattr(args, flag)))}: give one value or one per "
                            f"--max_seq_length ({n})")
        columns[flag] = values
    out = []
    for i, length in enumerate(lengths):
        one = argparse.Namespace(**vars(args))
        one.max_seq_length = length
        one.max_predictions_per_seq = columns["max_predictions_per_seq"][i]
        one.dupe_factor = columns["dupe_factor"][i]
        if n > 1:
            one.output_dir = args.output_dir.rstrip("/") + f"/seq{length}"
        out.append(one)
    return out


def run_all(argv: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """Builds the dataset(s); returns one manifest per sequence length. Raises FlagError (or VocabError,
    InputError) for bad flags or inputs before any work starts."""
    # Where start-up goes, printed under the time table ("before run_all": the interpreter and `main`, or
    # whatever a longer-lived caller did earlier).
    marks = [("before run_all", time.process_time())]
    from pipeline import runtime_env  # pylint: disable=import-outside-toplevel
    runtime_env.limit_thread_pools()  # before numpy/Beam load; worker subprocesses inherit it
    runtime_env.tune_malloc()  # glibc heap thresholds (no-op elsewhere); subprocesses inherit the variables
    import gc  # pylint: disable=import-outside-toplevel
    gc.disable()  # no full collections while Beam's ~100,000 module objects load
    try:
        runtime_env.install_log_filters()
        import apache_beam as beam  # pylint: disable=import-outside-toplevel
        from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, SetupOptions, StandardOptions  # pylint: disable=import-outside-toplevel
        from transforms import corpus_reader, fileio  # pylint: disable=import-outside-toplevel
        from pipeline import beam_fixes, local_workers  # pylint: disable=import-outside-toplevel
        from transforms.beam_build import BuildPretrainingData, preload_tokenizer  # pylint: disable=import-outside-toplevel
        from transforms.tokenizer_factory import load_tokenizer  # pylint: disable=import-outside-toplevel
        from pipeline.manifest import read_manifest  # pylint: disable=import-outside-toplevel
    finally:  # a failed import must not leave the collector off for the rest of the process
        gc.enable()
    marks.append(("imports", time.process_time()))

    argv = list(sys.argv[1:] if argv is None else argv)
    started = time.time()
    args, beam_args = parse_args(argv)
    given = PipelineOptions(beam_args)
    runner_name = given.view_as(StandardOptions).runner or "DirectRunner"
    runner = local_runner(runner_name)  # for DaskRunner this also registers Beam's --dask_* options
    # An argument neither this command nor any registered PipelineOptions knows (a misspelled flag) is an
    # error, not Beam's "Discarding unparseable args" warning and a build with the default value.
    unknown = flaglib.beam_unknown_args_message(beam_args, build_parser())
    if unknown:
        raise FlagError(unknown)
    # Before an FnApiRunner of this process (the DirectRunner, the embedded job server) opens its data plane:
    # Beam's time-based flush loses records under load (docs/portable_runner_record_loss.md).
    beam_fixes.flush_data_plane_by_size_only()
    all_options = given.get_all_options(drop_default=True)
    check_remote_paths(args, runner_name)
    check_remote_support(args, runner_name, flaglib.parse_bool(all_options.get("dry_run", False), "dry_run"))
    resolve_vocabulary_flags(args)
    each = per_length_args(args)
    for one in each:
        for warning in validate_args(one):
            logging.warning("%s", warning)
    shuffle = resolve_shuffle(args.shuffle, runner_name, all_options, args.output_dir)
    shuffle_warning = in_memory_shuffle_warning(shuffle, runner_name, all_options)
    if shuffle_warning:
        logging.warning("%s", shuffle_warning)
    # Content checks on the launcher only where they are cheap: a local runner and a modest file count.
    local = is_local_runner(runner_name)
    inputs = discover_inputs(args.input_file, sniff=local)
    sniff_here = sniffs_on_launcher(local, len(inputs))
    split_bytes = choose_split_bytes(args.input_split_mb, inputs)
    gzip_warning = gzip_split_warning(inputs, split_bytes)
    if gzip_warning:
        logging.warning("%s", gzip_warning)
    plans = [make_plan(one, choose_num_shards(one, inputs)) for one in each]
    if shuffle == "runner":
        if args.target_shard_mb > MAX_SHARD_MB_RUNNER_SHUFFLE:
            raise FlagError(f"--target_shard_mb={args.target_shard_mb:g}: with --shuffle=runner a shard is sorted "
                            f"in one worker's memory; use at most {MAX_SHARD_MB_RUNNER_SHUFFLE}")
        for one, plan in zip(each, plans):
            warning = shard_size_warning(one, inputs, plan.cfg.num_shards)
            if warning:
                logging.warning("%s", warning)
    marks.append(("flags, vocabulary and inputs", time.process_time()))
    # Load the tokenizer once here: a bad vocabulary fails now with its file and line, not in a worker.
    tokenizer = load_tokenizer(plans[0].tokenizer)
    marks.append(("tokenizer", time.process_time()))
    prepare_output_dir(args.output_dir.rstrip("/"), bool(args.overwrite))
    for plan in plans:
        fileio.makedirs(plan.output_dir)

    if is_dask_runner(runner_name):
        beam_args = dask_beam_args(beam_args)
    options = PipelineOptions(beam_args)
    options.view_as(SetupOptions).save_main_session = False
    bases = [manifest_base(one, plan, tokenizer.vocab, runner_name, argv) for one, plan in zip(each, plans)]
    bases = [dict(base, shuffle=shuffle, input_split_bytes=split_bytes) for base in bases]
    forked_workers = (runner is not None and not is_dask_runner(runner_name)
                      and options.view_as(DirectOptions).direct_running_mode == "multi_processing")
    if forked_workers:
        runner = local_workers.multi_processing_runner(options)
        preload_tokenizer(plans[0].tokenizer, tokenizer)  # what every forked worker then finds loaded
    p = beam.Pipeline(runner=runner, options=options)
    opener = None if sniff_here else fileio.open_read
    ranges = corpus_reader.split_ranges(inputs, split_bytes)
    if len(ranges) <= INLINE_RANGES_MAX:
        # One element per range (Beam's DaskRunner makes each its own partition, i.e. its own task).
        ranges = p | "CreateRanges" >> beam.Create(ranges)
        if opener is not None:
            ranges = ranges | "CheckInputs" >> beam.FlatMap(corpus_reader.checked_range, opener)
    else:
        # Thousands of inputs travel through one file, not the job graph (Dataflow caps a graph's size).
        list_path = fileio.join(plans[0].tmp_dir, "inputs.jsonl")
        fileio.write_atomic(list_path, corpus_reader.encode_input_list(inputs))
        ranges = (p
                  | "InputList" >> beam.Create([list_path])
                  | "ReadInputList" >> beam.FlatMap(corpus_reader.read_input_list, fileio.open_read)
                  | "SplitRanges" >> beam.FlatMap(corpus_reader.ranges_for_file, split_bytes, opener))
    watch = _local_progress(args, runner is not None, inputs, started, sum(plan.cfg.num_shards for plan in plans))
    dask = _dask_watch(runner_name, all_options, watch)
    _ = (ranges
         | "BuildPretrainingData" >> BuildPretrainingData(plans, bases, started, shuffle,
                                                          dask.topic if dask is not None and watch else None))
    runtime_env.freeze_startup_objects()
    marks.append(("job graph", time.process_time()))
    if watch is not None:
        watch.startup_parts = marks[:1] + [(name, t - prev) for (name, t), (_, prev) in zip(marks[1:], marks)]
    # The fork server starts before any thread (the progress line's, Beam's): a fork copies only the caller.
    # The time table comes after it has closed: its workers' CPU then counts among this process's children.
    try:
        with local_workers.worker_processes() if forked_workers else contextlib.nullcontext():
            with watch or contextlib.nullcontext(), dask or contextlib.nullcontext():
                result = p.run()
                if dask is not None:
                    dask.on_stall = result.cancel  # the wait below then raises or returns, the job unfinished
                try:
                    try:
                        result.wait_until_finish()
                    except BaseException:
                        if dask is None or dask.stalled is None:
                            raise
                    if dask is not None and dask.stalled is not None:
                        result.cancel()
                        raise BuildFailed(dask.stalled)
                finally:
                    client = getattr(result, "client", None)  # Beam's DaskRunner leaves its Dask client open
                    if client is not None and hasattr(client, "close"):
                        client.close()
    except BaseException:
        # Only for a job that ends with this process (the local runner, a Dask cluster's tasks released with
        # our client, the embedded job server): a Dataflow job may go on after Ctrl-C here and still needs them.
        if runner is not None or all_options.get("job_endpoint") == "embed":
            _remove_temporary_files(plans)
        raise
    if watch is not None:
        print(watch.finish(dask.worker_cpu_s if dask is not None else 0.0), file=sys.stderr, flush=True)
    LAST_RUN_COUNTERS.clear()
    LAST_RUN_COUNTERS.update(_counters(result))
    return [read_manifest(plan.output_dir) for plan in plans]


def _remove_temporary_files(plans) -> None:
    """After a failed or interrupted job: the run files and temporary shards it leaves (what the manifest step
    would have removed), so that only finished shards without a manifest remain (a rerun needs --overwrite).
    A failure here is logged, never raised over the job's own error."""
    from transforms.beam_build import remove_temporary_files  # pylint: disable=import-outside-toplevel
    for plan in plans:
        try:
            remove_temporary_files(plan)
        except Exception as e:  # pylint: disable=broad-except
            logging.warning("could not remove the temporary files under %s: %s", plan.output_dir, e)


def _local_progress(args, local: bool, inputs, started: float, num_shards: int):
    """Progress lines and the closing time table for runs on a runner object built here (local_runner: the
    DirectRunner, a Dask cluster); Dataflow shows the Beam counters."""
    from pipeline import progress  # pylint: disable=import-outside-toplevel
    if args.quiet or progress.quiet_from_env() or not local:
        return None
    import tempfile  # pylint: disable=import-outside-toplevel
    return progress.BuildProgress(sum(f.size for f in inputs), tempfile.mkdtemp(prefix="bertbeam-progress-"),
                                  started=started, num_shards=num_shards)


def _dask_watch(runner_name: str, options: Dict[str, Any], watch):
    """For Beam's DaskRunner on a cluster given by --dask_client_address: a DaskWatch that takes the workers'
    progress records to `watch` (the BuildProgress, if any), counts their CPU, and stops a stalled cluster's
    build with a message (always, also with --quiet). None otherwise (Beam then starts a cluster of its own)."""
    address = options.get("address")  # Beam's DaskOptions store --dask_client_address as `address`
    if not is_dask_runner(runner_name) or not address:
        return None
    from pipeline import dask_watch  # pylint: disable=import-outside-toplevel
    try:
        stall_s = float(os.environ.get(dask_watch.ENV_STALL_S, dask_watch.DEFAULT_STALL_S))
    except ValueError as e:
        raise FlagError(f"{dask_watch.ENV_STALL_S}={os.environ[dask_watch.ENV_STALL_S]!r}: not a number") from e
    return dask_watch.DaskWatch(address, dask_watch.new_topic(), watch.add_records if watch is not None else None,
                                stall_after_s=stall_s)


# Beam counters of the last run_all in this process (progress figures; the manifest's counts come
# from the data itself). Tests use them to show, e.g., that a multi-length build reads documents once.
LAST_RUN_COUNTERS: Dict[str, int] = {}


def _counters(result) -> Dict[str, int]:
    from apache_beam.metrics.metric import MetricsFilter  # pylint: disable=import-outside-toplevel
    try:
        counters = result.metrics().query(MetricsFilter().with_namespace("bertbeam"))["counters"]
    except Exception:  # some runners do not report metrics; progress counters are optional
        return {}
    totals: Dict[str, int] = {}
    for c in counters:
        totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + int(c.committed or c.attempted or 0)
    return totals


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Builds the dataset and returns its manifest (the first one when several lengths are built)."""
    return run_all(argv)[0]


def summarize(manifest: Dict[str, Any], output_dir: str) -> str:
    from pipeline.manifest import token_share_line  # pylint: disable=import-outside-toplevel
    train = manifest["counts"]["train"]
    docs = manifest["documents"]
    dropped = ", ".join(f"{k}={v}" for k, v in docs["dropped"].items()) or "none"
    return (f"wrote {train['num_instances']} instances from {train['num_documents']} documents "
            f"into {len(manifest['shards'])} shard(s) in {output_dir}\n"
            f"manifest: {output_dir.rstrip('/')}/manifest.json\n"
            f"documents read {docs['read']}, used {docs['used']}, dropped: {dropped}; "
            f"{token_share_line(manifest)}; time {manifest['time_taken_min']} min"
            + _problems(manifest))


def _problems(manifest: Dict[str, Any]) -> str:
    """Damaged inputs and failed count reconciliation, so they are seen, not only written down."""
    notes = []
    damaged = manifest.get("input", {}).get("damaged_files")
    if damaged:
        notes.append(f"WARNING: damaged input files (every document with text past the last member that passed "
                     f"its CRC check was dropped): {damaged}")
    reconciliation = manifest.get("reconciliation", {})
    from pipeline.manifest import loss_warning  # pylint: disable=import-outside-toplevel
    unbalanced = [p for p in reconciliation.get("problems", []) if p != loss_warning(manifest)]
    if unbalanced:
        notes.append(f"WARNING: counts do not reconcile: {unbalanced}")
    return "".join("\n" + n for n in notes)


def _warn_lost_tokens(manifest: Dict[str, Any]) -> None:
    """More than a quarter of the text never reaching an instance is said on stderr, not only written down."""
    from pipeline.manifest import loss_warning  # pylint: disable=import-outside-toplevel
    warning = loss_warning(manifest)
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from pipeline import runtime_env  # pylint: disable=import-outside-toplevel
    runtime_env.limit_thread_pools()  # before anything loads numpy or Beam (run_all sets them again, harmlessly)
    runtime_env.install_log_filters()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from transforms.corpus_reader import InputError  # pylint: disable=import-outside-toplevel
    from vocab.vocab_file import VocabError  # pylint: disable=import-outside-toplevel
    try:
        manifests = run_all(argv)
    except (FlagError, VocabError, InputError) as e:
        print(f"bertbeam build: error: {e}", file=sys.stderr)
        return 2
    except BuildFailed as e:
        print(f"bertbeam build: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bertbeam build: interrupted; temporary files removed, the output has no manifest "
              "(rerun with --overwrite)", file=sys.stderr)
        return 130
    except Exception as e:  # the runner's own failure: its traceback above, then what it means for the output
        import traceback  # pylint: disable=import-outside-toplevel
        traceback.print_exc()
        first_line = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"bertbeam build: error: the Beam job failed ({type(e).__name__}: {first_line}); temporary files "
              f"removed, the output has no manifest (rerun with --overwrite)", file=sys.stderr)
        return 1
    args, _ = parse_args(list(sys.argv[1:] if argv is None else argv))
    for one, manifest in zip(per_length_args(args), manifests):
        print(summarize(manifest, one.output_dir))
        _warn_lost_tokens(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
