"""SentencePiece tokenization of many lines at once with the model's own ids (ALBERT-format models).

Text handling (documented choice):
- `do_lower_case=False` (default): the ids are exactly `SentencePieceProcessor.encode(line)`; the model's
  own normalizer (e.g. nmt_nfkc) is the only normalisation.
- `do_lower_case=True`: each line first goes through google-research/albert `tokenization.preprocess_text`
  semantics, as its `create_pretraining_data.py` does for SentencePiece input: runs of whitespace collapse
  to one space and the ends are stripped (`" ".join(line.split())`), then NFKD, then every character with a
  non-zero canonical combining class is dropped (accents), then lower case; the ids are `encode()` of that.
  `albert_preprocess=True` applies the same preprocessing without lower-casing to cased text (ALBERT
  applies it whatever the casing); `albert_preprocess=False` turns it off (lower-casing only).
- Pre-split (Tibetan syllables): with `presplit_chars` (the pipeline passes what the model's vocab_config.json
  records, written by `bertbeam vocab --presplit_chars`, default with --lang bo), `transforms.presplit.presplit`
  runs on each line after the preprocessing above, exactly as it did on the training text; `decode` undoes it.
  Not done: HF AlbertTokenizer's extra ``/'' -> " quote rewrite (google-research/albert does not do it)
  and ALBERT `encode_pieces`' re-split of pieces like "▁1990," (ids stay sentencepiece's own).
"""
import functools
import hashlib
import sys
import unicodedata
from typing import List, Optional, Sequence, Tuple

import numpy as np

from transforms.presplit import decode_pieces, presplit_lines
from vocab.vocab_file import Vocab, vocab_from_tokens

ALBERT_PIECES = ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")


def _read_model_bytes(path: str) -> bytes:
    try:
        if "://" in path:
            from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
            with FileSystems.open(path) as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except Exception as e:  # pylint: disable=broad-except
        # Any storage failure (missing file, permissions, gs:// errors) reads as one clear message.
        raise ValueError(f"{path}: cannot read SentencePiece model ({e})") from e


@functools.lru_cache(maxsize=None)
def _combining_table() -> np.ndarray:
    """True per code point with a non-zero canonical combining class (unicodedata.combining)."""
    return np.array([unicodedata.combining(chr(cp)) != 0 for cp in range(sys.maxunicode + 1)], dtype=bool)


def albert_preprocess_lines(lines: Sequence[str], lower: bool) -> List[str]:
    """google-research/albert preprocess_text(line, remove_space=True, lower=lower) for many lines.

    Whitespace collapsing is per line (str.split); NFKD, the combining-mark filter and lower() run once
    over the joined batch (none of them crosses a "\\n", and no character decomposes to one).
    """
    collapsed = [" ".join(x.split()) for x in lines]
    big = unicodedata.normalize("NFKD", "\n".join(collapsed))
    if not big.isascii():
        cps = np.frombuffer(big.encode("utf-32-le", "surrogatepass"), np.uint32)
        drop = _combining_table()[cps]
        if drop.any():
            big = cps[~drop].tobytes().decode("utf-32-le", "surrogatepass")
    if lower:
        big = big.lower()
    out = big.split("\n")
    assert len(out) == len(lines)
    return out


def model_presplit_chars(model_file: str) -> str:
    """The pre-split recorded next to a SentencePiece model (vocab_config.json), "" when none is."""
    from vocab.casing import read_vocab_config  # pylint: disable=import-outside-toplevel
    config = read_vocab_config(model_file) or {}
    chars = config.get("presplit_chars") or ""
    return chars if isinstance(chars, str) else ""


class SentencePieceTokenizer:
    """`tokenize_lines(lines) -> (flat int32 ids, int64 row_splits)` and `.vocab` for a .model file."""

    def __init__(self, model_file: str, do_lower_case: bool = False, albert_preprocess: Optional[bool] = None,
                 require_albert_pieces: bool = True, presplit_chars: Optional[str] = None):
        import sentencepiece as spm  # pylint: disable=import-outside-toplevel
        data = _read_model_bytes(model_file)
        if not data:
            raise ValueError(f"{model_file}: SentencePiece model file is empty")
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=data)
        except Exception as e:  # pylint: disable=broad-except
            raise ValueError(f"{model_file}: not a valid SentencePiece model ({e})") from e
        pieces = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        if require_albert_pieces:
            missing = [p for p in ALBERT_PIECES if p not in set(pieces)]
            if missing:
                raise ValueError(f"{model_file}: SentencePiece model lacks ALBERT piece(s) {', '.join(missing)} "
                                 f"(needs <pad>, <unk>, [CLS], [SEP], [MASK])")
        self.model_file = model_file
        self.do_lower_case = bool(do_lower_case)
        self.albert_preprocess = self.do_lower_case if albert_preprocess is None else bool(albert_preprocess)
        self.vocab: Vocab = vocab_from_tokens(pieces, path=model_file, kind="sentencepiece",
                                              sha256=hashlib.sha256(data).hexdigest())
        # tokenizer_factory.load_tokenizer passes the model's recorded pre-split (model_presplit_chars).
        self.presplit_chars = presplit_chars or ""

    def preprocess(self, lines: Sequence[str]) -> List[str]:
        """The text handed to sentencepiece (see the module docstring)."""
        if self.albert_preprocess:
            out = albert_preprocess_lines(lines, self.do_lower_case)
        elif self.do_lower_case:
            out = [x.lower() for x in lines]
        else:
            out = list(lines)
        if self.presplit_chars:
            out = presplit_lines(out, self.presplit_chars)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids` (specials dropped) with the pre-split undone: the inverse of `tokenize_lines`
        up to the model's normaliser and the casing/accent preprocessing."""
        pieces = [self.vocab.tokens[i] for i in ids if not self._sp.is_control(int(i))]
        return decode_pieces(pieces, self.presplit_chars)

    def tokenize_lines(self, lines: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        """Token ids of many lines: flat int32 ids and int64 row_splits of length len(lines) + 1."""
        if len(lines) == 0:
            return np.zeros(0, np.int32), np.zeros(1, np.int64)
        per_line = self._sp.encode(self.preprocess(lines))
        splits = np.zeros(len(per_line) + 1, np.int64)
        np.cumsum([len(x) for x in per_line], out=splits[1:])
        flat = np.fromiter((t for x in per_line for t in x), dtype=np.int32, count=int(splits[-1]))
        return flat, splits

    def word_starts(self, ids: np.ndarray) -> np.ndarray:
        """True where a piece may start a whole word (it begins with "▁", or is a special piece)."""
        return ~self.vocab.continuation_mask()[np.asarray(ids)]
