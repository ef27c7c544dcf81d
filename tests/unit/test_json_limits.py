"""The JSON nesting scans: the raw-bytes one run before parsing, and the one on stored documents."""

from __future__ import annotations

import json
import time

import pytest

from app.domain.errors import QuotaExceeded, ValidationFailed
from app.domain.pal_document import MAX_LAYERS_DEPTH, nesting_exceeds, validate_document
from app.rest.limits import json_nesting_exceeds


@pytest.mark.parametrize(
    "text, limit, exceeds",
    [
        ("[]", 1, False),
        ("[[]]", 1, True),
        ('{"a": [1, {"b": 2}]}', 3, False),
        ('{"a": [1, {"b": 2}]}', 2, True),
        ("[[], [], [], []]", 2, False),  # siblings do not add up
        ('["[[[[[[", "{{{{{{{{"]', 1, False),  # brackets in strings do not count
        (r'["\"[[[[[[[", "\\", [[]]]', 3, False),  # nor do they after escaped quotes and backslashes
        (r'["\"[[[[[[[", "\\", [[]]]', 2, True),
        ('"[[[[[[[[', 1, False),  # unterminated string: the parser's problem, not a depth
        ("]]]][[", 1, True),  # stray closers never give credit
        ("", 1, False),
    ],
)
def test_raw_scan(text, limit, exceeds):
    assert json_nesting_exceeds(text.encode(), limit) is exceeds


def test_raw_scan_matches_the_parsed_depth_at_the_limit():
    for depth in (31, 32, 33):
        text = json.dumps({"v": "x"})
        for _ in range(depth - 1):
            text = '[{"k": "]}"}, ' + text + "]"
        assert json_nesting_exceeds(text.encode(), 32) is (depth > 32)


def test_raw_scan_is_linear_and_never_recursive():
    start = time.perf_counter()
    assert json_nesting_exceeds(b"[" * 1_000_000, 32) is True
    assert json_nesting_exceeds(b"[]," * 330_000, 32) is False
    assert json_nesting_exceeds(b'"' + b"[" * 1_000_000 + b'"', 32) is False
    assert time.perf_counter() - start < 2


def test_document_scan():
    value: object = 1
    for level in range(MAX_LAYERS_DEPTH):
        value = [value] if level % 2 else {"k": value}
    assert nesting_exceeds(value, MAX_LAYERS_DEPTH) is False
    assert nesting_exceeds([value], MAX_LAYERS_DEPTH) is True
    assert nesting_exceeds("scalar", 0) is False
    deep: object = []
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    assert nesting_exceeds(deep, MAX_LAYERS_DEPTH) is True


def test_layers_bounds_in_the_document():
    nested: object = 1
    for _ in range(MAX_LAYERS_DEPTH):
        nested = {"a": nested}
    with pytest.raises(ValidationFailed) as caught:
        validate_document({"pal_name": "x", "layers": {"n": nested}})
    assert caught.value.field == "layers" and "nested deeper than" in caught.value.message
    with pytest.raises(QuotaExceeded) as quota:
        validate_document({"pal_name": "x", "layers": {"notes": "x" * 100}}, max_layers_bytes=100)
    assert quota.value.code == "QUOTA_EXCEEDED" and "MAX_LAYERS_BYTES" in quota.value.message
    assert validate_document({"pal_name": "x", "layers": {"notes": "x" * 80}}, max_layers_bytes=100)
    with pytest.raises(ValidationFailed) as nan:
        validate_document({"pal_name": "x", "layers": {"n": float("nan")}})
    assert nan.value.field == "layers"
