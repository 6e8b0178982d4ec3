"""Runs the JavaScript unit tests (tests/js/*.test.mjs, node's built-in runner) so
that the project's pytest command covers them too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


def test_node_test_suite_passes() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed for the JavaScript tests: ./run test installs it")
    result = subprocess.run(
        [node, "--test", "tests/js/"],
        cwd=TESTS.parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"
