"""The packages keep their layers: ``agent`` knows nothing of MLflow, Ray or the report;
``analysis`` reads MLflow and knows nothing of the runner or the report; ``reports`` reaches
MLflow only through ``analysis``; nothing but the benchmarks imports ``benchmarks``; no
project modules import each other in a circle (imports inside functions count too); and the
launcher's job records load neither torch nor the trainer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "ablations", "analysis", "reports", "benchmarks")

# What each package must not import: other project packages, and third-party packages.
FORBIDDEN = {
    "agent": {"ablations", "analysis", "reports", "benchmarks", "mlflow", "ray", "matplotlib"},
    "ablations": {"benchmarks"},
    "analysis": {"ablations", "reports", "benchmarks", "ray"},
    "reports": {"ablations", "benchmarks", "mlflow", "ray"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, modules: set[str]) -> set[str]:
    """Every module named by an import statement anywhere in the file: for ``from m import
    n``, ``m.n`` when that is one of ``modules`` (a submodule), else ``m``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                names.add(submodule if submodule in modules else node.module)
    return names


def project_modules() -> dict[str, set[str]]:
    """Module name -> every module it imports."""
    paths = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    return {name: imported_names(path, set(paths)) for name, path in sorted(paths.items())}


def import_graph(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (itself left out)."""
    return {
        name: {other for other in imported if other in modules and other != name}
        for name, imported in modules.items()
    }


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports (its modules in order, the first repeated last), or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for other in sorted(graph[node]):
            if state.get(other) == "open":
                return [*path[path.index(other) :], node, other] if other in path else [node, other]
            if other not in state:
                circle = visit(other, [*path, node])
                if circle:
                    return circle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            circle = visit(start, [])
            if circle:
                return circle
    return None


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_above_or_beside_its_layer(package: str) -> None:
    breaches = sorted(
        f"{name} imports {imported}"
        for name, names in project_modules().items()
        if name.split(".")[0] == package
        for imported in names
        if imported.split(".")[0] in FORBIDDEN[package]
    )
    assert not breaches, breaches


def test_no_modules_import_each_other_in_a_circle() -> None:
    assert find_circle(import_graph(project_modules())) is None


def test_the_circle_finder_finds_circles_of_two_and_three_and_none_in_a_chain() -> None:
    assert find_circle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond
    assert find_circle({"a": {"b"}, "b": set(), "c": {"d"}, "d": {"c"}}) == ["c", "d", "c"]


def test_the_job_records_and_the_plan_load_neither_torch_nor_the_trainer() -> None:
    # The driver and both launchers share these modules; the worker alone needs torch.
    probe = (
        "import sys, ablations.launch.jobs, ablations.launch.progress, ablations.plan.spec; "
        "print(sorted({'torch', 'agent.trainer'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout
