"""WordPiece tokenization with exactly google-research/bert's FullTokenizer ids, batched, fast and TensorFlow-free.

How it stays exact and fast:
1. The BasicTokenizer normalisation (drop Cc/Cf/NUL/U+FFFD, whitespace to " ", spaces around CJK
   ideographs, lower case, NFD + drop Mn) is done here on a whole batch at once: numpy look-ups in a
   per-code-point flag table computed from this Python's `unicodedata` (the tables the reference uses)
   plus C-level `str.lower()` and `unicodedata.normalize`. Applied to the whole text rather than per
   whitespace token it gives the same string: none of these steps looks across a space (checked for
   every code point in several contexts against the oracle, see tests/test_wordpiece.py).
2. The normalised lines are split on whitespace with `str.split()` -- the reference's own
   `whitespace_tokenize` -- and each whitespace chunk's ids are computed once and cached: natural text
   repeats its chunks, so almost every chunk is one C-level dict look-up. New chunks are punctuation-split
   by one regex pass; each distinct new word gets its greedy longest-match-first WordPiece ids once (a
   vocabulary look-up, else tokenizers' WordPiece model in Rust, else the exact Python loop) and chunks'
   ids are gathered from the words' with numpy. The ids of a chunk depend on the chunk alone, so the cache
   (bounded; cleared when full; one lock, as a process's threads share the tokenizer) never changes a result.
Earlier versions used tensorflow-text for step 2; importing TensorFlow cost ~2-4 CPU-seconds and ~600 MB
per worker process. Once a worker has seen a few MB of a language this path is about as fast as that one
was; on text never seen (every chunk new) it is 2-3x slower (bench/bench_tokenize.py: cold vs warm).
"""
import functools
import hashlib
import itertools
import os
import re
import sys
import threading
import unicodedata
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from transforms.example_codec import gather_index
from vocab.vocab_file import Vocab, load_vocab

# google-research/bert at eedf5716 (the commit the reference statistics came from): WordpieceTokenizer's
# max_input_chars_per_word defaults to 200 and "control" means categories Cc and Cf only. Copies older
# than that, and HF, use 100 and every C* category.
REFERENCE_MAX_INPUT_CHARS_PER_WORD = 200

_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))

# Chunks (whitespace-separated pieces of normalised text) whose ids are kept, and as many words at most:
# about 400 bytes per chunk with its words (measured), so at most ~80 MB.
CHUNK_CACHE_LIMIT = 200_000
_LINE_BREAK = "\x00"


def _is_punctuation_cp(cp: int, cat: str) -> bool:
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or cat[0] == "P"


def _class_from_cps(cps: Sequence[int]) -> str:
    """A regex character class body (ranges, escaped) for the given sorted code points."""
    parts = []
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        lo, hi = cps[i], cps[j]
        parts.append(re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}")
        i = j + 1
    return "".join(parts)


# Bit flags of the per-code-point table.
_REMOVE, _SPACE, _CJK, _MN, _UNASSIGNED = 1, 2, 4, 8, 16
_PUNCT = 256  # only in the cached table


