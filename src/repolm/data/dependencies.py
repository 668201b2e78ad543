"""File dependencies inside one repository, and the paper's Algorithm 1 order of its files.

DeepSeek-Coder (paper section 2.2, Algorithm 1) parses only invocation relations between the files of a repository,
with regular expressions (`import` in Python, `using` in C#, `#include` in C), and orders each weakly connected
group of files so that a file's dependencies come before it: repeatedly take the unplaced file with the smallest
current in-degree (ties at random), which also breaks cycles. Here:

- `extract_imports` finds a file's raw import targets (comments skipped; in Python strings too);
  `extract_declarations` finds the package/namespace a Java, C# or PHP file declares, or a go.mod's module path.
- `ImportResolver` maps each target to files of the same repository (indexes built once per repository, then one
  dict lookup per candidate name); `resolve_dependencies` gives every file's in-repository dependencies.
- `dependency_order` is Algorithm 1 (heap with lazy entries, O((V+E) log V)), with an optional cycle-aware
  variant; `dependency_cycles` lists the strongly connected components (iterative Tarjan) for reports.

Resolution in short: Python relative imports from the package folder, absolute names against every package root
(a folder without `__init__.py`); Java classes by package path suffix, wildcards and same-package names; C#
`using` by declared namespace; C/C++ quoted includes next to the includer, then any include by path suffix;
JavaScript/TypeScript relative specifiers with extensions and index files; Go import paths under go.mod's module;
Rust `mod`/`use` paths to a.rs or a/mod.rs below the crate root; PHP include paths and PSR-4 class names; Ruby
`require_relative` next to the file and `require` on the load path (the root and lib/).

Not handled: anything that needs a compiler or the build configuration (include paths, sys.path, tsconfig path
aliases, Cargo workspaces, `#[path]` attributes, conditional compilation), calls that cross languages, and
imports of packages outside the repository (those simply resolve to nothing).
"""

from __future__ import annotations

import heapq
import posixpath
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from repolm.data.records import CodeFile

# The paper's five languages (issue #43) and six more whose imports name files as plainly.
DEPENDENCY_LANGUAGES = frozenset(
    {"Python", "Java", "C#", "C", "C++", "JavaScript", "TypeScript", "Go", "Rust", "PHP", "Ruby"}
)
# Languages whose files may import each other (a C file includes C++ headers, a TypeScript file imports JavaScript).
_FAMILY = {"C": "C", "C++": "C", "JavaScript": "JS", "TypeScript": "JS"}
_JS_EXTENSIONS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")

# --- comments and strings: one scanner per language; comments are blanked, strings kept (Python: blanked too) ---
# Unrolled loops (no lazy quantifiers, no groups) keep the scan at tens of MB/s.
_LINE_COMMENT, _HASH_COMMENT = r"//[^\n]*", r"#[^\n]*"
_BLOCK_COMMENT = r"/\*[^*]*\*+(?:[^/*][^*]*\*+)*/"
_DOUBLE_QUOTED = r'"[^"\\\n]*(?:\\[\s\S][^"\\\n]*)*"'
_SINGLE_QUOTED = r"'[^'\\\n]*(?:\\[\s\S][^'\\\n]*)*'"
_BACKTICK_QUOTED = r"`[^`\\]*(?:\\[\s\S][^`\\]*)*`"
_TRIPLE_QUOTED = r'"""[^"\\]*(?:(?:\\[\s\S]|"(?!""))[^"\\]*)*"""|' + r"'''[^'\\]*(?:(?:\\[\s\S]|'(?!''))[^'\\]*)*'''"
_C_LIKE = (_DOUBLE_QUOTED, _SINGLE_QUOTED, _LINE_COMMENT, _BLOCK_COMMENT)
_SCANNERS = {
    language: re.compile("|".join(parts), re.M)
    for language, parts in {
        "Python": (_TRIPLE_QUOTED, _DOUBLE_QUOTED, _SINGLE_QUOTED, _HASH_COMMENT),
        "Java": _C_LIKE,
        "C#": _C_LIKE,
        "C": _C_LIKE,
        "C++": _C_LIKE,
        "JavaScript": (*_C_LIKE, _BACKTICK_QUOTED),
        "TypeScript": (*_C_LIKE, _BACKTICK_QUOTED),
        "Go": (_DOUBLE_QUOTED, _BACKTICK_QUOTED, _LINE_COMMENT, _BLOCK_COMMENT),
        "Rust": (_DOUBLE_QUOTED, _LINE_COMMENT, _BLOCK_COMMENT),  # no '...': lifetimes look like quotes
        "PHP": (*_C_LIKE, _HASH_COMMENT),
        "Ruby": (_DOUBLE_QUOTED, _SINGLE_QUOTED, _HASH_COMMENT, r"^=begin\b(?:[^\n]*\n)*?=end\b[^\n]*"),
    }.items()
}


