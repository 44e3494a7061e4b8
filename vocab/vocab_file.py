"""Loading and validating BERT-format `vocab.txt` files: ids, special tokens, fingerprint."""
import dataclasses
import hashlib
import re
from typing import Dict, Optional, Tuple

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class VocabError(ValueError):
    """A vocabulary file is unusable; the message names the file (and line where there is one)."""


@dataclasses.dataclass(frozen=True)
class Vocab:
    """A loaded vocabulary. Special ids come from the file, never assumed to be BERT's 0/100/101/102/103."""

    path: str
    tokens: Tuple[str, ...]
    sha256: str
    kind: str = "wordpiece"  # "wordpiece" or "sentencepiece"

    @property
    def size(self) -> int:
        return len(self.tokens)

    @property
    def token_to_id(self) -> Dict[str, int]:
        return _token_index(self)

    def special_id(self, token: str) -> int:
        return self.token_to_id[token]

    @property
    def pad_id(self) -> int:
        return self.special_id("[PAD]") if "[PAD]" in self.token_to_id else self.special_id("<pad>")

    @property
    def unk_id(self) -> int:
        return self.special_id("[UNK]") if "[UNK]" in self.token_to_id else self.special_id("<unk>")

    @property
    def cls_id(self) -> int:
        return self.special_id("[CLS]")

    @property
    def sep_id(self) -> int:
        return self.special_id("[SEP]")

    @property
    def mask_id(self) -> int:
        return self.special_id("[MASK]")

    def special_ids(self) -> Dict[str, int]:
        return {"[PAD]": self.pad_id, "[UNK]": self.unk_id, "[CLS]": self.cls_id,
                "[SEP]": self.sep_id, "[MASK]": self.mask_id}

    def continuation_mask(self) -> np.ndarray:
        """Boolean per id: True where the token continues a word (cannot start a whole-word span)."""
        if self.kind == "sentencepiece":
            syllable_pieces = _syllable_presplit(self.tokens)
            return np.array([not _albert_starts_word(t, syllable_pieces) for t in self.tokens], dtype=bool)
        # BERT's tokenizer splits a Tibetan tsheg off as punctuation; it still closes the syllable before it.
        return np.array([t.startswith("##") or t in _TSHEG_TOKENS for t in self.tokens], dtype=bool)


_ASCII_PUNCTUATION = frozenset('!"#$%&\'()*+,-./:;?@[\\]^_`{|}~')
_ENGLISH_OR_PUNCTUATION = frozenset("abcdefghijklmnopqrstuvwxyz") | _ASCII_PUNCTUATION


_TSHEGS = "\u0f0b\u0f0c"
_TSHEG_TOKENS = frozenset(("\u0f0b", "\u0f0c", "##\u0f0b", "##\u0f0c"))


def _is_tibetan(ch: str) -> bool:
    return "\u0f00" <= ch <= "\u0fff"


def _syllable_presplit(pieces) -> bool:
    """True when the model's Tibetan pieces never run past a tsheg (a model trained on text pre-split at
    syllables, `bertbeam vocab --lang bo`): there every syllable starts with "▁", so a Tibetan piece
    without it continues a syllable. False when there are no Tibetan pieces or some span syllables."""
    seen = False
    for p in pieces:
        body = p.lstrip("\u2581")
        if body and _is_tibetan(body[0]):
            seen = True
            for t in _TSHEGS:
                k = body.find(t)
                if 0 <= k < len(body) - 1:
                    return False
    return seen


def _albert_starts_word(piece: str, syllable_pieces: bool = False) -> bool:
    """google-research/albert's rule for SentencePiece word starts (`_is_start_piece_sp`): a piece
    starting with "▁" or "<", a punctuation piece, or any piece with a character outside a-z and ASCII
    punctuation (ALBERT treats such "foreign" pieces as whole words). Special tokens ([CLS], <pad>, ...)
    also start a unit here; they are never maskable anyway. In a syllable-pre-split Tibetan model
    (`syllable_pieces`) the word unit is the syllable with its tsheg: a Tibetan piece without "▁"
    continues one."""
    if piece.startswith(("\u2581", "<", "[")) or piece in _ASCII_PUNCTUATION:
        return True
    if syllable_pieces and _is_tibetan(piece[0]):
        return False
    return any(ch.lower() not in _ENGLISH_OR_PUNCTUATION for ch in piece)


