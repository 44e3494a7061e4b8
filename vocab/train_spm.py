"""SentencePiece (unigram, BPE, char, word) training in ALBERT format: <pad> 0, <unk> 1, [CLS] [SEP] [MASK] 2-4."""
import collections
import logging
import os
import unicodedata
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

from transforms.presplit import presplit
from vocab.vocab_file import VocabError

ALBERT_USER_SYMBOLS = ("[CLS]", "[SEP]", "[MASK]")
MODEL_TYPES = ("unigram", "bpe", "char", "word")
# A vocabulary may fall short of --vocab_size by this share before it counts as "smaller than asked".
SIZE_TOLERANCE = 0.01
MAX_SENTENCE_BYTES = 1 << 16
MAX_PIECE_CHARS = 16  # SentencePiece's max_sentencepiece_length default
SEED_PIECES = 1_000_000  # SentencePiece's seed_sentencepiece_size default
# Characters of distinct units whose substrings are enumerated for seeds (most frequent units first):
# bounds time and memory when units are long (a pre-split without the tsheg leaves whole clauses;
# Kangyur vol. 33, 1.1 M characters, takes about a minute). Syllables never come near it.
SEED_UNIT_CHARS = 4_000_000

_log = logging.getLogger(__name__)


def normalize(text: str, do_lower_case: bool, do_strip_accents: bool) -> str:
    """Casing and accent handling applied to text before SentencePiece training and encoding
    (accent stripping as BERT does it: NFD, then drop combining marks; "på" -> "pa", "ø" stays)."""
    if do_lower_case:
        text = text.lower()
    if do_strip_accents:
        text = "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")
    return text


