"""Pure parsing helpers for `--input_format text|jsonl`: lines/JSON objects -> paragraphs -> sentences."""
import json
import logging
import re
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

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


def prepare_documents(docs: Iterable[Any], input_format: str, segmenter: Any, counts: Dict[str, int],
                      text_field: str = "text", id_field: Optional[str] = None) -> Iterator[Any]:
    """Reader documents (corpus_reader.RawDocument) -> documents whose lines are sentences, for the input format.

    bert: unchanged (a sentence a line). text: a paragraph a line, segmented. jsonl: one JSON object a
    document; a line that cannot be parsed is dropped, logged with its file and line, and counted in
    `counts` (documents_read, documents_dropped.bad_jsonl).
    """
    if input_format == "bert":
        yield from docs
        return
    for doc in docs:
        if input_format == "jsonl":
            try:
                doc_id, paragraphs = parse_jsonl_line(doc.lines[0], text_field, id_field)
            except InputFormatError as e:
                counts["documents_read"] = counts.get("documents_read", 0) + 1
                counts["documents_dropped.bad_jsonl"] = counts.get("documents_dropped.bad_jsonl", 0) + 1
                logging.warning("%s: dropped: %s", doc.source, e)
                continue
            doc.doc_id = doc_id
        else:
            paragraphs = paragraphs_from_text_lines(doc.lines)
        doc.lines = sentences_for_document(paragraphs, segmenter)
        yield doc
