"""Test oracle: a plain, slow re-statement of google-research/bert's FullTokenizer semantics (eedf5716)."""
import unicodedata
from typing import Dict, List, Optional, Sequence

# google-research/bert at eedf5716 (the commit the shared reference statistics came from): control characters
# are categories Cc and Cf only (older copies, and HF, drop every C* category), and WordpieceTokenizer's
# max_input_chars_per_word defaults to 200 (older copies and HF use 100).
REFERENCE_MAX_INPUT_CHARS_PER_WORD = 200


def is_whitespace(char: str) -> bool:
    """Space, tab, newline, carriage return, or any Zs character."""
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def is_control(char: str) -> bool:
    """Cc/Cf characters except tab, newline and carriage return (which count as whitespace)."""
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def is_punctuation(char: str) -> bool:
    """All non-alphanumeric printable ASCII, plus every Unicode P* category character."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_cjk(cp: int) -> bool:
    """The code point ranges BERT surrounds with spaces (CJK ideographs, not kana or Hangul)."""
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _whitespace_split(text: str) -> List[str]:
    # Python's str.split() (no argument) is what the reference uses; it also splits on U+2028/U+2029 etc.
    return text.strip().split()


class ReferenceTokenizer:
    """BasicTokenizer + greedy longest-match-first WordPiece, character by character, as the reference does."""

    def __init__(self, tokens: Sequence[str], do_lower_case: bool, strip_accents: Optional[bool] = None,
                 max_input_chars_per_word: int = REFERENCE_MAX_INPUT_CHARS_PER_WORD,
                 unk_token: str = "[UNK]"):
        self.vocab: Dict[str, int] = {t: i for i, t in enumerate(tokens)}
        self.do_lower_case = do_lower_case
        self.strip_accents = do_lower_case if strip_accents is None else strip_accents
        self.max_input_chars_per_word = max_input_chars_per_word
        self.unk_token = unk_token

    # --- BasicTokenizer -------------------------------------------------------------------------------
    def basic_tokenize(self, text: str) -> List[str]:
        cleaned = []
        for char in text:
            if ord(char) == 0 or ord(char) == 0xFFFD or is_control(char):
                continue
            cleaned.append(" " if is_whitespace(char) else char)
        spaced = []
        for char in cleaned:
            spaced.append(f" {char} " if is_cjk(ord(char)) else char)
        pieces: List[str] = []
        for token in _whitespace_split("".join(spaced)):
            if self.do_lower_case:
                token = token.lower()
            if self.strip_accents:
                token = "".join(c for c in unicodedata.normalize("NFD", token)
                                if unicodedata.category(c) != "Mn")
            pieces.extend(self._split_punctuation(token))
        return _whitespace_split(" ".join(pieces))

    @staticmethod
    def _split_punctuation(token: str) -> List[str]:
        out: List[List[str]] = []
        new_word = True
        for char in token:
            if is_punctuation(char):
                out.append([char])
                new_word = True
            else:
                if new_word:
                    out.append([])
                    new_word = False
                out[-1].append(char)
        return ["".join(x) for x in out]

    # --- WordpieceTokenizer ---------------------------------------------------------------------------
    def wordpiece(self, word: str) -> List[str]:
        chars = list(word)
        if len(chars) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces = []
        start = 0
        while start < len(chars):
            end = len(chars)
            found = None
            while start < end:
                candidate = "".join(chars[start:end])
                if start > 0:
                    candidate = "##" + candidate
                if candidate in self.vocab:
                    found = candidate
                    break
                end -= 1
            if found is None:
                return [self.unk_token]
            pieces.append(found)
            start = end
        return pieces

    def tokenize(self, text: str) -> List[str]:
        out = []
        for word in self.basic_tokenize(text):
            for piece in _whitespace_split(word):
                out.extend(self.wordpiece(piece))
        return out

    def ids(self, text: str) -> List[int]:
        return [self.vocab[t] for t in self.tokenize(text)]


def load_tokens(path: str) -> List[str]:
    """Reads vocab.txt the way the reference does (one token a line, stripped)."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f]
