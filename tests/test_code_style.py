"""Style limits (issue 16): ruff lint + format, and size limits on the shipped Python.

- ``ruff check`` and ``ruff format --check`` pass on the whole repository, with the
  configuration in pyproject.toml's ``[tool.ruff]`` (skipped, with the reason, when ruff is
  not installed: it is in the ``dev`` extra);
- no Python file over ``MAX_FILE_LINES`` lines and no function over ``MAX_FUNCTION_LINES`` lines
  in export/, runtime/ and pocketgan/ (tests and benchmarks excepted).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
LIMITED = ("export", "runtime", "pocketgan")
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


def _ruff() -> list[str]:
    """The ruff command: the venv's own (beside this interpreter), else one on PATH."""
    beside = Path(sys.executable).with_name("ruff")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed: pip install -e '.[dev]' (ruff is in the dev extra)")
    return [found]


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["ruff-check", "ruff-format"])
def test_ruff(args):
    cmd = _ruff() + args + ["--output-format", "concise", "--no-cache", "."]
    r = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"`ruff {' '.join(args)} .` found problems:\n{r.stdout[-8000:]}\n{r.stderr[-2000:]}"


def limited_sources() -> list[Path]:
    """Every .py file under export/, runtime/ and pocketgan/ (caches left out)."""
    return sorted(p for top in LIMITED for p in (REPO_ROOT / top).rglob("*.py") if "__pycache__" not in p.parts)


def _shown(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else path.name


def file_length_offenders(paths: list[Path], limit: int = MAX_FILE_LINES) -> list[str]:
    """'path: N lines' for each file longer than ``limit`` lines."""
    out = []
    for p in paths:
        n = len(p.read_text(encoding="utf-8").splitlines())
        if n > limit:
            out.append(f"{_shown(p)}: {n} lines")
    return out


def function_length_offenders(paths: list[Path], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """'path:line name: N lines' for each function or method (nested ones too) longer than
    ``limit`` lines, counted from its first decorator to its last line, docstring included."""
    out = []
    for p in paths:
        tree = ast.parse(p.read_text(encoding="utf-8"), filename=str(p))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                n = node.end_lineno - first + 1
                if n > limit:
                    out.append(f"{_shown(p)}:{node.lineno} {node.name}: {n} lines")
    return out


def test_the_size_checks_can_fail(tmp_path):
    """Both checks find a long file and a long function, nested or decorated, and pass short ones."""
    probe = tmp_path / "probe.py"
    probe.write_text("@staticmethod\ndef outer():\n    def inner():\n" + "        x = 1\n" * 5 + "    return inner\n")
    assert file_length_offenders([probe], limit=8) == ["probe.py: 9 lines"]
    assert file_length_offenders([probe], limit=9) == []
    assert function_length_offenders([probe], limit=5) == ["probe.py:2 outer: 9 lines", "probe.py:3 inner: 6 lines"]
    assert function_length_offenders([probe], limit=9) == []


def test_no_python_file_over_500_lines():
    offenders = file_length_offenders(limited_sources())
    assert not offenders, f"files over {MAX_FILE_LINES} lines in {', '.join(LIMITED)}/:\n" + "\n".join(offenders)


def test_no_function_over_80_lines():
    offenders = function_length_offenders(limited_sources())
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines in {', '.join(LIMITED)}/:\n" + "\n".join(
        offenders
    )
