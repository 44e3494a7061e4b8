"""WordPiece tokenizer benchmark: MB/s and line-level agreement with the google-research/bert oracle.

Usage:
  .venv/bin/python bench/bench_tokenize.py [FILE ...] [--vocab V] [--lower/--cased] [--keep_accents]
      MB/s of each candidate on FILE (default: ../shared corpora no_ud_dev.txt and en_books_dev.txt),
      as ratios vs the pure-Python oracle (tests/reference_tokenization.py) timed in the same run, and
      the share of lines whose ids equal the oracle's exactly.
  .venv/bin/python bench/bench_tokenize.py --table       agreement of bertbeam (and the raw libraries)
      with the oracle on every shared text file for the five vocab/casing settings of the brief.
  .venv/bin/python bench/bench_tokenize.py --scan        every Unicode code point (in "aCb", "C" and
      "ΑΣCΒ x" contexts) through each library's BERT normalisation + pre-tokenisation vs the oracle's
      BasicTokenizer; prints which characters disagree (by category and range).
  .venv/bin/python bench/bench_tokenize.py --spm MODEL [--cased] [FILE ...]   SentencePieceTokenizer
      (batched) vs sentencepiece's encode line by line.
Candidates: oracle (pure Python), tf-text FastBertTokenizer, HF tokenizers (BertNormalizer +
BertPreTokenizer + WordPiece, encode_batch on one thread), bertbeam (transforms.wordpiece with its chunk
cache emptied before each pass, "cold", or kept, "warm"; "cold, Python WordPiece": new words through the
Python greedy match instead of tokenizers' WordPiece model) and bertbeam-exact (its uncached per-word path).
"""
import argparse
import collections
import os
import sys
import time
import unicodedata
from pathlib import Path
from typing import Callable, Dict, List, Sequence

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # HF tokenizers on one core, like everything else here
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from reference_tokenization import REFERENCE_MAX_INPUT_CHARS_PER_WORD, ReferenceTokenizer  # noqa: E402
from transforms.wordpiece import WordPieceTokenizer  # noqa: E402

BATCH = 4096
DEFAULT_FILES = [DATA / "corpora" / "no_ud_dev.txt", DATA / "corpora" / "en_books_dev.txt"]
SETTINGS = [  # (label, vocab dir, do_lower_case, strip_accents)
    ("bert_base_uncased", "bert_base_uncased", True, None),
    ("bert_base_cased", "bert_base_cased", False, None),
    ("bert_multilingual_cased", "bert_multilingual_cased", False, None),
    ("norwegian_uncased_50k", "norwegian_uncased_50k", True, None),
    ("norwegian_uncased_50k keep-accents", "norwegian_uncased_50k", True, False),
]


