"""The pre-split of text into units before SentencePiece sees it (Tibetan syllables), and its exact inverse."""
from typing import Iterable, List

# CompassionAI's Tibetan pre-split (their ALBERT tokenizer): yig mgo ༄ ༅ ༈, tsheg ་ and non-breaking
# tsheg ༌, shad ། and rin chen spungs shad ༑, gter tsheg ༔, ༜ and ྾.
TIBETAN_PRESPLIT_CHARS = "\u0f04\u0f05\u0f08\u0f0b\u0f0c\u0f0d\u0f11\u0f14\u0f1c\u0fbe"

_SEP = " "


def presplit(text: str, chars: str) -> str:
    """`text` with a space after every character in `chars` (except at the very end).

    SentencePiece never builds a piece across a space, so each unit (a Tibetan syllable with its tsheg)
    becomes its own "word" that starts with "▁". The space is added even where one follows already
    ("། །" -> "།  ། "): that keeps the mapping one-to-one, so `undo_presplit` restores the text exactly
    (the model must then keep whitespace runs: `bertbeam vocab` trains it with remove_extra_whitespaces
    off). With empty `chars` the text is returned unchanged.
    """
    if not chars or not text:
        return text
    out: List[str] = []
    start = 0
    last = len(text) - 1
    for i, ch in enumerate(text):
        if ch in chars and i < last:
            out.append(text[start:i + 1])
            out.append(_SEP)
            start = i + 1
    if not out:
        return text
    out.append(text[start:])
    return "".join(out)


def undo_presplit(text: str, chars: str) -> str:
    """The inverse of `presplit`: drops the one space that follows each character in `chars`."""
    if not chars or not text:
        return text
    out: List[str] = []
    start = 0
    n = len(text)
    i = 0
    while i < n:
        if text[i] in chars and i + 1 < n and text[i + 1] == _SEP:
            out.append(text[start:i + 1])
            start = i + 2
            i += 2
            continue
        i += 1
    if not out:
        return text
    out.append(text[start:])
    return "".join(out)


def presplit_lines(lines: Iterable[str], chars: str) -> List[str]:
    return [presplit(x, chars) for x in lines]


def decode_pieces(pieces: Iterable[str], chars: str = "") -> str:
    """Text of SentencePiece pieces ("▁" = space, the first one dropped), with the pre-split undone."""
    text = "".join(pieces).replace("\u2581", " ")
    if text.startswith(" "):
        text = text[1:]
    return undo_presplit(text, chars)
