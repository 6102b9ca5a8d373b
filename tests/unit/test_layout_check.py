"""tools/layout_check.py finds cycles, private imports, long functions and layering breaches."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    script = REPO / "tools" / "layout_check.py"
    spec = importlib.util.spec_from_file_location("layout_check", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


layout_check = _load()


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in ("pipeline", "workers", "sandbox"):
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()
    return root


def test_cycle_through_a_function_level_import_is_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A module imported back inside a function closes a cycle: reported, FAIL line, exit 1."""
    root = _tree(tmp_path, {
        "pipeline/a.py": "import pipeline.b\n",
        "pipeline/b.py": "def later() -> None:\n    from pipeline import a\n",
        "pipeline/c.py": "from pipeline.a import thing\n",
    })
    report = layout_check.measure(root)
    assert report.cycles == [["pipeline.a", "pipeline.b"]]
    assert report.largest_cycle == 2
    assert report.function_level_imports == 1
    assert layout_check.main(["--root", str(root)]) == 1
    fails = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL:")]
    assert fails == ["FAIL: cycle: 2 modules import each other: pipeline.a, pipeline.b"]


def test_type_checking_import_cycle_is_ignored(tmp_path: Path) -> None:
    """An import back under ``if TYPE_CHECKING:`` never runs, so it does not close a cycle."""
    root = _tree(tmp_path, {
        "pipeline/a.py": "from pipeline.b import B\n",
        "pipeline/b.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from pipeline.a import A\n"
            "class B: ...\n"
        ),
    })
    report = layout_check.measure(root)
    assert report.cycles == []
    assert report.violations == []
    assert layout_check.main(["--root", str(root)]) == 0


def test_private_name_imported_from_another_module_is_flagged(tmp_path: Path) -> None:
    """``from a.b import _x`` is reported and fails; dunder names are not private."""
    root = _tree(tmp_path, {
        "pipeline/a.py": "__all__ = ['_helper']\ndef _helper() -> None: ...\n",
        "pipeline/b.py": "from pipeline.a import __all__, _helper\n",
    })
    report = layout_check.measure(root)
    assert report.private_imports == ["pipeline/b.py:1 pipeline.b imports _helper from pipeline.a"]
    assert any(v.startswith("private import:") for v in report.violations)


def test_largest_function_is_measured_from_def_to_end_of_body(tmp_path: Path) -> None:
    """Methods get a qualified name; lines run from the ``def`` line to the body's last line."""
    body = "".join(f"        x{i} = {i}\n" for i in range(120))
    root = _tree(tmp_path, {
        "workers/big.py": (
            "def small() -> None:\n    pass\n\n"
            "class Worker:\n"
            "    @staticmethod\n"
            f"    def run() -> None:\n{body}        return None\n"
        ),
    })
    report = layout_check.measure(root)
    largest = report.largest_function
    assert largest == {"name": "workers.big.Worker.run", "path": "workers/big.py",
                       "line": 6, "lines": 122}
    assert report.top_functions[1]["name"] == "workers.big.small"
    assert any("workers.big.Worker.run" in v for v in report.violations)
    assert layout_check.main(["--root", str(root), "--no-limits"]) == 0


def test_workers_may_import_pipeline_core_but_not_pipeline_ingest(tmp_path: Path) -> None:
    """workers → pipeline.ingest is a layering breach; workers → pipeline.core.* is allowed."""
    root = _tree(tmp_path, {
        "pipeline/core/__init__.py": "",
        "pipeline/core/model.py": "class Row: ...\n",
        "pipeline/ingest.py": "def load() -> None: ...\n",
        "workers/flow.py": (
            "from pipeline.core import model\n"
            "from pipeline.core.model import Row\n"
            "from pipeline.ingest import load\n"
        ),
    })
    report = layout_check.measure(root)
    assert report.cross_package_imports == [
        "workers/flow.py:3 workers.flow imports pipeline.ingest",
    ]
    assert layout_check.main(["--root", str(root)]) == 1


def test_real_repo_reports_every_figure_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    """On the repo itself ``--no-limits --json`` exits 0 and prints all the report's keys."""
    assert layout_check.main(["--root", str(REPO), "--no-limits", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures) >= {
        "modules", "total_lines", "largest_module", "top_modules", "largest_function",
        "top_functions", "cycles", "largest_cycle", "private_imports",
        "function_level_imports", "cross_package_imports", "violations",
    }
    assert figures["modules"] > 0


def test_quiet_prints_one_summary_line_and_the_fail_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """``--quiet`` (what ``make test`` runs) prints the summary and each breach, exit 1."""
    root = _tree(tmp_path, {
        "pipeline/a.py": "from pipeline.b import _hidden\n",
        "pipeline/b.py": "_hidden = 1\n",
    })
    assert layout_check.main(["--root", str(root), "--quiet"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("layout: ") and "private imports 1, breaches 1" in lines[0]
    assert len(lines) == 2 and lines[1].startswith("FAIL: private import:")
