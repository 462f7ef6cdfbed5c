"""The package's imports flow one way (languages -> posterior -> plans & policies -> sampling /
exact / likelihood -> metrics -> theory): read from the source with ``ast``, every import
counted, at module level or inside a function, and followed through the package's own modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mdm_exact"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def direct_imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (``from a import b`` counts both a and
    a.b, since b may be a module; ``from . import b`` only b), including imports inside
    functions and ``importlib.import_module("...")`` calls with a literal name."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            if node.module:
                found.add(origin)
            found.update(f"{origin}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):
            found.add(str(node.args[0].value))
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
IMPORTS = {name: {m for m in direct_imports(p) if m in MODULES and m != "mdm_exact"}
           for name, p in MODULES.items()}
"""Package modules each module imports directly (the package root, which every submodule
import runs first, is left out: it imports everything)."""


def reachable(name: str) -> set[str]:
    """Package modules ``name`` imports, directly or through other package modules."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for dep in IMPORTS[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_the_import_reader_sees_known_imports():
    """The reader is not vacuous: it finds a lazy import, a relative one and a chain."""
    assert "mdm_exact.posterior" in IMPORTS["mdm_exact.languages"]
    assert "mdm_exact.posterior" in IMPORTS["mdm_exact.sampling"]
    assert "mdm_exact.errors" in IMPORTS["mdm_exact._utils"]
    assert "mdm_exact.errors" in reachable("mdm_exact.posterior")
    assert "mdm_exact.languages" in reachable("mdm_exact.sampling")


@pytest.mark.parametrize(("importer", "forbidden"), [
    ("mdm_exact.posterior", "mdm_exact.languages"),
    ("mdm_exact.schedules", "mdm_exact.sampling"),
    ("mdm_exact.policies", "mdm_exact.sampling"),
    ("mdm_exact.exact", "mdm_exact.theory"),
])
def test_imports_flow_one_way(importer, forbidden):
    """The posterior engine works on arrays a language hands it; a plan or policy never imports
    the sampler; the exact engine never imports the theory (docs: the package layout)."""
    bad = sorted(m for m in reachable(importer) if m == forbidden or m.startswith(forbidden + "."))
    assert not bad, f"{importer} imports {bad} (directly: {sorted(IMPORTS[importer])})"