def _blank_comment(match: re.Match[str]) -> str:
    text = match.group()
    return text if text[0] in "\"'`" else "\n" * text.count("\n") or " "


def _blank_all(match: re.Match[str]) -> str:
    return "\n" * match.group().count("\n") or " "


def code_text(text: str, language: str) -> str:
    """The text with comments replaced by blanks (line breaks kept); Python strings are blanked as well."""
    scanner = _SCANNERS.get(language)
    if scanner is None:
        return text
    return scanner.sub(_blank_all if language == "Python" else _blank_comment, text)


# --- import statements, matched on `code_text` -----------------------------------------------------------------
_PY_IMPORT = re.compile(r"(?:^|;)[ \t]*import[ \t]+([\w. \t,]+)", re.M)
_PY_FROM = re.compile(r"(?:^|;)[ \t]*from[ \t]+(\.*[\w.]*)[ \t]*import[ \t]*(\([^)]*\)|[\w*. \t,]+)", re.M)
_JAVA_IMPORT = re.compile(r"^[ \t]*import[ \t]+(?:static[ \t]+)?([\w.]+(?:[ \t]*\.[ \t]*\*)?)[ \t]*;", re.M)
_JAVA_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([\w.]+)[ \t]*;", re.M)
_CSHARP_USING = re.compile(
    r"^[ \t]*(?:global[ \t]+)?using[ \t]+(?:static[ \t]+)?(?:\w+[ \t]*=[ \t]*)?([\w.]+)[ \t]*;", re.M
)
_CSHARP_NAMESPACE = re.compile(r"^[ \t]*namespace[ \t]+([\w.]+)", re.M)
# Starts at the "#" (a literal first character the regex engine can search for fast); a line with more than blanks
# in front of the "#" is dropped after the match.
_C_INCLUDE = re.compile(r'#[ \t]*(?:include|include_next|import)[ \t]*(<[^>\n]+>|"[^"\n]+")')
_JS_IMPORTS = re.compile(
    r"""\bimport\s*(?:type\s+)?(?:[\w$*{}\s,]+?\s*from\s*)?["']([^"'\n]+)["']"""
    r"""|\bexport\s*(?:type\s+)?[\w$*{}\s,]+?\s*from\s*["']([^"'\n]+)["']"""
    r"""|\b(?:import|require)\s*\(\s*["'`]([^"'`\n]+)["'`]\s*\)"""
)
_GO_IMPORT = re.compile(r'^[ \t]*import[ \t]*(?:\(([^)]*)\)|(?:[\w.]+[ \t]+)?"([^"\n]+)")', re.M)
_GO_MODULE = re.compile(r"^[ \t]*module[ \t]+\"?([^\s\"]+)", re.M)
_QUOTED = re.compile(r"""["'`]([^"'`\n]*)["'`]""")
_RUST_MOD = re.compile(r"^[ \t]*(?:pub(?:[ \t]*\([^)]*\))?[ \t]+)?mod[ \t]+(\w+)[ \t]*;", re.M)
_RUST_USE = re.compile(r"^[ \t]*(?:pub(?:[ \t]*\([^)]*\))?[ \t]+)?use[ \t]+([^;]+);", re.M)
_PHP_REQUIRE = re.compile(
    r"""\b(?:require|include)(?:_once)?\b[ \t]*\(?[ \t]*"""
    r"""((?:__DIR__|dirname[ \t]*\([ \t]*__FILE__[ \t]*\)|["'])[^;\n]*)"""
)
_PHP_USE = re.compile(r"^[ \t]*use[ \t]+(?:function[ \t]+|const[ \t]+)?([^;(]+);", re.M)
_PHP_NAMESPACE = re.compile(r"^[ \t]*namespace[ \t]+([\w\\]+)[ \t]*[;{]", re.M)
_RUBY_REQUIRE = re.compile(r"""(?:^|;)[ \t]*(require|require_relative|load)[ \t]*\(?[ \t]*["']([^"'\n]+)["']""", re.M)
_ALIAS = re.compile(r"\s+as\s+\w+")
# bytes.translate turns everything but ASCII letters, digits, "_", "$" and non-ASCII bytes into spaces: a word set
# at C speed, several times faster than a regex findall.
_WORD_BYTES = bytes(byte if chr(byte).isalnum() or byte in b"_$" or byte > 127 else 32 for byte in range(256))


