"""Unit tests run before the browser tests: once Playwright's sync API holds the
main thread's event loop, pytest-asyncio cannot run async tests in this process."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: "e2e" in item.path.parts)  # stable: order kept within each
