"""The shape of the package: lines per module and its largest units (functions, methods, classes).

    python benchmarks/house.py moldiff --json benchmarks/results/house_after.json
    python benchmarks/house.py /path/to/old/checkout/moldiff --top 15
"""
from __future__ import annotations

import ast
from pathlib import Path

from common import command_line, parser, write_json


def units(path: Path) -> list[tuple[str, int]]:
    """(qualified name, lines) of every function, method and class of a module."""
    tree = ast.parse(path.read_text())
    out = []

    def walk(node, prefix=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                out.append((name, child.end_lineno - child.lineno + 1))
                walk(child, name + ".")
    walk(tree)
    return out


def survey(root: Path, top: int) -> dict:
    modules = {}
    all_units = []
    for path in sorted(root.rglob("*.py")):
        rel = str(path.relative_to(root.parent))
        modules[rel] = len(path.read_text().splitlines())
        all_units += [(f"{rel}:{name}", n) for name, n in units(path)]
    largest = sorted(all_units, key=lambda u: -u[1])[:top]
    return {"root": str(root), "modules": modules, "total_lines": sum(modules.values()),
            "largest_units": [{"unit": u, "lines": n} for u, n in largest]}


def main() -> None:
    ap = parser(__doc__, json=None)
    ap.add_argument("root", type=Path, help="the package folder (e.g. moldiff)")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    out = survey(args.root, args.top)
    out["command"] = command_line()
    for mod, n in out["modules"].items():
        print(f"{n:5d}  {mod}")
    print(f"{out['total_lines']:5d}  total\nlargest units:")
    for u in out["largest_units"]:
        print(f"{u['lines']:5d}  {u['unit']}")
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
