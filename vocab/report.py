"""Vocabulary report on held-out text: size, [UNK] rate, pieces per word, side by side with another vocabulary."""
import dataclasses
import json
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from transforms.presplit import presplit
from vocab.casing import check_casing
from vocab.spm_model import is_spm_path, load_any_vocab
from transforms.wordpiece import REFERENCE_MAX_INPUT_CHARS_PER_WORD, basic_tokenize, wordpiece_word
from vocab.train_spm import normalize

# Words shown tokenized in the text report (Norwegian: accents and long compounds).
EXAMPLE_WORDS = ("på", "blåbærsyltetøy", "Stortinget", "fylkeskommunene", "skjønner", "Tromsø")


@dataclasses.dataclass
class VocabReport:
    """Held-out statistics of one vocabulary. Words are whitespace-separated (how "pieces per word" is usually
    quoted); basic_tokens counts BERT's punctuation-split words too."""

    vocab_file: str
    kind: str
    vocab_size: int
    do_lower_case: bool
    strip_accents: bool
    lines: int = 0
    words: int = 0
    basic_tokens: int = 0
    pieces: int = 0
    unk_pieces: int = 0
    unk_words: int = 0
    single_piece_words: int = 0
    examples: Dict[str, List[str]] = dataclasses.field(default_factory=dict)

    @property
    def pieces_per_word(self) -> float:
        return self.pieces / self.words if self.words else 0.0

    @property
    def unk_rate(self) -> float:
        """Fraction of pieces that are [UNK]."""
        return self.unk_pieces / self.pieces if self.pieces else 0.0

    @property
    def unk_word_rate(self) -> float:
        """Fraction of words with an [UNK] piece (the word's information is lost)."""
        return self.unk_words / self.words if self.words else 0.0

    @property
    def single_piece_word_rate(self) -> float:
        return self.single_piece_words / self.words if self.words else 0.0

    def to_dict(self) -> Dict:
        d = dataclasses.asdict(self)
        d.update(pieces_per_word=round(self.pieces_per_word, 4), unk_rate=round(self.unk_rate, 6),
                 unk_word_rate=round(self.unk_word_rate, 6),
                 single_piece_word_rate=round(self.single_piece_word_rate, 4))
        return d


def _wordpiece_splitter(tokens: Sequence[str], lower: bool, strip: bool) -> Callable[[str], List[str]]:
    """The pipeline's own BERT BasicTokenizer + WordPiece (transforms.wordpiece), as token strings."""
    token_to_id = {t: i for i, t in enumerate(tokens)}
    unk_id = token_to_id["[UNK]"]

    def split(text: str) -> List[str]:
        return [tokens[i] for word in basic_tokenize(text, lower, strip)
                for i in wordpiece_word(word, token_to_id, unk_id, REFERENCE_MAX_INPUT_CHARS_PER_WORD)]
    return split


def _spm_splitter(path: str, lower: bool, strip: bool) -> Callable[[str], List[str]]:
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel
    from vocab.vocab_file import _read_bytes  # pylint: disable=import-outside-toplevel
    processor = spm.SentencePieceProcessor()
    processor.LoadFromSerializedProto(_read_bytes(path))

    def split(word: str) -> List[str]:
        pieces = processor.encode(normalize(word, lower, strip), out_type=str)
        # The unknown piece is "<unk>" in ALBERT models; report it under BERT's name.
        return ["[UNK]" if processor.piece_to_id(p) == processor.unk_id() else p for p in pieces]

    return split


def report_vocab(vocab_file: str, lines: Iterable[str], do_lower_case: Optional[bool] = None,
                 strip_accents: Optional[bool] = None) -> VocabReport:
    """Tokenizes every whitespace word of `lines` with the vocabulary (casing from flags or its sidecar).

    A SentencePiece model trained with a pre-split (vocab_config.json `presplit_chars`, Tibetan) is fed
    the pre-split text, so its "words" are the pre-split units (syllables) and pieces per word is pieces
    per syllable.
    """
    vocab = load_any_vocab(vocab_file)
    presplit_chars = ""
    if is_spm_path(vocab_file):
        from transforms.sentencepiece_tokenizer import model_presplit_chars  # pylint: disable=C0415
        presplit_chars = model_presplit_chars(vocab_file)
    lower, strip = check_casing(vocab_file, do_lower_case, strip_accents)
    if is_spm_path(vocab_file):
        split = _spm_splitter(vocab_file, lower, strip)
    else:
        split = _wordpiece_splitter(vocab.tokens, lower, strip)
    rep = VocabReport(vocab_file=vocab_file, kind=vocab.kind, vocab_size=vocab.size,
                      do_lower_case=lower, strip_accents=strip)
    cache: Dict[str, Tuple[List[str], int]] = {}
    for line in lines:
        line = line.strip()
        if not line:
            continue
        rep.lines += 1
        # Tokenizing word by word equals tokenizing the line: both tokenizers split on whitespace first.
        for word in presplit(line, presplit_chars).split():
            hit = cache.get(word)
            if hit is None:
                hit = (split(word), len(basic_tokenize(word, lower, strip)))
                cache[word] = hit
            pieces, n_basic = hit
            rep.words += 1
            rep.basic_tokens += n_basic
            rep.pieces += len(pieces)
            n_unk = sum(p == "[UNK]" for p in pieces)
            rep.unk_pieces += n_unk
            rep.unk_words += n_unk > 0
            rep.single_piece_words += len(pieces) == 1
    rep.examples = {w: split(w) for w in EXAMPLE_WORDS}
    return rep


def read_heldout(path: str) -> List[str]:
    """Held-out lines (any one-text-per-line file, local or gs://); blank lines are skipped later."""
    from vocab.vocab_file import _read_bytes  # pylint: disable=import-outside-toplevel
    return _read_bytes(path).decode("utf-8", errors="replace").split("\n")


def format_reports(reports: Sequence[VocabReport], heldout: str) -> str:
    """A plain-text table, one column per vocabulary."""
    rows = [("vocabulary", lambda r: r.vocab_file),
            ("kind", lambda r: r.kind),
            ("casing", lambda r: ("uncased" if r.do_lower_case else "cased")
             + (", accents stripped" if r.strip_accents else ", accents kept")),
            ("vocab size", lambda r: f"{r.vocab_size:,}"),
            ("words", lambda r: f"{r.words:,}"),
            ("pieces", lambda r: f"{r.pieces:,}"),
            ("pieces per word", lambda r: f"{r.pieces_per_word:.3f}"),
            ("[UNK] rate (pieces)", lambda r: f"{100 * r.unk_rate:.3f}%"),
            ("words with [UNK]", lambda r: f"{100 * r.unk_word_rate:.3f}%"),
            ("single-piece words", lambda r: f"{100 * r.single_piece_word_rate:.1f}%")]
    rows += [(f"'{w}'", (lambda r, w=w: " ".join(r.examples.get(w, [])))) for w in EXAMPLE_WORDS]
    width = max(len(name) for name, _ in rows)
    lines = [f"held-out text: {heldout}"]
    for name, get in rows:
        lines.append(f"{name:<{width}}  " + "  |  ".join(str(get(r)) for r in reports))
    return "\n".join(lines)


def reports_json(reports: Sequence[VocabReport], heldout: str) -> str:
    return json.dumps({"heldout_file": heldout, "vocabularies": [r.to_dict() for r in reports]},
                      indent=2, ensure_ascii=False)