def _cache_path(name: str) -> Optional[str]:
    """Where a derived Unicode table is kept between processes (None: do not keep it).

    The key holds this interpreter's Unicode version and this file's text, so a table is never reused
    by a different Python or a changed derivation. BERTBEAM_CACHE_DIR="" turns the cache off.
    """
    root = os.environ.get("BERTBEAM_CACHE_DIR")
    if root is None:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                            "bertbeam")
    if not root:
        return None
    try:
        with open(__file__, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
    except OSError:
        return None
    return os.path.join(root, f"{name}-unicode{unicodedata.unidata_version}-{sys.maxunicode:x}-{digest}.npy")


def _disk_cached(name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """compute(), or its result saved by an earlier process (deriving the tables takes ~0.1-0.3 s each;
    every Beam worker process would pay that before its first document)."""
    path = _cache_path(name)
    if path is not None:
        try:
            value = np.load(path, allow_pickle=False)
            if value.shape == (sys.maxunicode + 1,):
                return value
        except (OSError, ValueError):
            pass
    value = compute()
    if path is not None:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                np.save(f, value, allow_pickle=False)
            os.replace(tmp, path)  # atomic: a reader sees the whole table or none
        except OSError:
            pass
    return value


@functools.lru_cache(maxsize=None)
def _tables() -> Tuple[np.ndarray, "re.Pattern[str]"]:
    """A flag per code point from this interpreter's unicodedata, and the exact word-splitting regex."""
    table = _disk_cached("flags", _compute_flags)
    flags = table & 0xFF
    punct = np.flatnonzero(table & _PUNCT).tolist()
    punct_class = _class_from_cps(punct)
    # Splits a normalised line into words exactly as whitespace_tokenize + _run_split_on_punc do.
    words = re.compile(f"[{punct_class}]|[^\\s{punct_class}]+")
    return flags.astype(np.uint8), words


@functools.lru_cache(maxsize=None)
def _chunk_splitter() -> "re.Pattern[str]":
    """The word regex, also matching "\n" (a chunk separator) as a token of its own."""
    return re.compile("\n|" + _tables()[1].pattern)


def _compute_flags() -> np.ndarray:
    flags = np.zeros(sys.maxunicode + 1, np.uint16)
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cat in ("Cn", "Co"):  # most of the code space: neither removed, space, Mn nor punctuation
            if cat == "Cn":
                flags[cp] = _UNASSIGNED  # neither case-maps nor decomposes
            continue
        if cp in (0, 0xFFFD) or (cat in ("Cc", "Cf") and ch not in "\t\n\r"):
            flags[cp] |= _REMOVE
        elif (ch in "\t\r" or cat == "Zs" or ch.isspace()) and ch not in " \n":
            # Zs/\t/\r become " " in _clean_text; other str.split() separators that survive cleaning
            # (U+2028, U+2029) split words in whitespace_tokenize just the same. "\n" separates lines here.
            flags[cp] |= _SPACE
        if cat == "Mn":
            flags[cp] |= _MN
        if cat == "Cs":  # lone surrogates: likewise
            flags[cp] |= _UNASSIGNED
        if _is_punctuation_cp(cp, cat):
            flags[cp] |= _PUNCT
    for lo, hi in _CJK_RANGES:
        flags[lo:hi + 1] |= _CJK
    return flags


_ASCII_TABLE = bytes.maketrans(b"\t\r", b"  ")
_ASCII_REMOVE = bytes(c for c in range(128) if (c < 32 or c == 127) and c not in (9, 10, 13))


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


def _from_codepoints(cps: np.ndarray) -> str:
    return cps.astype(np.uint32, copy=False).tobytes().decode("utf-32-le", "surrogatepass")


_DELETE, _COMPLEX = -1, -2


@functools.lru_cache(maxsize=None)
def _case_map(do_lower_case: bool, strip_accents: bool) -> np.ndarray:
    """The per-code-point case map (see _compute_case_map), computed once per machine."""
    return _disk_cached(f"casemap{int(do_lower_case)}{int(strip_accents)}",
                        lambda: _compute_case_map(do_lower_case, strip_accents))


def _compute_case_map(do_lower_case: bool, strip_accents: bool) -> np.ndarray:
    """Per code point: what lower() then NFD + drop Mn make of it on its own, when that is context-free.

    Entries: the single resulting code point, _DELETE (nothing left), or _COMPLEX (use the str methods):
    results longer than one character, U+03A3 (lower() picks σ or ς from the neighbours), and characters
    whose NFD starts with a non-starter (canonical reordering can then cross into the previous character).
    With no _COMPLEX character in a text, mapping each character gives exactly the whole-text result.
    """
    table = np.arange(sys.maxunicode + 1, dtype=np.int32)
    flags, _ = _tables()
    # Unassigned and private-use code points neither case-map nor decompose (CJK compatibility
    # ideographs do decompose, so the CJK ranges stay in).
    candidates = np.flatnonzero((flags & _UNASSIGNED) == 0)
    for cp in candidates[candidates >= 128].tolist():
        if 0xE000 <= cp <= 0xF8FF or cp >= 0xF0000:
            continue
        ch = chr(cp)
        out = ch.lower() if do_lower_case else ch
        if strip_accents:
            out = unicodedata.normalize("NFD", out)
            if unicodedata.combining(out[0]):
                table[cp] = _COMPLEX
                continue
            out = "".join(c for c in out if not flags[ord(c)] & _MN)
        if out == ch:
            continue
        if cp == 0x3A3 or len(out) > 1:
            table[cp] = _COMPLEX
        else:
            table[cp] = ord(out) if out else _DELETE
    if do_lower_case:
        table[65:91] += 32
    return table


def normalize_text(text: str, do_lower_case: bool, strip_accents: bool) -> str:
    """BasicTokenizer's cleaning, CJK spacing, lower case and accent stripping, on any text at once.

    Line breaks ("\\n") are kept so a batch joined with "\\n" can be split back into its lines.
    Per-character work runs as numpy table look-ups over the code points; the few characters whose
    casing or decomposition depends on their neighbours send the batch through str.lower() and NFD.
    """
    if text.isascii():
        # Bytes translate is far quicker than the table look-up for the common all-ASCII batch.
        text = text.encode("ascii").translate(_ASCII_TABLE, _ASCII_REMOVE).decode("ascii")
        return text.lower() if do_lower_case else text
    flags, _ = _tables()
    cps = _codepoints(text)
    f = flags[cps]
    if (f & (_REMOVE | _SPACE | _CJK)).any():
        keep = (f & _REMOVE) == 0
        cps, f = cps[keep], f[keep]
        cps = np.where(f & _SPACE, np.uint32(32), cps)
        cjk = (f & _CJK) != 0
        if cjk.any():
            counts = np.where(cjk, 3, 1)
            out = np.repeat(cps, counts)
            at = (np.cumsum(counts) - counts)[cjk]
            out[at] = 32
            out[at + 2] = 32
            cps = out
    if not (do_lower_case or strip_accents):
        return _from_codepoints(cps)
    mapped = _case_map(do_lower_case, strip_accents)[cps]
    if not (mapped == _COMPLEX).any():
        return _from_codepoints(mapped[mapped != _DELETE])
    text = _from_codepoints(cps)
    if do_lower_case:
        text = text.lower()
    if strip_accents and not text.isascii():
        cps = _codepoints(unicodedata.normalize("NFD", text))
        mn = (flags[cps] & _MN) != 0
        text = _from_codepoints(cps[~mn]) if mn.any() else _from_codepoints(cps)
    return text


def basic_tokenize(text: str, do_lower_case: bool, strip_accents: bool) -> List[str]:
    """The words google-research/bert's BasicTokenizer gives for `text` (exact; used for the slow path)."""
    return _tables()[1].findall(normalize_text(text, do_lower_case, strip_accents).replace("\n", " "))


def wordpiece_word(word: str, token_to_id: Dict[str, int], unk_id: int, max_chars: int,
                   longest_token: Optional[int] = None, longest_continuation: Optional[int] = None) -> List[int]:
    """Greedy longest-match-first WordPiece ids of one word; [UNK] alone when any part fails to match.

    `longest_token` / `longest_continuation` (the longest vocabulary entry without "##", and the longest
    "##" entry without its "##", in characters) only skip candidate pieces that cannot be in the
    vocabulary; the result is the same with or without them.
    """
    n = len(word)
    if n > max_chars:
        return [unk_id]
    if n == 0:
        return []
    get = token_to_id.get
    found = get(word)
    if found is not None:  # most words are one piece
        return [found]
    first = n if longest_token is None else longest_token
    rest = n if longest_continuation is None else longest_continuation
    end = min(n, first)
    if end == n:
        end -= 1  # the whole word was tried above
    while end > 0:
        found = get(word[:end])
        if found is not None:
            break
        end -= 1
    else:
        return [unk_id]
    ids = [found]
    start = end
    while start < n:
        end = min(n, start + rest)
        while end > start:
            found = get("##" + word[start:end])
            if found is not None:
                break
            end -= 1
        else:
            return [unk_id]
        ids.append(found)
        start = end
    return ids


def _has_surrogate(word: str) -> bool:
    """A lone surrogate cannot cross into Rust (its strings are valid UTF-8): such words stay in Python."""
    return not word.isascii() and any("\ud800" <= ch <= "\udfff" for ch in word)


class _RaggedIds:
    """Rows of ids in flat int64 arrays (row r is ids[at[r]:at[r] + length[r]]), appended to in place: the
    arrays double when full, so adding a few new chunks never copies the whole cache."""

    def __init__(self, first_row: Sequence[int]):
        self._ids = np.zeros(1 << 12, np.int64)
        self._at = np.zeros(1 << 10, np.int64)
        self._len = np.zeros(1 << 10, np.int64)
        self.rows = self._n_ids = 0
        self.append(np.array([len(first_row)], np.int64), np.asarray(first_row, np.int64))

    @staticmethod
    def _room(arr: np.ndarray, needed: int) -> np.ndarray:
        if needed <= len(arr):
            return arr
        grown = np.zeros(max(needed, 2 * len(arr)), arr.dtype)
        grown[:len(arr)] = arr
        return grown

    def append(self, lengths: np.ndarray, ids: np.ndarray) -> None:
        """Adds len(lengths) rows whose ids, one row after another, are `ids`."""
        rows, n_ids = self.rows + len(lengths), self._n_ids + len(ids)
        self._at, self._len = self._room(self._at, rows), self._room(self._len, rows)
        self._ids = self._room(self._ids, n_ids)
        self._at[self.rows:rows] = self._n_ids + np.cumsum(lengths) - lengths
        self._len[self.rows:rows] = lengths
        self._ids[self._n_ids:n_ids] = ids
        self.rows, self._n_ids = rows, n_ids

    @property
    def ids(self) -> np.ndarray:
        return self._ids[:self._n_ids]

    @property
    def at(self) -> np.ndarray:
        return self._at[:self.rows]

    @property
    def lengths(self) -> np.ndarray:
        return self._len[:self.rows]


class WordPieceTokenizer:
    """`tokenize_lines(lines) -> (flat int32 ids, int64 row_splits)` with google-research/bert's ids."""

    def __init__(self, vocab_file: str, do_lower_case: bool, strip_accents: Optional[bool] = None,
                 max_input_chars_per_word: int = REFERENCE_MAX_INPUT_CHARS_PER_WORD,
                 cache_limit: int = CHUNK_CACHE_LIMIT, use_rust_wordpiece: bool = True):
        self.vocab: Vocab = load_vocab(vocab_file)
        self.do_lower_case = bool(do_lower_case)
        self.strip_accents = self.do_lower_case if strip_accents is None else bool(strip_accents)
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self._token_to_id = self.vocab.token_to_id
        self._unk_id = self.vocab.unk_id
        self._cache_limit = int(cache_limit)
        self._longest_token = max((len(t) for t in self.vocab.tokens if not t.startswith("##")), default=0)
        self._longest_continuation = max((len(t) - 2 for t in self.vocab.tokens if t.startswith("##")), default=0)
        # The chunk cache: chunk -> its row in _chunks (its ids); the words (punctuation split) of the chunks seen
        # so far: word -> its row in _word_rows. Both set by clear_cache().
        self._chunk_index: Dict[str, int] = {}
        self._chunks = _RaggedIds(())
        self._word_index: Dict[str, int] = {}
        self._word_rows = _RaggedIds(())
        self._cache_lock = threading.Lock()  # the chunk cache is shared by the threads of a process
        self.clear_cache()
        self.cache_clears = 0  # times the chunk cache was full (for tests and benchmarks)
        self._rust = None  # HF tokenizers' WordPiece model over this vocabulary (a Tokenizer), built on first use
        self.use_rust_wordpiece = use_rust_wordpiece

    def __getstate__(self) -> Dict[str, object]:
        state = dict(self.__dict__)
        del state["_cache_lock"]  # a lock does not pickle; a copy gets its own
        return state

    def __setstate__(self, state: Dict[str, object]) -> None:
        self.__dict__.update(state)
        self._cache_lock = threading.Lock()

    def _exact_ids(self, normalized_text: str, words: Dict[str, List[int]]) -> List[int]:
        """Punctuation split + WordPiece of normalised text, word by word, remembering words in `words`."""
        out: List[int] = []
        for word in _tables()[1].findall(normalized_text):
            ids = words.get(word)
            if ids is None:
                ids = wordpiece_word(word, self._token_to_id, self._unk_id, self.max_input_chars_per_word,
                                     self._longest_token, self._longest_continuation)
                words[word] = ids
            out.extend(ids)
        return out

    def _cache_chunks(self, chunks: List[str]) -> None:
        """Adds new chunks (not yet cached) and their ids to the chunk cache: the same words and ids as
        _exact_ids, from one regex pass over all of them ("\n" never occurs in a chunk, so it marks where one
        ends: it is word 0, without ids) and numpy gathers of the words' ids, not a Python loop per word."""
        pieces = _chunk_splitter().findall("\n".join(chunks))
        word_index = self._word_index
        new = list(set(pieces).difference(word_index))
        if new:
            base = self._word_rows.rows
            self._word_rows.append(*self._wordpiece_flat(new))
            word_index.update(zip(new, range(base, base + len(new))))
        words = np.fromiter(map(word_index.__getitem__, pieces), np.int64, count=len(pieces))
        word_len = self._word_rows.lengths[words]
        chunk_of_piece = np.cumsum(words == 0)  # a chunk's pieces follow the "\n" that ends the one before
        chunk_len = np.bincount(chunk_of_piece, weights=word_len, minlength=len(chunks)).astype(np.int64)
        flat = self._word_rows.ids[gather_index(self._word_rows.at[words], word_len)]
        base = self._chunks.rows
        self._chunks.append(chunk_len, flat)
        self._chunk_index.update(zip(chunks, range(base, base + len(chunks))))

    def wordpiece_words(self, words: List[str]) -> List[List[int]]:
        """`wordpiece_word` of each word (non-empty, punctuation-split); see _wordpiece_flat."""
        lengths, flat = self._wordpiece_flat(words)
        ends = np.cumsum(lengths).tolist()
        flat_list = flat.tolist()
        return [flat_list[b:e] for b, e in zip([0] + ends[:-1], ends)]

    def _wordpiece_flat(self, words: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        """`wordpiece_word` of each word (non-empty, punctuation-split) as (ids per word, all ids in word order).

        A word that is one vocabulary entry (and not longer than max_input_chars_per_word) is a dict look-up.
        The others go, all in one call, to HF tokenizers' WordPiece model (Rust: the same greedy
        longest-match-first with "##" pieces, [UNK] for a word that fails anywhere or is longer than
        max_input_chars_per_word code points) when tokenizers is installed, else to `wordpiece_word`; so do
        words holding a lone surrogate, which cannot cross into Rust. tests/test_wordpiece.py checks both give
        the same ids on every BMP code point and the shared corpora."""
        n = len(words)
        t2i, unk, limit = self._token_to_id, self._unk_id, self.max_input_chars_per_word
        found = np.fromiter(map(t2i.get, words, itertools.repeat(-1)), np.int64, count=n)
        if (found >= 0).any():
            found[np.fromiter(map(len, words), np.int64, count=n) > limit] = -1
        lengths = np.ones(n, np.int64)
        others = np.flatnonzero(found < 0).tolist()
        if not others:
            return lengths, found
        tokenizer = self._rust_tokenizer() if self.use_rust_wordpiece else None
        rust = [i for i in others if not _has_surrogate(words[i])] if tokenizer is not None else []
        in_python = sorted(set(others).difference(rust)) if len(rust) < len(others) else []
        rust_ids = np.zeros(0, np.int64)
        if rust:
            encoding = tokenizer.encode([words[i] for i in rust], is_pretokenized=True, add_special_tokens=False)
            rust_ids = np.asarray(encoding.ids, np.int64)
            lengths[rust] = np.bincount(np.asarray(encoding.word_ids, np.int64), minlength=len(rust))
        python_ids = [wordpiece_word(words[i], t2i, unk, limit, self._longest_token, self._longest_continuation)
                      for i in in_python]
        lengths[in_python] = [len(ids) for ids in python_ids]
        starts = np.cumsum(lengths) - lengths
        flat = np.empty(int(lengths.sum()), np.int64)
        single = np.flatnonzero(found >= 0)
        flat[starts[single]] = found[single]
        if rust:
            flat[gather_index(starts[rust], lengths[rust])] = rust_ids
        for i, ids in zip(in_python, python_ids):
            flat[starts[i]:starts[i] + len(ids)] = ids
        return lengths, flat

    def load_models(self) -> None:
        """Builds now what is otherwise built on first use (tokenizers' WordPiece model): a fork server's
        workers then inherit it instead of each building its own."""
        if self.use_rust_wordpiece:
            self._rust_tokenizer()

    def _rust_tokenizer(self):
        """HF tokenizers' WordPiece model over this vocabulary, in a Tokenizer without normaliser, pre-tokeniser
        or special tokens (words pass through as they are); built on first use (~10 ms for 30k entries). None
        when tokenizers is missing or the vocabulary has no unknown token of its own."""
        if self._rust is None:
            self._rust = False
            unk = self.vocab.tokens[self._unk_id] if 0 <= self._unk_id < len(self.vocab.tokens) else None
            if unk is None or self._token_to_id.get(unk) != self._unk_id:
                return None
            try:
                from tokenizers import Tokenizer  # pylint: disable=import-outside-toplevel
                from tokenizers.models import WordPiece  # pylint: disable=import-outside-toplevel
            except ImportError:
                return None
            self._rust = Tokenizer(WordPiece(dict(self._token_to_id), unk_token=unk, continuing_subword_prefix="##",
                                             max_input_chars_per_word=self.max_input_chars_per_word))
        return self._rust or None

    def _normalize_joined(self, lines: Sequence[str]) -> str:
        """The lines normalised, joined by "\n" (one normalisation pass over the whole text)."""
        joined = "\n".join(lines)
        if joined.count("\n") != len(lines) - 1:  # "\n" inside a line is whitespace to the reference
            joined = "\n".join(x.replace("\n", " ") for x in lines)
        return normalize_text(joined, self.do_lower_case, self.strip_accents)

    def tokenize_exact(self, lines: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        """Every line through the per-word pure-Python path, no cache (slow; tokenize_lines must equal it)."""
        normalized = self._normalize_joined(lines).split("\n")
        return _pack([self._exact_ids(x, {}) for x in normalized])

    def tokenize_lines(self, lines: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        """Token ids of many lines: flat int32 ids and int64 row_splits of length len(lines) + 1.

        Each whitespace chunk is looked up once in the chunk cache (one dict look-up per chunk, to an integer);
        the ids are then gathered from the cache's flat id array with numpy, not chained tuple by tuple."""
        if len(lines) == 0:
            return np.zeros(0, np.int32), np.zeros(1, np.int64)
        big = self._normalize_joined(lines)
        chunks = big.replace("\n", " \x00 ").split()  # str.split(): the reference's whitespace_tokenize
        with self._cache_lock:
            return self._ids_of_chunks(chunks, len(lines))

    def _ids_of_chunks(self, chunks: List[str], n_lines: int) -> Tuple[np.ndarray, np.ndarray]:
        """tokenize_lines' chunk look-up and gather, under the cache lock: a process shares one tokenizer among
        its bundles, and Beam's multi_threading mode or a Dask worker's threads run several at once (two
        calls filling or clearing the cache together lost each other's chunks: a KeyError, or wrong ids)."""
        cids = np.fromiter(map(self._chunk_index.get, chunks, itertools.repeat(-1)), np.int64, count=len(chunks))
        missing_at = np.flatnonzero(cids < 0)
        if len(missing_at):
            missing = list(dict.fromkeys(chunks[i] for i in missing_at.tolist()))
            if (len(self._chunk_index) + len(missing) > self._cache_limit
                    or len(self._word_index) > self._cache_limit):
                # Clearing (rather than evicting one by one) keeps the hot path a plain dict look-up; every
                # chunk of these lines is then new.
                self._reset_cache()
                self.cache_clears += 1
                missing = [c for c in dict.fromkeys(chunks) if c not in self._chunk_index]  # not the line break
                missing_at = np.arange(len(chunks))
            self._cache_chunks(missing)
            index = self._chunk_index
            cids[missing_at] = np.fromiter(map(index.__getitem__, (chunks[i] for i in missing_at.tolist())),
                                           np.int64, count=len(missing_at))
        chunk_rows = self._chunks
        flat = chunk_rows.ids[gather_index(chunk_rows.at[cids], chunk_rows.lengths[cids])].astype(np.int32)
        breaks = np.flatnonzero(flat == -1)
        splits = np.empty(n_lines + 1, np.int64)
        splits[0] = 0
        splits[1:-1] = breaks - np.arange(len(breaks))
        splits[-1] = len(flat) - len(breaks)
        return (np.delete(flat, breaks) if len(breaks) else flat), splits

    def clear_cache(self) -> None:
        """Forgets every cached chunk and word (results never depend on the cache)."""
        with self._cache_lock:
            self._reset_cache()

    def _reset_cache(self) -> None:
        # "\x00" never survives normalisation, so it can stand for a line break among the chunks (id -1).
        self._chunk_index = {_LINE_BREAK: 0}
        self._chunks = _RaggedIds((-1,))
        self._word_index = {"\n": 0}  # the chunk separator of _cache_chunks: no ids
        self._word_rows = _RaggedIds(())

    def word_starts(self, ids: np.ndarray) -> np.ndarray:
        """True where a token may start a whole word (it does not begin with "##")."""
        return ~self.vocab.continuation_mask()[np.asarray(ids)]


def _pack(per_line: List[List[int]]) -> Tuple[np.ndarray, np.ndarray]:
    splits = np.zeros(len(per_line) + 1, np.int64)
    np.cumsum([len(x) for x in per_line], out=splits[1:])
    flat = np.fromiter((t for x in per_line for t in x), dtype=np.int32, count=int(splits[-1]))
    return flat, splits