def read_lines(path: Path) -> List[str]:
    """Lines as the pipeline's reader hands them over: decoded, BOM and CR/LF removed."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    return [x[:-1] if x.endswith("\r") else x for x in text.split("\n")]


def text_files() -> List[Path]:
    files = sorted((DATA / "corpora").glob("*.txt")) + sorted((DATA / "text").glob("*.txt"))
    return files + sorted((DATA / "text" / "talk_of_norway").glob("*.txt"))


def _batched(fn: Callable[[Sequence[str]], List[List[int]]]) -> Callable[[Sequence[str]], List[List[int]]]:
    def run(lines):
        out = []
        for i in range(0, len(lines), BATCH):
            out.extend(fn(lines[i:i + BATCH]))
        return out
    return run


def _unpack(flat, splits) -> List[List[int]]:
    flat = flat.tolist()
    return [flat[a:b] for a, b in zip(splits[:-1].tolist(), splits[1:].tolist())]


def candidates(vocab_path: str, lower: bool, strip) -> Dict[str, Callable[[Sequence[str]], List[List[int]]]]:
    """name -> function(lines) -> per-line id lists (construction done here, outside the timing)."""
    strip_eff = lower if strip is None else strip
    tokens = [x.rstrip("\n") for x in open(vocab_path, encoding="utf-8")]
    out: Dict[str, Callable] = {}
    ref = ReferenceTokenizer(tokens, do_lower_case=lower, strip_accents=strip)
    out["oracle"] = lambda lines: [ref.ids(x) for x in lines]

    try:  # tensorflow-text is only a comparison here (the dev extra installs it)
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        import tensorflow_text as tf_text  # pylint: disable=import-outside-toplevel
    except ImportError:
        tf_text = None
    if tf_text is not None and strip_eff == lower:  # tf-text has no "lower case but keep accents" mode
        fbt = tf_text.FastBertTokenizer(vocab=tokens, token_out_type=tf.int32,
                                        lower_case_nfd_strip_accents=lower,
                                        max_bytes_per_word=4 * REFERENCE_MAX_INPUT_CHARS_PER_WORD)

        def tft(lines):
            r = fbt.tokenize(tf.constant(list(lines)))
            return _unpack(r.flat_values.numpy(), r.row_splits.numpy())
        out["tf-text FastBertTokenizer"] = _batched(tft)

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers  # pylint: disable=import-outside-toplevel
    hf = Tokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]",
                                    max_input_chars_per_word=REFERENCE_MAX_INPUT_CHARS_PER_WORD))
    hf.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                               strip_accents=strip_eff, lowercase=lower)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    out["HF tokenizers"] = _batched(lambda lines: [e.ids for e in hf.encode_batch(list(lines),
                                                                                   add_special_tokens=False)])

    mine = WordPieceTokenizer(vocab_path, do_lower_case=lower, strip_accents=strip)
    mine.tokenize_lines(["warm up é"])  # builds the Unicode tables outside the timing
    # The chunk cache fills on the first pass over a file: "cold" empties it before every pass (text never
    # seen), "warm" keeps it (the rate a worker reaches once it has seen a few MB of the language).
    out["bertbeam cold"] = _batched(lambda lines: _unpack(*mine.tokenize_lines(lines)))
    out["bertbeam warm"] = _batched(lambda lines: _unpack(*mine.tokenize_lines(lines)))
    out["bertbeam-exact"] = _batched(lambda lines: _unpack(*mine.tokenize_exact(lines)))
    out["bertbeam cold"].before = mine.clear_cache
    # The same, with new words through the Python greedy match instead of tokenizers' WordPiece model.
    py = WordPieceTokenizer(vocab_path, do_lower_case=lower, strip_accents=strip, use_rust_wordpiece=False)
    py.tokenize_lines(["warm up é"])
    out["bertbeam cold, Python WP"] = _batched(lambda lines: _unpack(*py.tokenize_lines(lines)))
    out["bertbeam cold, Python WP"].before = py.clear_cache
    return out


def speed(files: List[Path], vocab: str, lower: bool, strip) -> None:
    cands = candidates(vocab, lower, strip)
    for path in files:
        lines = read_lines(path)
        mb = sum(len(x.encode("utf-8")) + 1 for x in lines) / 1e6
        print(f"\n{path.name}: {len(lines)} lines, {mb:.2f} MB; vocab {Path(vocab).parent.name}, "
              f"lower={lower} strip_accents={strip}")
        results, rates = {}, {}
        for name, fn in cands.items():
            best = float("inf")
            for _ in range(1 if name == "oracle" else 3):
                if hasattr(fn, "before"):
                    fn.before()
                t = time.perf_counter()
                results[name] = fn(lines)
                best = min(best, time.perf_counter() - t)
            rates[name] = mb / best
        print(f"{'candidate':28s} {'MB/s':>8s} {'x oracle':>9s} {'agree %':>9s} {'lines differ':>12s}")
        for name, rate in rates.items():
            bad = sum(1 for a, b in zip(results[name], results["oracle"]) if a != b)
            print(f"{name:28s} {rate:8.2f} {rate / rates['oracle']:9.1f} "
                  f"{100.0 * (len(lines) - bad) / len(lines):9.3f} {bad:12d}")


def table() -> None:
    files = text_files()
    print(f"{'setting':36s} {'file':34s} {'lines':>7s} | " + " | ".join(
        f"{n:>14s}" for n in ("bertbeam cold", "bertbeam-exact", "tf-text", "HF tokenizers")))
    for label, vdir, lower, strip in SETTINGS:
        cands = candidates(str(DATA / "vocab" / vdir / "vocab.txt"), lower, strip)
        for path in files:
            lines = read_lines(path)
            ref = cands["oracle"](lines)
            cells = []
            for name in ("bertbeam cold", "bertbeam-exact", "tf-text FastBertTokenizer", "HF tokenizers"):
                if name not in cands:
                    cells.append(f"{'n/a':>14s}")
                    continue
                got = cands[name](lines)
                bad = sum(1 for a, b in zip(got, ref) if a != b)
                cells.append(f"{100.0 * (len(lines) - bad) / len(lines):8.3f}% {bad:4d}")
            print(f"{label:36s} {path.name:34s} {len(lines):7d} | " + " | ".join(cells), flush=True)


def _ranges(cps: List[int]) -> List[str]:
    out: List[List[int]] = []
    for c in cps:
        if out and c == out[-1][1] + 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return [f"U+{a:04X}" + (f"-U+{b:04X}" if b > a else "") + f" {unicodedata.category(chr(a))} "
            f"{unicodedata.name(chr(a), '?')[:34]}" for a, b in out]


def scan(limit: int) -> None:
    """Word lists of every code point in context: each library's BERT pre-processing vs the oracle."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_text as tf_text  # pylint: disable=import-outside-toplevel
    from tokenizers import normalizers, pre_tokenizers  # pylint: disable=import-outside-toplevel
    from transforms.wordpiece import basic_tokenize  # pylint: disable=import-outside-toplevel

    # A one-token vocabulary makes every word one [UNK] whose offsets give the word's text back.
    words_tf = tf_text.FastWordpieceTokenizer(vocab=["[UNK]", "\u2603", "##\u2603"], token_out_type=tf.string,
                                              max_bytes_per_word=10 ** 6)

    def tf_words(texts: List[str], normalizer) -> List[List[str]]:
        out = []
        for i in range(0, len(texts), 50000):
            chunk = texts[i:i + 50000]
            norm = normalizer.normalize(tf.constant(chunk)).numpy() if normalizer is not None else \
                [x.encode("utf-8") for x in chunk]
            _, st, en = words_tf.tokenize_with_offsets(tf.constant(norm))
            for b, s, e in zip(norm, st.to_list(), en.to_list()):
                out.append([b[x:y].decode("utf-8", "replace") for x, y in zip(s, e)])
        return out

    cps = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF][:limit]
    for mode, lower, strip in (("uncased", True, True), ("cased", False, False), ("lower-keep-accents", True, False)):
        ref = ReferenceTokenizer(["[UNK]"], do_lower_case=lower, strip_accents=strip)
        hn = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=strip,
                                        lowercase=lower)
        hp = pre_tokenizers.BertPreTokenizer()
        for ctx in ("aCb", "C", "ΑΣCΒ x"):
            texts = [ctx.replace("C", chr(cp)) for cp in cps]
            want = [ref.basic_tokenize(s) for s in texts]
            got = {
                "HF BertNormalizer+BertPreTokenizer": [[w for w, _ in hp.pre_tokenize_str(hn.normalize_str(s))]
                                                       for s in texts],
                # What transforms.wordpiece runs (str.split + this split, per chunk).
                "bertbeam exact split": [basic_tokenize(s, lower, strip) for s in texts],
            }
            if lower == strip:
                got["tf-text FastBertNormalizer+FastWordpiece"] = tf_words(
                    texts, tf_text.FastBertNormalizer(lower_case_nfd_strip_accents=lower))
            for name, words in got.items():
                bad = [cps[i] for i in range(len(cps)) if words[i] != want[i]]
                cats = collections.Counter(unicodedata.category(chr(c)) for c in bad)
                print(f"[{mode}] ctx={ctx!r} {name}: {len(bad)} code points differ {dict(cats.most_common())}")
                named = [c for c in bad if unicodedata.category(chr(c)) not in ("Cn", "Co")]
                for line in _ranges(named)[:12]:
                    print(f"      {line}")
                if len(_ranges(named)) > 12:
                    print(f"      ... {len(_ranges(named)) - 12} more ranges")
            sys.stdout.flush()


