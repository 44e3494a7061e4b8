"""Pure parsing helpers for `--input_format text|jsonl`: lines/JSON objects -> paragraphs -> sentences."""
import json
import re
from typing import Any, List, Optional, Tuple

# Paragraph separators inside a JSON text field: \r\n, \r, \n and the Unicode line/paragraph
# separators that str.splitlines() also honours (but not form feeds etc., which are just spacing).
_NEWLINES = re.compile(r"\r\n|[\r\n\u2028\u2029\x85]")


class InputFormatError(ValueError):
    """A line that cannot be read in the chosen input format; the reader adds file/line and drops it."""


def paragraphs_from_text_lines(lines: List[str]) -> List[str]:
    """`--input_format text`: one paragraph a line; empty or whitespace-only lines are dropped."""
    out = []
    for line in lines:
        p = line.strip()
        if p:
            out.append(p)
    return out


def split_paragraphs(text: str) -> List[str]:
    """Paragraphs of a text field: split on any newline (\\n, \\r\\n, \\r), stripped, empty ones dropped."""
    return [p for p in (s.strip() for s in _NEWLINES.split(text)) if p]


def parse_jsonl_line(line: str, text_field: str = "text",
                     id_field: Optional[str] = None) -> Tuple[Optional[str], List[str]]:
    """`--input_format jsonl`: (document id or None, paragraphs) of one JSON-lines record.

    Raises InputFormatError when the line is not JSON, not an object, lacks `text_field` (or
    `id_field`, when given), or its text is not a string. A numeric id is turned into a string.
    """
    try:
        obj: Any = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputFormatError(f"not valid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(obj, dict):
        raise InputFormatError(f"JSON value is a {type(obj).__name__}, expected an object")
    if text_field not in obj:
        keys = ", ".join(sorted(map(str, obj))[:10])
        raise InputFormatError(f"missing text field {text_field!r} (fields: {keys or 'none'})")
    text = obj[text_field]
    if not isinstance(text, str):
        raise InputFormatError(f"text field {text_field!r} is a {type(text).__name__}, expected a string")
    doc_id: Optional[str] = None
    if id_field is not None:
        if id_field not in obj:
            raise InputFormatError(f"missing id field {id_field!r}")
        raw = obj[id_field]
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise InputFormatError(f"id field {id_field!r} is a {type(raw).__name__}, expected a string or integer")
        doc_id = str(raw)
    return doc_id, split_paragraphs(text)


def sentences_for_document(paragraphs: List[str], segmenter: Any) -> List[str]:
    """All sentences of a document, in order: `segmenter.split` applied to each paragraph."""
    out: List[str] = []
    for p in paragraphs:
        out.extend(segmenter.split(p))
    return out
