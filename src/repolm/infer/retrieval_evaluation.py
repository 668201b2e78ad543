"""Measuring repository retrieval: cursors whose needed definition lives in another file, and the hit rate.

`definition_cursors` finds, in a set of Python files (a repository or package), the calls of functions and classes
that another file of the set defines at its top level and the calling file imports by name: `foo(` after
`from .utils import foo`, or `utils.foo(` after `from . import utils` / `import pkg.utils as utils`. A name defined
at the top level of more than one file, or anywhere in the calling file, is left out (the answer would be
ambiguous). One cursor per (file, name), at the first call: either just after `foo(` ("call": the name is typed,
the arguments are next) or at the start of that call's line ("line": the whole line is still to write, so the
query holds only the lines before it).

`hit_rate` counts the cursors for which the chunk that holds the definition's `def`/`class` line is among the
snippets a retriever returns. `benchmarks/bench_retrieval.py` and `tests/infer/test_retrieval.py` use both.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from repolm.infer.retrieval import RepositoryRetriever

POSITIONS = ("call", "line")


@dataclass(frozen=True)
class DefinitionCursor:
    """A cursor in `path` whose completion needs `name`, defined at `definition_line` of `definition_path`."""

    path: str
    prefix: str
    suffix: str
    name: str
    definition_path: str
    definition_line: int


def _top_level_definitions(tree: ast.Module) -> dict[str, int]:
    return {
        node.name: node.lineno
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


def _all_definitions(tree: ast.Module) -> set[str]:
    """Every name the file defines (functions, classes, assignments at any depth) or binds otherwise than by
    importing it."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _imported_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(names imported from a module, local names bound to modules or packages)."""
    names, modules = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    names.add(alias.asname or alias.name)
                    modules.add(alias.asname or alias.name)  # `from . import utils` binds a module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                modules.add(alias.asname or alias.name.split(".")[0])
    return names, modules


def _offset(lines: list[str], line: int, column_bytes: int) -> int:
    """Character offset of a 1-based line and a UTF-8 byte column (as `ast` counts them)."""
    return sum(len(text) for text in lines[: line - 1]) + len(lines[line - 1].encode()[:column_bytes].decode())


def definition_cursors(files: Mapping[str, str], position: str = "call") -> list[DefinitionCursor]:
    """Cursors at calls of names that another of the Python `files` (path -> text) defines; see the module doc."""
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
    trees = {}
    for path, text in sorted(files.items()):
        if path.endswith(".py"):
            try:
                trees[path] = ast.parse(text)
            except (SyntaxError, ValueError):
                continue
    definers: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for path, tree in trees.items():
        for name, line in _top_level_definitions(tree).items():
            definers[name].append((path, line))
    cursors = []
    for path, tree in trees.items():
        local = _all_definitions(tree)
        names, modules = _imported_names(tree)
        lines = files[path].splitlines(keepends=True)
        calls = []
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            if isinstance(function, ast.Name) and function.id in names:
                name = function.id
            elif isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name):
                if function.value.id not in modules:
                    continue
                name = function.attr
            else:
                continue
            found = definers.get(name, [])
            if len(found) != 1 or found[0][0] == path or name in local:
                continue
            calls.append((function.end_lineno, function.end_col_offset, node.lineno, name, found[0]))
        done = set()
        for end_line, end_column, line, name, (definition_path, definition_line) in sorted(calls):
            if name in done or end_line is None or end_column is None:
                continue
            done.add(name)
            text = files[path]
            if position == "call":
                cut = _offset(lines, end_line, end_column) + 1  # after "name("
                if text[cut - 1 : cut] != "(":
                    continue
            else:
                cut = _offset(lines, line, 0)
            cursors.append(DefinitionCursor(path, text[:cut], text[cut:], name, definition_path, definition_line))
    return cursors


def is_hit(retriever: RepositoryRetriever, cursor: DefinitionCursor, top_k: int) -> bool:
    """Whether the chunk holding the definition line is among the `top_k` snippets retrieved for the cursor."""
    chunk_lines = retriever.config.chunk_lines
    return any(
        snippet.path == cursor.definition_path
        and snippet.start_line <= cursor.definition_line < snippet.start_line + chunk_lines
        for snippet in retriever.retrieve(cursor.path, cursor.prefix, cursor.suffix, top_k=top_k)
    )


def hit_count(retriever: RepositoryRetriever, cursors: list[DefinitionCursor], top_k: int = 5) -> int:
    """How many of the cursors are hits (`is_hit`)."""
    return sum(is_hit(retriever, cursor, top_k) for cursor in cursors)