def _words(code: str) -> set[bytes]:
    """The identifiers of a text, as UTF-8 bytes."""
    return set(code.encode("utf-8", "surrogatepass").translate(_WORD_BYTES).split())


def _stem(path: str) -> bytes:
    """A file's name without extension, as UTF-8 bytes (the class/type a Java or C# file is named after)."""
    return posixpath.splitext(posixpath.basename(path))[0].encode("utf-8", "surrogatepass")


def _names(group: str) -> list[str]:
    """The first word of each comma-separated item (`a.b as c, d` -> a.b, d)."""
    return [item.split()[0] for item in group.strip("() \t\n").split(",") if item.strip()]


def _expand_braces(tree: str, separator: str) -> list[str]:
    """Rust/PHP group imports: `a::{b, c::{d, self}}` -> a::b, a::c::d, a::c (aliases already removed)."""
    brace = tree.find("{")
    if brace < 0 or not tree.endswith("}"):
        return [tree] if tree else []
    head, body, parts, depth, start = tree[:brace], tree[brace + 1 : -1], [], 0, 0
    for position, char in enumerate(body):
        depth += (char == "{") - (char == "}")
        if char == "," and depth == 0:
            parts.append(body[start:position])
            start = position + 1
    parts.append(body[start:])
    expanded = []
    for part in parts:
        for path in _expand_braces(part, separator):
            expanded.append(head.rstrip(separator) if path == "self" else head + path)
    return expanded


def extract_imports(text: str, language: str) -> list[str]:
    """Raw import targets of a file, in text order, in each language's own notation.

    Python: dotted names with leading dots kept; `from a import b` gives "a.b" (the resolver falls back to "a"),
    `from . import x` gives ".x". Java: "a.b.C", "a.b.C.m" (static), "a.b.*". C#: the used namespace or type.
    C/C++: `"x.h"` as x.h, `<x.h>` as <x.h>. JavaScript/TypeScript: the module specifier. Go: the import path.
    Rust: paths such as "crate::a::b", "super::x"; `mod x;` gives "self::x". PHP: include paths (with "./" in front
    when built on __DIR__) and `use` class names "A\\B\\C". Ruby: `require` names; `require_relative` gets "./".
    Languages outside `DEPENDENCY_LANGUAGES` give [].
    """
    return _imports_in_code(code_text(text, language), language) if language in DEPENDENCY_LANGUAGES else []


def _imports_in_code(code: str, language: str) -> list[str]:
    targets: list[str] = []
    if language == "Python":
        code = code.replace("\\\r\n", " ").replace("\\\n", " ")
        found = [(m.start(), _names(m.group(1))) for m in _PY_IMPORT.finditer(code)]
        for match in _PY_FROM.finditer(code):
            module, names = match.group(1), _names(match.group(2))
            joined = [module + ("" if module.endswith(".") or not module else ".") + name for name in names]
            found.append(
                (match.start(), [module if name == "*" else path for name, path in zip(names, joined, strict=True)])
            )
        targets = [name for _, names in sorted(found) for name in names]
    elif language == "Java":
        targets = [re.sub(r"\s", "", match) for match in _JAVA_IMPORT.findall(code)]
    elif language == "C#":
        targets = _CSHARP_USING.findall(code)
    elif language in ("C", "C++"):
        for match in _C_INCLUDE.finditer(code):
            if not code[code.rfind("\n", 0, match.start()) + 1 : match.start()].strip(" \t"):
                target = match.group(1)
                targets.append(target if target[0] == "<" else target[1:-1])
    elif language in ("JavaScript", "TypeScript"):
        targets = [next(group for group in match if group) for match in _JS_IMPORTS.findall(code)]
    elif language == "Go":
        for group, single in _GO_IMPORT.findall(code):
            targets.extend(_QUOTED.findall(group) if group else [single])
    elif language == "Rust":
        found = [(m.start(), ["self::" + m.group(1)]) for m in _RUST_MOD.finditer(code)]
        for match in _RUST_USE.finditer(code):
            tree = "".join(_ALIAS.sub("", match.group(1)).split())
            found.append((match.start(), _expand_braces(tree, ":")))
        targets = [name for _, names in sorted(found) for name in names]
    elif language == "PHP":
        found = []
        for match in _PHP_REQUIRE.finditer(code):
            path = "".join(_QUOTED.findall(match.group(1)))
            if path and match.group(1)[0] not in "\"'":
                path = "./" + path.lstrip("/")
            found.append((match.start(), [path] if path else []))
        for match in _PHP_USE.finditer(code):
            for item in match.group(1).split(",") if "{" not in match.group(1) else [match.group(1)]:
                tree = "".join(_ALIAS.sub("", item).split()).lstrip("\\")
                found.append((match.start(), _expand_braces(tree, "\\")))
        targets = [name for _, names in sorted(found) for name in names]
    elif language == "Ruby":
        for keyword, name in _RUBY_REQUIRE.findall(code):
            relative = keyword == "require_relative" and not name.startswith((".", "/"))
            targets.append("./" + name if relative else name)
    return targets


