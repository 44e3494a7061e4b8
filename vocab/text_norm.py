"""BERT-semantics text normalisation and word splitting (pure Python): cleaning, casing, accents, punctuation."""
import unicodedata
from typing import List


def _is_whitespace(ch: str) -> bool:
    # \t \n \r count as whitespace although Unicode calls them control characters (as BERT does).
    if ch in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # All non-alphanumeric ASCII counts as punctuation ("$", "^", "`"), as in BERT.
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def clean_text(text: str) -> str:
    """Drops NUL, U+FFFD and control characters; maps every whitespace to a space."""
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        out.append(" " if _is_whitespace(ch) else ch)
    return "".join(out)


def strip_accents(text: str) -> str:
    """NFD, then drops combining marks (BERT's accent stripping: "på" -> "pa", "ø" stays "ø")."""
    return "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")


def normalize(text: str, do_lower_case: bool, do_strip_accents: bool) -> str:
    """Casing and accent handling applied before splitting (and before SentencePiece training)."""
    if do_lower_case:
        text = text.lower()
    if do_strip_accents:
        text = strip_accents(text)
    return text


def split_words(text: str, do_lower_case: bool = False, do_strip_accents: bool = False) -> List[str]:
    """BERT's BasicTokenizer: clean, CJK chars apart, case/accents, split on whitespace and punctuation."""
    text = clean_text(text)
    spaced = []
    for ch in text:
        if _is_cjk(ord(ch)):
            spaced.extend((" ", ch, " "))
        else:
            spaced.append(ch)
    words: List[str] = []
    for token in "".join(spaced).split():
        token = normalize(token, do_lower_case, do_strip_accents)
        current: List[str] = []
        for ch in token:
            if _is_punctuation(ch):
                if current:
                    words.append("".join(current))
                    current = []
                words.append(ch)
            else:
                current.append(ch)
        if current:
            words.append("".join(current))
    return words
