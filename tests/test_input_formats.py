"""Tests for the text/jsonl input-format helpers."""
import json

import pytest

from transforms.input_formats import (InputFormatError, paragraphs_from_text_lines, parse_jsonl_line,
                                      sentences_for_document, split_paragraphs)
from transforms.segment import Segmenter


def test_text_lines_drop_blank_and_strip():
    lines = ["  Første avsnitt. ", "", "   \t", "Andre avsnitt.\n", "\u00a0"]
    assert paragraphs_from_text_lines(lines) == ["Første avsnitt.", "Andre avsnitt."]
    assert paragraphs_from_text_lines([]) == []


def test_jsonl_basic_and_newline_kinds():
    line = json.dumps({"text": "A one.\n\nB two.\r\nC three.\rD four.\n  \n", "id": "doc-7"})
    assert parse_jsonl_line(line) == (None, ["A one.", "B two.", "C three.", "D four."])
    assert parse_jsonl_line(line, id_field="id") == ("doc-7", ["A one.", "B two.", "C three.", "D four."])


def test_jsonl_custom_fields_and_numeric_id():
    line = json.dumps({"content": "Hei på deg.", "nr": 42}, ensure_ascii=False)
    assert parse_jsonl_line(line, text_field="content", id_field="nr") == ("42", ["Hei på deg."])


def test_jsonl_empty_text_gives_no_paragraphs():
    assert parse_jsonl_line('{"text": "  \\n "}') == (None, [])


@pytest.mark.parametrize("line,fragment", [
    ("not json", "not valid JSON"),
    ("", "not valid JSON"),
    ('["a list"]', "expected an object"),
    ('"a string"', "expected an object"),
    ('{"body": "x"}', "missing text field 'text'"),
    ('{"text": 5}', "expected a string"),
    ('{"text": null}', "expected a string"),
    ('{"text": ["a", "b"]}', "expected a string"),
])
def test_jsonl_errors(line, fragment):
    with pytest.raises(InputFormatError, match=fragment):
        parse_jsonl_line(line)


def test_jsonl_missing_or_bad_id():
    with pytest.raises(InputFormatError, match="missing id field 'id'"):
        parse_jsonl_line('{"text": "x"}', id_field="id")
    with pytest.raises(InputFormatError, match="id field 'id'"):
        parse_jsonl_line('{"text": "x", "id": {"a": 1}}', id_field="id")


def test_input_format_error_is_value_error():
    assert issubclass(InputFormatError, ValueError)


def test_split_paragraphs_unicode_separators():
    assert split_paragraphs("a\u2028b\u2029c") == ["a", "b", "c"]


def test_sentences_for_document():
    seg = Segmenter("nb")
    paras = ["Det var 17. mai. Alle feiret!", "Overskrift", "Slutt."]
    assert sentences_for_document(paras, seg) == ["Det var 17. mai.", "Alle feiret!", "Overskrift", "Slutt."]
    assert sentences_for_document([], seg) == []
