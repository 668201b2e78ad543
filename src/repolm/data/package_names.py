"""The top-level names a source file declares, found with tree-sitter: the edges inside one package.

In Go, Java and C# the files of one package (or namespace) use each other's names without any import line, so
import parsing alone leaves their order to chance. `top_level_names` gives the names a file declares at its top
level (the file's own scope of the package), with the tree-sitter grammars the data pipeline already uses:
- Go: functions, types, variables and constants (`func F`, `type T`, `var v`, `const c`, grouped blocks too);
  methods are left out (they are called through a value, and names like `String` or `Len` are on every type),
  and so are `init`, `main` and `_` (files of one folder with the same package clause are one package, `x_test`
  packages external tests: `repolm.data.dependencies` reads the clause);
- Java: the top-level classes, interfaces, enums, records and annotation types;
- C#: the types declared in the file's namespaces (classes, structs, interfaces, enums, records, delegates).
Rust needs nothing here: each file is its own module, whose names other files reach through `use`/`mod` paths,
which `repolm.data.dependencies` resolves.

Not handled here: deciding which files depend on which (`repolm.data.dependencies` intersects these names with the
words of the other files of the package).
"""

from __future__ import annotations

from functools import cache
from typing import Any

PACKAGE_NAME_LANGUAGES = frozenset({"Go", "Java", "C#"})
_GRAMMARS = {"Go": "go", "Java": "java", "C#": "csharp"}
_GO_SKIPPED = frozenset({b"init", b"main", b"_"})
_JAVA_TYPES = frozenset(
    {"class_declaration", "interface_declaration", "enum_declaration", "record_declaration",
     "annotation_type_declaration"}
)  # fmt: skip
_CSHARP_TYPES = frozenset(
    {"class_declaration", "struct_declaration", "interface_declaration", "enum_declaration", "record_declaration",
     "record_struct_declaration", "delegate_declaration"}
)  # fmt: skip
_CSHARP_NAMESPACES = frozenset({"namespace_declaration", "file_scoped_namespace_declaration", "declaration_list"})


@cache
def _parser(grammar: str) -> Any:
    from tree_sitter_language_pack import get_parser

    return get_parser(grammar)  # type: ignore[arg-type]


def _root(text: str, language: str) -> Any:
    return _parser(_GRAMMARS[language]).parse(text.encode("utf-8", "surrogatepass")).root_node


def top_level_names(text: str, language: str) -> frozenset[bytes]:
    """The names `text` declares at its top level (UTF-8 bytes, as `repolm.data.dependencies` compares words);
    empty for a language outside `PACKAGE_NAME_LANGUAGES`. Syntax errors leave out what tree-sitter cannot place."""
    if language not in PACKAGE_NAME_LANGUAGES:
        return frozenset()
    root = _root(text, language)
    if language == "Go":
        names = _go_names(root)
    elif language == "Java":
        names = {_name(node) for node in root.children if node.type in _JAVA_TYPES}
    else:
        names = _csharp_names(root)
    names.discard(None)
    return frozenset(names)  # type: ignore[arg-type]


def _name(node: Any) -> bytes | None:
    name = node.child_by_field_name("name")
    return name.text if name is not None else None


def _go_names(root: Any) -> set[bytes | None]:
    names: set[bytes | None] = set()
    for node in root.children:
        if node.type == "function_declaration":
            names.add(_name(node))
        elif node.type in ("type_declaration", "var_declaration", "const_declaration"):
            stack = list(node.children)
            while stack:  # specs, possibly inside a parenthesized list
                child = stack.pop()
                if child.type in ("type_spec", "type_alias", "var_spec", "const_spec"):
                    names.update(name.text for name in child.children_by_field_name("name"))
                elif child.type.endswith("_list"):
                    stack.extend(child.children)
    return names - _GO_SKIPPED


def _csharp_names(root: Any) -> set[bytes | None]:
    names: set[bytes | None] = set()
    stack = list(root.children)
    while stack:
        node = stack.pop()
        if node.type in _CSHARP_TYPES:
            names.add(_name(node))
        elif node.type in _CSHARP_NAMESPACES:
            stack.extend(node.children)
    return names