def spm_speed(files: List[Path], model: str, lower: bool) -> None:
    """SentencePieceTokenizer (batched) vs sentencepiece's encode called line by line, same run."""
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel
    from transforms.sentencepiece_tokenizer import SentencePieceTokenizer  # pylint: disable=import-outside-toplevel
    sp = spm.SentencePieceProcessor(model_file=model)
    tok = SentencePieceTokenizer(model, do_lower_case=lower, require_albert_pieces=False)
    for path in files:
        lines = read_lines(path)
        mb = sum(len(x.encode("utf-8")) + 1 for x in lines) / 1e6
        text = tok.preprocess(lines)
        t = time.perf_counter()
        want = [sp.encode(x) for x in text]
        base = time.perf_counter() - t
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            got = _batched(lambda b: _unpack(*tok.tokenize_lines(b)))(lines)
            best = min(best, time.perf_counter() - t)
        bad = sum(1 for a, b in zip(got, want) if a != b)
        print(f"{path.name} ({mb:.2f} MB) {Path(model).name} lower={lower}: sp.encode per line "
              f"{mb / base:.2f} MB/s; bertbeam SentencePieceTokenizer {mb / best:.2f} MB/s "
              f"({base / best:.1f}x); agree {100.0 * (len(lines) - bad) / len(lines):.3f}%")


def main(argv: List[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", type=Path)
    p.add_argument("--vocab", default=None, help="vocab.txt (default: bert_base_uncased, or norwegian for "
                                                  "no_* files)")
    p.add_argument("--cased", action="store_true", help="do_lower_case=False")
    p.add_argument("--keep_accents", action="store_true", help="lower case but keep accents")
    p.add_argument("--table", action="store_true")
    p.add_argument("--scan", action="store_true")
    p.add_argument("--scan_limit", type=int, default=0x110000)
    p.add_argument("--spm", default=None, help="a SentencePiece .model: time SentencePieceTokenizer instead")
    args = p.parse_args(argv)
    if not SHARED.exists() and not (args.files and args.vocab) and not args.scan:
        sys.exit(f"{SHARED} not found: pass FILE and --vocab")
    if args.scan:
        scan(args.scan_limit)
        return
    if args.table:
        table()
        return
    if args.spm:
        spm_speed(args.files or DEFAULT_FILES, args.spm, not args.cased)
        return
    lower = not args.cased
    strip = False if args.keep_accents else None
    for path in args.files or DEFAULT_FILES:
        vocab = args.vocab or str(DATA / "vocab" / ("norwegian_uncased_50k" if path.name.startswith("no_")
                                                     else "bert_base_uncased") / "vocab.txt")
        speed([path], vocab, lower, strip)


if __name__ == "__main__":
    main(sys.argv[1:])
