"""A short, seeded round of tests/fuzz.py for every network parser; run it longer with
`python -m tests.fuzz --seconds 600`."""

from __future__ import annotations

import random

import pytest
from tests.fuzz import TARGETS, Target, fuzz

ITERATIONS = {"dtls": 1500}
"""DTLS inputs reach OpenSSL in a fresh session each: fewer, to keep the suite short."""


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_every_input_parses_or_is_rejected_as_documented(target: Target) -> None:
    parsed, rejected = fuzz(target, random.Random(20261201),
                            iterations=ITERATIONS.get(target.name, 20_000))
    # Both paths are exercised, not only the first check that refuses.
    assert parsed > 0 and rejected > 0, (parsed, rejected)
