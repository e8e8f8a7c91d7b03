"""The house as a newcomer reads it: the module map matches the tree, the Development page's layers are the
import contract's, the size limits hold, and the tests keep one fake upstream."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPORTER = ROOT / "exporter"
TESTS = ROOT / "tests"
README = ROOT / "docs" / "development.md"  # the layout table is on the Development page
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# A longer function must say why in its docstring with these words (e.g. a hot loop).
LONG_ON_PURPOSE = "is long because"
MAP_ENTRY = re.compile(r"^- ``(\w+)``:", re.M)
TABLE_ROW = re.compile(r"^\| `exporter/(\w+)/` \|.*\| (.+) \|$", re.M)
BACKTICKED = re.compile(r"`(\w+)`")


def packages(under: Path = EXPORTER) -> list[Path]:
    return sorted(p.parent for p in under.glob("*/__init__.py"))


def contents(package: Path) -> set[str]:
    """The modules (``__init__`` aside) and subpackages of `package`."""
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    return modules | {p.name for p in packages(package)}


def docstring(package: Path) -> str:
    return ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""


def python_files() -> list[Path]:
    return sorted(EXPORTER.rglob("*.py"))


def readme_rows() -> dict[str, set[str]]:
    """{package: the packages its `imports` column names} from the README's layout table."""
    return {
        name: set(BACKTICKED.findall(imports))
        for name, imports in TABLE_ROW.findall(README.read_text())
    }


def readme_layers() -> list[set[str]]:
    (line,) = re.findall(r"^Layers, top to bottom: (.+?)\.\s", README.read_text(), re.M | re.S)
    return [set(BACKTICKED.findall(layer)) for layer in line.split("→")]


def contract_layers() -> list[set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [
        {name.strip().removeprefix("exporter.") for name in layer.split("|")}
        for layer in contract["layers"]
    ]


def imported_packages(package: Path) -> set[str]:
    """The other top-level packages of `exporter` that `package`'s modules import."""
    found = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found |= {n.split(".")[1] for n in names if n.startswith("exporter.") and "." in n}
    return found - {package.name}


# -- the map -------------------------------------------------------------------------------------


@pytest.mark.parametrize("package", [EXPORTER, *packages()], ids=lambda p: p.name)
def test_every_module_is_on_its_packages_map(package: Path) -> None:
    """Each package's docstring names each of its modules once, and nothing else."""
    named = MAP_ENTRY.findall(docstring(package))
    assert len(named) == len(set(named)), named
    # exporter/'s own subpackages are the stages: the README's table maps them (next test).
    stages = {p.name for p in packages()} if package == EXPORTER else set()
    assert set(named) == contents(package) - stages


def test_the_readme_table_names_every_stage_package() -> None:
    assert set(readme_rows()) == {p.name for p in packages()}


def test_the_readme_layers_are_the_import_contracts() -> None:
    assert readme_layers() == contract_layers()
    layered = set().union(*contract_layers())
    assert layered | {"simulator"} == {p.name for p in packages()}


def test_each_package_imports_only_what_its_row_names_and_only_downwards() -> None:
    rows, layers = readme_rows(), contract_layers()
    depth = {name: i for i, layer in enumerate(layers) for name in layer}
    for package in packages():
        named = rows[package.name]
        assert imported_packages(package) <= named, (package.name, imported_packages(package))
        if package.name in depth:
            below = {n for n in named if n != "simulator"}
            assert all(depth[n] > depth[package.name] for n in below), (package.name, named)


# -- the sizes ------------------------------------------------------------------------------------


def test_few_top_level_modules_and_the_stages_as_packages() -> None:
    top = list(EXPORTER.glob("*.py"))
    assert len(top) <= 6, top
    assert len(packages()) >= 5


def test_no_package_holds_more_than_16_modules() -> None:
    for package in packages():
        assert len(list(package.glob("*.py"))) - 1 <= 16, package


def test_no_module_is_over_400_lines() -> None:
    long = {}
    for path in python_files():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            long[str(path.relative_to(ROOT))] = lines
    assert not long


def test_no_function_is_over_80_lines_without_saying_why() -> None:
    long = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            first = min([d.lineno for d in node.decorator_list] + [node.lineno])
            lines = (node.end_lineno or node.lineno) - first + 1
            if lines > MAX_FUNCTION_LINES and LONG_ON_PURPOSE not in (
                ast.get_docstring(node) or ""
            ):
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long


# -- the tests ------------------------------------------------------------------------------------

# A GET route or an in-process mock registered in a module that spells out the emails path.
SERVES = re.compile(r"\.add_get\(|\.add_route\(|\bweb\.(?:get|route)\(|\bmocked\.get\(")


def test_exactly_one_module_in_tests_serves_the_emails_endpoint() -> None:
    serving = [
        str(path.relative_to(ROOT))
        for path in sorted(TESTS.rglob("*.py"))
        if "emailQueue" in (text := path.read_text()) and SERVES.search(text)
    ]
    assert serving == ["tests/fake_alvaria.py"]


def test_no_helper_module_imports_a_test_module() -> None:
    def is_test_module(name: str) -> bool:
        return name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_")

    for path in TESTS.rglob("*.py"):
        if path.name.startswith("test_"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not is_test_module(node.module), (path, node.module)
            elif isinstance(node, ast.Import):
                assert not any(is_test_module(a.name) for a in node.names), path