def extract_declarations(text: str, language: str) -> list[str]:
    """The namespaces a file declares: Java `package`, C# `namespace` (file-scoped or block), PHP `namespace`;
    for a go.mod file (language "Go"), its module path."""
    pattern = {"Java": _JAVA_PACKAGE, "C#": _CSHARP_NAMESPACE, "PHP": _PHP_NAMESPACE, "Go": _GO_MODULE}.get(language)
    return pattern.findall(code_text(text, language)) if pattern else []


# --- resolution ---------------------------------------------------------------------------------------------------
def _closest(candidates: list[str], importer: str) -> str:
    """The candidate sharing the most leading folders with the importer, then the shortest path, then by name."""
    if len(candidates) == 1:
        return candidates[0]
    folders = importer.split("/")[:-1]

    def rank(path: str) -> tuple[int, int, str]:
        parts = path.split("/")
        shared = 0
        for mine, theirs in zip(folders, parts[:-1], strict=False):
            if mine != theirs:
                break
            shared += 1
        return -shared, len(parts), path

    return min(candidates, key=rank)


def _suffix_index(keys: Iterable[tuple[list[str], str]]) -> dict[str, list[str]]:
    """Every trailing run of components ("a/b/c", "b/c", "c") -> the paths it names."""
    index: dict[str, list[str]] = defaultdict(list)
    for components, path in keys:
        for start in range(len(components)):
            bucket = index["/".join(components[start:])]
            if not bucket or bucket[-1] != path:
                bucket.append(path)
    return index


def _folder(path: str) -> str:
    return posixpath.dirname(path)


def _join(folder: str, relative: str) -> str | None:
    """Normalized repository path of `relative` seen from `folder`; None when it leaves the repository."""
    joined = posixpath.normpath(posixpath.join(folder, relative))
    if joined == ".":
        return ""
    return None if joined.startswith(("../", "/")) or joined == ".." else joined


def _without_parent_steps(name: str) -> str:
    """The normalized path without leading "../" and "/" (what is left to match as a suffix)."""
    name = posixpath.normpath(name).lstrip("/")
    while name.startswith("../"):
        name = name[3:]
    return name


