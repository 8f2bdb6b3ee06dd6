"""The service does not depend on its clients: what `chalice package` ships
(app.py and chalicelib/) imports nothing from energy_client/, infra/, iot/,
tests/ or bench/, none of which is in the Lambda zip."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE_FILES = sorted([ROOT / "app.py", *(ROOT / "chalicelib").rglob("*.py")])
NOT_IN_THE_ZIP = ("energy_client", "infra", "iot", "tests", "bench")


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("path", SERVICE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_service_imports_nothing_that_is_left_out_of_its_package(path: Path) -> None:
    outside = {m for m in imported_modules(path) if m.split(".")[0] in NOT_IN_THE_ZIP}
    assert not outside, f"{path.relative_to(ROOT)} imports {sorted(outside)}"


def test_the_clients_are_out_of_chalicelib() -> None:
    assert not (ROOT / "chalicelib" / "cli").exists()
    assert not (ROOT / "chalicelib" / "client.py").exists()
    assert (ROOT / "energy_client" / "__main__.py").is_file()