def split_symbols(value: Union[str, Sequence[str], None]) -> tuple:
    """spm_train's comma-separated symbol list ("[CLS],[SEP]") as a tuple; empty items dropped."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(s for s in items if s)


def unigram_seed_pieces(units: "collections.Counter[str]", max_piece_chars: int = MAX_PIECE_CHARS,
                        limit: int = SEED_PIECES, max_unit_chars: int = SEED_UNIT_CHARS) -> Dict[str, int]:
    """Seed pieces for the unigram trainer: every substring (2..max_piece_chars characters) of a
    whitespace-delimited unit that occurs at least twice, scored freq * length as SentencePiece does.

    Why not SentencePiece's own seeds: the PyPI build (0.2.x, libsais suffix array over UTF-8 bytes)
    finds 95 candidates in Tibetan vol. 33 pre-split at syllables and 1,627 in the same text mapped
    one-to-one onto ASCII letters -- its byte-level repeats end inside the shared 3-byte UTF-8 prefixes of
    Tibetan letters, so almost no whole-character substring is ever proposed and unigram stops at ~100
    pieces. Units are NFKC-normalised (as the model's nmt_nfkc normaliser will see them) and get the "▁"
    that starts every word.
    """
    counts: "collections.Counter[str]" = collections.Counter()
    budget = max_unit_chars
    for unit, n in sorted(units.items(), key=lambda kv: (-kv[1], kv[0])):
        budget -= len(unit)
        if budget < 0:
            _log.info("unigram seeds: enumerated the most frequent units up to %d characters", max_unit_chars)
            break
        w = "\u2581" + unicodedata.normalize("NFKC", unit)
        size = len(w)
        for i in range(size):
            for j in range(i + 2, min(size, i + max_piece_chars) + 1):
                counts[w[i:j]] += n
    scored = [(n * len(p), p) for p, n in counts.items() if n >= 2]
    scored.sort(key=lambda x: (-x[0], x[1]))
    return {p: s for s, p in scored[:limit]}


class SmallerVocabError(VocabError):
    """The trainer could not reach --vocab_size; carries the size it reached."""

    def __init__(self, message: str, reached: int):
        super().__init__(message)
        self.reached = reached


def train_sentencepiece(sentences: Union[Iterable[str], Callable[[], Iterable[str]]], out_dir: str,
                        vocab_size: int, model_type: str = "unigram", do_lower_case: bool = True,
                        strip_accents: bool = False, seed: int = 12345, character_coverage: float = 0.9999,
                        prefix: str = "spm", num_threads: int = 0, *, presplit_chars: str = "",
                        control_symbols: Sequence[str] = (), user_defined_symbols: Sequence[str] = (),
                        input_sentence_size: int = 0, shuffle_input_sentence: bool = True,
                        pad_id: int = 0, unk_id: int = 1, bos_id: int = -1, eos_id: int = -1,
                        allow_smaller_vocab: bool = False) -> Dict[str, str]:
    """Trains DIR/PREFIX.model and DIR/PREFIX.vocab; casing is applied to the text before training.

    ALBERT lowercases (and optionally strips accents) before SentencePiece, so the same `normalize`
    must be applied when encoding with this model; the casing sidecar records which. With
    `presplit_chars` every sentence goes through `transforms.presplit.presplit` first (pieces never
    cross a unit), the trainer keeps whitespace runs (so the pre-split is exactly reversible) and
    unigram gets its seed pieces from `unigram_seed_pieces` (without a pre-split, unigram falls back to
    them when SentencePiece's own seeds leave it short). A model more than 1 % smaller than
    `vocab_size` raises SmallerVocabError (and is deleted) unless `allow_smaller_vocab`.
    """
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel
    if model_type not in MODEL_TYPES:
        raise ValueError(f"--sp_model_type must be one of {', '.join(MODEL_TYPES)}, not {model_type!r}")
    os.makedirs(out_dir, exist_ok=True)
    model_prefix = os.path.join(out_dir, prefix)
    if hasattr(spm, "set_random_generator_seed"):
        spm.set_random_generator_seed(seed)  # sentence sampling/shuffling inside the trainer
    control = list(split_symbols(control_symbols))
    user = list(split_symbols(user_defined_symbols))
    # ALBERT's pipeline needs [CLS] [SEP] [MASK]; any the caller did not place become user-defined (as before).
    user = [s for s in ALBERT_USER_SYMBOLS if s not in control and s not in user] + user
    stats = {"sentences": 0, "too_long": 0, "bytes": 0, "too_long_bytes": 0}

    def normalized() -> Iterator[str]:
        source = sentences() if callable(sentences) else sentences
        for s in source:
            s = normalize(s, do_lower_case, strip_accents).strip()
            if not s:
                continue
            s = presplit(s, presplit_chars)
            size = len(s.encode("utf-8"))
            stats["sentences"] += 1
            stats["bytes"] += size
            if size > MAX_SENTENCE_BYTES:
                stats["too_long"] += 1  # SentencePiece skips these; reported below
                stats["too_long_bytes"] += size
            yield s

    extra = {}
    if presplit_chars:
        extra["remove_extra_whitespaces"] = False  # "།  །": the doubled space is what presplit added
    if model_type == "unigram" and not callable(sentences):
        sentences = list(sentences)  # read twice: seed pieces, then training
    unit_stats: List[Optional[tuple]] = [None]

    def train(prefix_path: str, own_seeds: bool) -> int:
        """One trainer run into prefix_path.{model,vocab}; returns the pieces it reached."""
        run_extra = dict(extra)
        seed_file = None
        if own_seeds:
            units: "collections.Counter[str]" = collections.Counter()
            for s in normalized():
                units.update(s.split())
            unit_stats[0] = (len(units), sum(1 for n in units.values() if n >= 2))
            seed_file = prefix_path + ".seeds.tsv"
            with open(seed_file, "w", encoding="utf-8") as f:
                f.write("".join(f"{p}\t{sc}\n" for p, sc in unigram_seed_pieces(units).items()))
            run_extra["seed_sentencepieces_file"] = seed_file
        stats.update({k: 0 for k in stats})
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(normalized()), model_prefix=prefix_path, vocab_size=vocab_size,
                model_type=model_type, pad_id=pad_id, unk_id=unk_id, bos_id=bos_id, eos_id=eos_id,
                pad_piece="<pad>", unk_piece="<unk>", control_symbols=control, user_defined_symbols=user,
                character_coverage=character_coverage, hard_vocab_limit=False,
                input_sentence_size=input_sentence_size, max_sentence_length=MAX_SENTENCE_BYTES,
                shuffle_input_sentence=shuffle_input_sentence, num_threads=num_threads or os.cpu_count() or 1,
                minloglevel=2, **run_extra)
        except RuntimeError as e:
            if stats["sentences"] and stats["too_long"] == stats["sentences"]:  # nothing was short enough
                raise SmallerVocabError(_smaller_message(0, vocab_size, model_type, presplit_chars, None, stats),
                                        0) from e
            raise VocabError(f"SentencePiece training failed: {e}") from e
        finally:
            if seed_file and os.path.exists(seed_file):
                os.remove(seed_file)
        return spm.SentencePieceProcessor(model_file=prefix_path + ".model").get_piece_size()

    files = {"model": model_prefix + ".model", "vocab": model_prefix + ".vocab"}
    own = model_type == "unigram" and bool(presplit_chars)
    reached = train(model_prefix, own)
    short = reached < vocab_size * (1 - SIZE_TOLERANCE)
    if short and model_type == "unigram" and not own and stats["too_long_bytes"] * 2 <= stats["bytes"]:
        # SentencePiece's own seed extraction may have stalled (scripts with shared UTF-8 lead bytes):
        # try bertbeam's seed pieces and keep whichever model is larger.
        _log.info("unigram reached %d of %d pieces with SentencePiece's seed pieces; retrying with bertbeam's",
                  reached, vocab_size)
        retry = model_prefix + ".retry"
        again = train(retry, True)
        if again > reached:
            for ext in ("model", "vocab"):
                os.replace(f"{retry}.{ext}", files[ext])
            reached = again
        else:
            for ext in ("model", "vocab"):
                os.remove(f"{retry}.{ext}")
        short = reached < vocab_size * (1 - SIZE_TOLERANCE)
    if stats["too_long"]:
        _log.warning("%d of %d training sentences (%.1f%% of the text) are longer than %d bytes and were skipped "
                     "by SentencePiece; segment the text into sentences (--lang) or use --input_format bert",
                     stats["too_long"], stats["sentences"], 100 * stats["too_long_bytes"] / stats["bytes"],
                     MAX_SENTENCE_BYTES)
    if short and not allow_smaller_vocab:
        for path in files.values():
            os.remove(path)
        raise SmallerVocabError(_smaller_message(reached, vocab_size, model_type, presplit_chars, unit_stats[0],
                                                 stats), reached)
    return files


def _smaller_message(reached: int, asked: int, model_type: str, presplit_chars: str,
                     unit_stats: Optional[tuple], stats: Dict[str, int]) -> str:
    head = (f"SentencePiece {model_type} reached only {reached:,} pieces of the {asked:,} asked for "
            f"(more than {SIZE_TOLERANCE:.0%} short); nothing was written.")
    if stats["bytes"] and stats["too_long_bytes"] * 2 > stats["bytes"]:
        why = (f" Reason: {stats['too_long']:,} of {stats['sentences']:,} training 'sentences', "
               f"{stats['too_long_bytes'] / stats['bytes']:.1%} of the text, are longer than "
               f"{MAX_SENTENCE_BYTES:,} bytes and were skipped (whole documents?).")
        todo = " Split the text into sentences: pass --lang (e.g. --lang bo), or --input_format bert."
    elif model_type == "unigram" and unit_stats and presplit_chars:
        why = (f" Reason: pieces never cross the pre-split (--presplit_chars), and unigram keeps about one piece "
               f"per distinct unit -- this text has {unit_stats[0]:,} distinct units, {unit_stats[1]:,} of them "
               f"occurring twice or more; shorter pieces lose out to whole units in EM.")
        todo = (" To get a larger vocabulary: --sp_model_type bpe (keeps the sub-unit merges), more text (more "
                "distinct syllables), or --presplit_chars without ་ ༌ so pieces may span syllables.")
    elif model_type == "unigram":
        why = (" Reason: the text has too few distinct pieces for unigram (tried with SentencePiece's seed pieces "
               "and with bertbeam's" + (f": {unit_stats[0]:,} distinct words" if unit_stats else "") + ").")
        todo = " Use more text, a smaller --vocab_size or --sp_model_type bpe."
    elif model_type == "bpe":
        why = " Reason: BPE ran out of symbol pairs that occur at least twice."
        todo = " Use more text or a smaller --vocab_size."
    elif model_type == "char":
        why = " Reason: a char model has one piece per distinct character (after --character_coverage)."
        todo = " Ask for that size, or use unigram/bpe."
    else:
        why = " Reason: the text has too few distinct pieces for this model type."
        todo = " Use more text, a smaller --vocab_size" + (" or --sp_model_type bpe." if model_type != "bpe" else ".")
    return head + why + todo + f" --allow_smaller_vocab writes the {reached:,}-piece model anyway."
