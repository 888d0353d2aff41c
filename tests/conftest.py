"""Test groups for parallel runs (pytest-xdist, `--dist loadgroup`, see scripts/test.sh).

Tests that share state run in one worker: the single-node lab's tests share one converged
lab; the three-host lab is its own group; each integration test file shares its server or
container; every molecule scenario is independent and the unit tests are one group."""
from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _group(path: Path) -> str:
    relative = path.relative_to(TESTS)
    top = relative.parts[0]
    if top == "lab":
        return "lab-three" if path.name == "test_three_tier.py" else "lab"
    if top == "integration":
        return "integration-" + path.stem
    if top == "unit":
        return "unit"
    return ""


def pytest_collection_modifyitems(config, items):
    for item in items:
        group = _group(Path(str(item.fspath)))
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
