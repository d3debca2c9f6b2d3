"""Issue 24's size rule, checked: files in bot/ over 500 lines, and classes over 300 lines or
functions over 80 lines in bot/, cluster/, ipc/ and sandbox/ (a class or function counts from
its `class`/`def` line to its last line, decorators not included).

    .venv/bin/python tools/size_check.py [ROOT ...]

Prints one line per thing over its limit, with the first line of its docstring when it has one
(the rule allows an exception a docstring explains: read it), and exits 1 if anything is listed.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FILE_LIMIT, CLASS_LIMIT, FUNCTION_LIMIT = 500, 300, 80
ROOTS = ("bot", "cluster", "ipc", "sandbox")
FILE_ROOTS = ("bot",)  # the file limit is bot/'s


def over(path: Path, root: str) -> list[str]:
    source = path.read_text(encoding="utf-8")
    found = []
    lines = len(source.splitlines())
    if root in FILE_ROOTS and lines > FILE_LIMIT:
        found.append(f"{path}: file, {lines} lines (limit {FILE_LIMIT})")
    for node in ast.walk(ast.parse(source, str(path))):
        if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        is_class = isinstance(node, ast.ClassDef)
        limit = CLASS_LIMIT if is_class else FUNCTION_LIMIT
        if length > limit:
            doc = (ast.get_docstring(node) or "").split("\n")[0]
            what = "class" if is_class else "function"
            found.append(
                f"{path}:{node.lineno}: {what} {node.name}, {length} lines (limit {limit})"
                + (f"; docstring: {doc}" if doc else "; no docstring")
            )
    return found


def main(roots: list[str]) -> int:
    found = [
        line
        for root in roots or ROOTS
        for path in sorted(Path(root).rglob("*.py"))
        for line in over(path, root)
    ]
    print("\n".join(found) if found else "nothing over its limit")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