_INDEX_CACHE: Dict[Tuple[str, str], Dict[str, int]] = {}


def _token_index(vocab: Vocab) -> Dict[str, int]:
    key = (vocab.path, vocab.sha256)
    index = _INDEX_CACHE.get(key)
    if index is None:
        index = {t: i for i, t in enumerate(vocab.tokens)}
        _INDEX_CACHE[key] = index
    return index


def _read_bytes(path: str) -> bytes:
    # Beam's FileSystems reads local and gs:// paths alike; fall back to open() without Beam installed.
    try:
        from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
    except ImportError:  # training hosts may not have Beam
        FileSystems = None
    try:
        if FileSystems is not None and "://" in path:
            with FileSystems.open(path) as f:
                return f.read()
        if "://" in path:
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            with tf.io.gfile.GFile(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (OSError, IOError) as e:
        raise VocabError(f"{path}: cannot read vocabulary file ({e})") from e


_OTHER_WHITESPACE = re.compile(r"[^\S\n]")  # any whitespace str.split() splits on, except the line break


def parse_vocab_text(path: str, data: bytes, required: Tuple[str, ...] = SPECIAL_TOKENS) -> Tuple[str, ...]:
    """Validates vocab.txt bytes and returns its tokens; errors name the file and 1-based line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise VocabError(f"{path}:{line}: vocabulary is not valid UTF-8") from e
    if text.startswith("\ufeff"):
        raise VocabError(f"{path}:1: vocabulary starts with a byte-order mark (BOM); save it as UTF-8 without BOM")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise VocabError(f"{path}: vocabulary file is empty")
    # Fast path (a 30k vocabulary in ~2 ms, not ~25): no whitespace but the line breaks, no empty line, no
    # duplicate. Anything else takes the line-by-line checks below, which name the line.
    unique = set(lines)
    if (_OTHER_WHITESPACE.search(text) is None and "" not in unique and len(unique) == len(lines)
            and all(t in unique for t in required)):
        return tuple(lines)
    seen: Dict[str, int] = {}
    for i, token in enumerate(lines, start=1):
        if token.endswith("\r"):
            raise VocabError(f"{path}:{i}: CRLF line end; convert the vocabulary to LF line ends (e.g. dos2unix)")
        if token == "" or token.strip() == "":
            raise VocabError(f"{path}:{i}: empty or whitespace-only token")
        if token != token.strip():
            raise VocabError(f"{path}:{i}: token {token!r} has leading/trailing whitespace")
        if len(token.split()) > 1:
            # A SentencePiece .vocab listing ("piece<TAB>score") is the usual way to get here.
            hint = ("; this looks like a SentencePiece .vocab listing: pass the .model file instead"
                    if "\t" in token else "; BERT splits text on whitespace, so it can never match")
            raise VocabError(f"{path}:{i}: token {token!r} contains whitespace{hint}")
        if token in seen:
            raise VocabError(f"{path}:{i}: duplicate token {token!r} (first on line {seen[token]})")
        seen[token] = i
    missing = [t for t in required if t not in seen]
    if missing:
        raise VocabError(f"{path}: missing special token(s) {', '.join(missing)}")
    return tuple(lines)


def load_vocab(path: str, required: Tuple[str, ...] = SPECIAL_TOKENS) -> Vocab:
    """Loads and validates a BERT-format vocab.txt (local or gs://)."""
    data = _read_bytes(path)
    tokens = parse_vocab_text(path, data, required)
    return Vocab(path=path, tokens=tokens, sha256=hashlib.sha256(data).hexdigest(), kind="wordpiece")


def vocab_from_tokens(tokens, path: str = "<memory>", kind: str = "wordpiece",
                      sha256: Optional[str] = None) -> Vocab:
    """Builds a Vocab from a token list (SentencePiece models, tests)."""
    tokens = tuple(tokens)
    digest = sha256 or hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()
    return Vocab(path=path, tokens=tokens, sha256=digest, kind=kind)
