"""rewards/ is a leaf: it never imports trl or rlvprm (DESIGN.md section 1)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_rewards_never_imports_trl_or_rlvprm():
    files = sorted((ROOT / "rewards").rglob("*.py"))
    assert files
    offenders = {str(f.relative_to(ROOT)): sorted(imported_modules(f) & {"trl", "rlvprm"}) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_trl_only_inside_rlvprm():
    for f in (ROOT / "rewards").rglob("*.py"):
        assert "trl" not in imported_modules(f)