class ImportResolver:
    """Resolves the raw imports of one repository's files to files of that repository.

    Indexes are built once, lazily per language family; each lookup is a few dict hits, so a repository costs
    O(files + imports). Only files of the importer's family are candidates (C with C++, JavaScript with
    TypeScript); a go.mod file (any language) gives Go its module path.
    """

    def __init__(self, files: list[CodeFile]) -> None:
        self.files = {file.path: file for file in files}
        self._family_paths: dict[str, set[str]] = defaultdict(set)
        for file in files:
            if file.language in DEPENDENCY_LANGUAGES:
                self._family_paths[_FAMILY.get(file.language, file.language)].add(file.path)
        self._code: dict[str, str] = {}
        self._indexes: dict[str, object] = {}
        self._picked: dict[tuple[int, str], str] = {}

    def _pick(self, candidates: list[str], importer: str) -> str:
        """`_closest`, remembered per index entry and importer folder (index lists live as long as the resolver)."""
        if len(candidates) == 1:
            return candidates[0]
        key = (id(candidates), _folder(importer))
        if key not in self._picked:
            self._picked[key] = _closest(candidates, importer)
        return self._picked[key]

    def code(self, path: str) -> str:
        """The file's text without comments (cached)."""
        if path not in self._code:
            self._code[path] = code_text(self.files[path].text, self.files[path].language)
        return self._code[path]

    def _declared(self, path: str) -> list[str]:
        file = self.files[path]
        pattern = {"Java": _JAVA_PACKAGE, "C#": _CSHARP_NAMESPACE, "PHP": _PHP_NAMESPACE}[file.language]
        return pattern.findall(self.code(path))

    def _index(self, name: str) -> Any:
        """The index `name`, built by `_build_<name>` on first use."""
        if name not in self._indexes:
            self._indexes[name] = getattr(self, f"_build_{name}")()
        return self._indexes[name]

    def _build_python(self) -> dict[str, list[str]]:
        """Module names: a/b/c.py is "a/b/c", and "b/c", "c" when the folder in front is no package (a root)."""
        paths = self._family_paths["Python"]
        packages = {_folder(path) for path in paths if path.rsplit("/", 1)[-1] in ("__init__.py", "__init__.pyi")}
        index: dict[str, list[str]] = defaultdict(list)
        for path in sorted(paths, key=lambda path: (path.endswith(".pyi"), path)):  # .py before .pyi
            components = posixpath.splitext(path)[0].split("/")
            if components[-1] == "__init__":
                components.pop()
            for start in range(len(components)):
                if start == 0 or "/".join(components[:start]) not in packages:
                    index["/".join(components[start:])].append(path)
        return index

    def _build_java(self) -> dict[str, dict[str, list[str]]]:
        classes, packages = [], defaultdict(list)
        for path in sorted(self._family_paths["Java"]):
            declared = self._declared(path)
            stem = posixpath.splitext(path)[0]
            classes.append((stem.split("/"), path))
            if declared:
                classes.append(([*declared[0].split("."), stem.rsplit("/", 1)[-1]], path))
            packages[declared[0] if declared else "/" + _folder(path)].append(path)
        return {"classes": _suffix_index(classes), "packages": packages}

    def _build_csharp(self) -> dict[str, dict[str, list[str]]]:
        types, namespaces = defaultdict(list), defaultdict(list)
        for path in sorted(self._family_paths["C#"]):
            for namespace in self._declared(path):
                namespaces[namespace].append(path)
                types[f"{namespace}.{posixpath.splitext(posixpath.basename(path))[0]}"].append(path)
        return {"types": types, "namespaces": namespaces}

    def _build_paths(self) -> dict[str, dict[str, list[str]]]:
        return {
            family: _suffix_index((path.split("/"), path) for path in sorted(self._family_paths[family]))
            for family in ("C", "PHP", "Ruby")
        }

    def _build_go(self) -> dict[str, object]:
        folders: dict[str, list[str]] = defaultdict(list)
        for path in sorted(self._family_paths["Go"]):
            if not path.endswith("_test.go"):
                folders[_folder(path)].append(path)
        modules = []
        for path, file in self.files.items():
            if posixpath.basename(path) == "go.mod":
                modules += [(module, _folder(path)) for module in _GO_MODULE.findall(file.text)]
        modules.sort(key=lambda module: (-len(module[0]), module))
        suffixes = _suffix_index((folder.split("/"), folder) for folder in sorted(folders) if folder)
        return {"folders": folders, "modules": modules, "suffixes": suffixes}

    def _build_php(self) -> dict[str, list[str]]:
        classes: dict[str, list[str]] = defaultdict(list)
        for path in sorted(self._family_paths["PHP"]):
            for namespace in self._declared(path):
                classes[f"{namespace}\\{posixpath.splitext(posixpath.basename(path))[0]}"].append(path)
        return classes

    def resolve_import(self, path: str, target: str) -> list[str]:
        """The repository files one raw import of `path` names (several for Java wildcards, C# namespaces and Go
        packages); [] when the target is outside the repository."""
        return self._resolve(path, target)[0]

    def _resolve(self, path: str, target: str) -> tuple[list[str], bool]:
        """(files, whether they are a whole package/namespace that `dependencies` narrows to the names used)."""
        language = self.files[path].language
        family = _FAMILY.get(language, language)
        return getattr(self, "_resolve_" + {"C#": "csharp"}.get(family, family.lower()))(path, target)

    def _resolve_python(self, path: str, target: str) -> tuple[list[str], bool]:
        """Relative imports from the package folder, absolute names by module index (no Python 2 implicit relative
        imports: `import subprocess` inside a package is the stdlib's), from the longest name down (`from a import
        b` is "a.b", then "a")."""
        dots = len(target) - len(target.lstrip("."))
        parts = [part for part in target[dots:].split(".") if part]
        base = _folder(path)
        for _ in range(dots - 1):
            if not base:
                return [], False
            base = _folder(base)
        modules, paths = self._index("python"), self._family_paths["Python"]
        for count in range(len(parts), -1 if dots else 0, -1):
            if not dots:
                if hits := modules.get("/".join(parts[:count])):
                    return [self._pick(hits, path)], False
                continue
            stem = posixpath.join(base, *parts[:count])
            endings = (".py", "/__init__.py", ".pyi", "/__init__.pyi") if count else ("/__init__.py",)
            for candidate in ((stem + ending).lstrip("/") for ending in endings):
                if candidate in paths:
                    return [candidate], False
        return [], False

    def _resolve_java(self, path: str, target: str) -> tuple[list[str], bool]:
        java = self._index("java")
        if target.endswith(".*") and target[:-2] in java["packages"]:
            return list(java["packages"][target[:-2]]), True
        parts = target.removesuffix(".*").split(".")
        for count in range(len(parts), 1, -1):  # a.b.C.m (static member, nested class) -> a.b.C
            if hits := java["classes"].get("/".join(parts[:count])):
                return [self._pick(hits, path)], False
        return [], False

    def _resolve_csharp(self, path: str, target: str) -> tuple[list[str], bool]:
        csharp = self._index("csharp")
        if target in csharp["namespaces"]:
            return list(csharp["namespaces"][target]), True
        return ([self._pick(csharp["types"][target], path)] if target in csharp["types"] else []), False

    def _resolve_c(self, path: str, target: str) -> tuple[list[str], bool]:
        """A quoted include next to the includer first; then, as for <x.h>, any file whose path ends with x.h."""
        name = target.strip("<>")
        if target[0] != "<" and (candidate := _join(_folder(path), name)) in self._family_paths["C"]:
            return [candidate], False
        hits = self._index("paths")["C"].get(_without_parent_steps(name))
        return ([self._pick(hits, path)] if hits else []), False

    def _resolve_js(self, path: str, target: str) -> tuple[list[str], bool]:
        """Relative specifiers only, as written, with an extension added, or as a folder's index file."""
        if not target.startswith((".", "/")) or (stem := _join(_folder(path), target)) is None:
            return [], False
        stems = [stem, re.sub(r"\.[mc]?jsx?$", "", stem)]  # TypeScript sources imported by their compiled name
        endings = ("", *_JS_EXTENSIONS, *(f"/index{extension}" for extension in _JS_EXTENSIONS))
        for candidate in (stem + ending for ending in endings for stem in stems):
            if candidate in self._family_paths["JS"] and candidate != path:
                return [candidate], False
        return [], False

    def _resolve_go(self, path: str, target: str) -> tuple[list[str], bool]:
        """A package path under a go.mod's module -> that folder's files; without go.mod, a folder whose path ends
        the import path (for paths that start with a domain, as GOPATH-era imports do)."""
        go = self._index("go")
        for module, module_folder in go["modules"]:
            if target == module or target.startswith(module + "/"):
                found = _join(module_folder, target[len(module) :].lstrip("/") or ".")
                return list(go["folders"].get(found or "", [])), True
        parts = target.split("/")
        if go["modules"] or "." not in parts[0]:
            return [], False
        for start in range(1, len(parts)):
            if hits := go["suffixes"].get("/".join(parts[start:])):
                return list(go["folders"][self._pick(hits, path)]), True
        return [], False

    def _resolve_php(self, path: str, target: str) -> tuple[list[str], bool]:
        """Include paths as files; class names by declared namespace, then PSR-4 style by path suffix."""
        if "/" in target or "." in target:
            return self._resolve_file(path, target, "PHP", ("",), load_path=False), False
        parts = target.split("\\")
        namespaces = self._declared(path)
        for name in ([f"{namespaces[0]}\\{target}"] if namespaces and len(parts) == 1 else []) + [target]:
            if hits := self._index("php").get(name):
                return [self._pick(hits, path)], False
        for start in range(len(parts)):  # a bare class name only when one file has that name
            hits = self._index("paths")["PHP"].get("/".join(parts[start:]) + ".php", [])
            if hits and (start < len(parts) - 1 or len(hits) == 1):
                return [self._pick(hits, path)], False
        return [], False

    def _resolve_ruby(self, path: str, target: str) -> tuple[list[str], bool]:
        return self._resolve_file(path, target, "Ruby", ("", ".rb"), load_path=True), False

    def _resolve_file(
        self, path: str, target: str, family: str, endings: tuple[str, ...], load_path: bool
    ) -> list[str]:
        """A path-like include: "./" targets from the importer's folder, others from the repository root; then any
        file whose path ends with it (with `load_path`, Ruby's: only at the root or right under a lib/ folder)."""
        paths = self._family_paths[family]
        if target.startswith(("./", "../")):
            folders = [_folder(path), ""]
        else:  # PHP's include_path "." then the including file's folder; Ruby's load path: the root and lib/
            folders = ["", "lib"] if load_path else ["", _folder(path)]
        for folder in folders:
            for ending in endings:
                if (candidate := _join(folder, target + ending)) in paths:
                    return [candidate]
        name = _without_parent_steps(target)
        for ending in endings:
            hits = self._index("paths")[family].get(name + ending, [])
            if load_path:  # a new list: not for `_pick`, which remembers index lists by identity
                hits = [hit for hit in hits if hit == name + ending or f"/{hit}".endswith(f"/lib/{name}{ending}")]
                if hits:
                    return [_closest(hits, path)]
            elif hits:
                return [self._pick(hits, path)]
        return []

    def _rust_root(self, path: str) -> str:
        """The crate root folder: the nearest folder above `path` holding lib.rs or main.rs ("" when none)."""
        folder = _folder(path)
        while True:
            if any(posixpath.join(folder, root) in self._family_paths["Rust"] for root in ("lib.rs", "main.rs")):
                return folder
            if not folder:
                return ""
            folder = _folder(folder)

    def _resolve_rust(self, path: str, target: str) -> tuple[list[str], bool]:
        """Module paths (crate::, self::, super::, or bare: below this module, else below the crate root) -> a.rs
        or a/mod.rs, from the longest path down (an item's path ends at its module's file)."""
        root = self._rust_root(path)
        own = re.sub(r"\.rs$", "", path[len(root) :].lstrip("/")).split("/")
        if own[-1] == "mod" or (len(own) == 1 and own[0] in ("lib", "main")):
            own.pop()
        segments = [segment for segment in target.split("::") if segment not in ("*", "")]
        if not segments or target.startswith("::"):
            return [], False
        bases, minimum = [own, []], 1  # a bare path: a module below this one, else below the crate root
        if segments[0] == "crate":
            bases, minimum, segments = [[]], 0, segments[1:]
        elif segments[0] == "self":
            bases, minimum, segments = [own], 0, segments[1:]
        elif segments[0] == "super":
            base = list(own)
            while segments and segments[0] == "super":
                if not base:
                    return [], False
                base.pop()
                segments = segments[1:]
            bases, minimum = [base], 0
        paths = self._family_paths["Rust"]
        for base in bases:
            for count in range(len(segments), minimum - 1, -1):
                module = posixpath.join(root, *base, *segments[:count]) if base or count else root
                names = ("lib.rs", "main.rs") if not base and not count else ()
                candidates = [posixpath.join(module, name) for name in names] or [module + ".rs", module + "/mod.rs"]
                for candidate in candidates:
                    if candidate.lstrip("/") in paths:
                        return [candidate.lstrip("/")], False
        return [], False

    def dependencies(self, path: str) -> set[str]:
        """The repository files `path` depends on (never itself).

        Whole-package hits (Java wildcards, C# `using` of a namespace) are narrowed to the files whose name is
        used as a word in the file, or kept whole when no name is; Java and C# files also depend on the files of
        their own package/namespace whose names they use (the implicit imports of those languages).
        """
        file = self.files[path]
        if file.language not in DEPENDENCY_LANGUAGES:
            return set()
        words: set[bytes] | None = None
        found: set[str] = set()
        for target in _imports_in_code(self.code(path), file.language):
            hits, whole_package = self._resolve(path, target)
            if whole_package and file.language in ("Java", "C#"):
                words = words if words is not None else _words(self.code(path))
                hits = [hit for hit in hits if _stem(hit) in words] or hits
            found.update(hits)
        if file.language in ("Java", "C#"):
            words = words if words is not None else _words(self.code(path))
            declared = self._declared(path)
            if file.language == "Java":
                group = self._index("java")["packages"].get(declared[0] if declared else "/" + _folder(path), [])
            else:
                namespaces = self._index("csharp")["namespaces"]
                group = [hit for namespace in declared for hit in namespaces.get(namespace, [])]
            found.update(hit for hit in group if _stem(hit) in words)
        found.discard(path)
        return found


def resolve_dependencies(files: list[CodeFile]) -> dict[str, set[str]]:
    """Each file's path -> the paths of the files of the same repository it depends on (never itself).

    `files` is one repository; files outside `DEPENDENCY_LANGUAGES` get an empty set (a go.mod among them still
    tells Go its module path).
    """
    resolver = ImportResolver(files)
    return {file.path: resolver.dependencies(file.path) for file in files}


# --- ordering -----------------------------------------------------------------------------------------------------
def dependency_order(
    paths: list[str], dependencies: Mapping[str, Iterable[str]], seed: str | int = 0, cycle_aware: bool = False
) -> list[list[str]]:
    """The paper's Algorithm 1: one sequence per weakly connected group of files, dependencies first.

    An edge B->A is added when A depends on B (dependencies outside `paths` and on itself are ignored). Within a
    group, the unplaced file with the smallest current in-degree is placed next and its successors' in-degrees
    drop by one; taking the minimum rather than zero is what lets cycles through. Ties go to a seeded random
    priority drawn for every file in sorted path order, so the result depends only on the graph and the seed, not
    on the input order. Groups come in the order of their smallest path. O((V + E) log V).

    Once no file of a group is free of unplaced dependencies (a cycle is left), the paper's rule may place any file
    with the smallest count, one far from the cycle included, before its dependencies. `cycle_aware=True` first
    requires all dependencies outside the file's own cycle (strongly connected component) to be placed, then
    applies the same rule: every dependency then precedes its dependent unless both are in one cycle. On acyclic
    graphs both give the same order.
    """
    nodes = sorted(set(paths))
    position = {node: index for index, node in enumerate(nodes)}
    edges = [
        (position[dependency], target)
        for target, dependent in enumerate(nodes)
        for dependency in sorted(set(dependencies.get(dependent, ())))
        if dependency in position and dependency != dependent
    ]
    component = list(range(len(nodes)))
    if cycle_aware:
        graph = {node: [] for node in nodes}
        for source, target in edges:
            graph[nodes[target]].append(nodes[source])
        for number, cycle in enumerate(dependency_cycles(graph)):
            for node in cycle:
                component[position[node]] = len(nodes) + number
    successors: list[list[int]] = [[] for _ in nodes]
    in_degree, outside = [0] * len(nodes), [0] * len(nodes)  # outside: unplaced dependencies not in its own cycle
    parent = list(range(len(nodes)))

    def find(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for source, target in edges:
        successors[source].append(target)
        in_degree[target] += 1
        outside[target] += component[source] != component[target]
        parent[find(source)] = find(target)
    generator = random.Random(str(seed))
    priority = [generator.random() for _ in nodes]
    groups: dict[int, list[int]] = defaultdict(list)
    for index in range(len(nodes)):  # nodes are sorted, so each group's first member is its smallest path
        groups[find(index)].append(index)
    placed = [False] * len(nodes)
    sequences = []
    for members in sorted(groups.values()):
        heap = [(outside[index], in_degree[index], priority[index], index) for index in members]
        heapq.heapify(heap)
        sequence = []
        while heap:
            waiting, degree, _, index = heapq.heappop(heap)
            if placed[index] or degree != in_degree[index] or waiting != outside[index]:
                continue  # a stale entry: the file was placed, or its counts dropped since it was pushed
            placed[index] = True
            sequence.append(nodes[index])
            for successor in successors[index]:
                if not placed[successor]:
                    in_degree[successor] -= 1
                    outside[successor] -= component[index] != component[successor]
                    heapq.heappush(heap, (outside[successor], in_degree[successor], priority[successor], successor))
        sequences.append(sequence)
    return sequences


def dependency_cycles(dependencies: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of the dependency graph with more than one file (or a file depending on
    itself), each sorted, in order of their first path; iterative Tarjan, so no recursion limit."""
    graph = {node: sorted(set(targets)) for node, targets in dependencies.items()}
    for targets in list(graph.values()):
        for target in targets:
            graph.setdefault(target, [])
    order: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for root in sorted(graph):
        if root in order:
            continue
        order[root] = lowest[root] = len(order)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(graph[root]))]
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in order:
                    order[successor] = lowest[successor] = len(order)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(graph[successor])))
                    break
                if successor in on_stack:
                    lowest[node] = min(lowest[node], order[successor])
            else:
                work.pop()
                if work:
                    lowest[work[-1][0]] = min(lowest[work[-1][0]], lowest[node])
                if lowest[node] == order[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph[node]:
                        cycles.append(sorted(component))
    return sorted(cycles)
