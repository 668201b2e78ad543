"""File dependencies inside one repository: which files of the repository each file imports.

DeepSeek-Coder (paper section 2.2, Algorithm 1) parses only invocation relations between the files of a repository,
with regular expressions (`import` in Python, `using` in C#, `#include` in C), and orders each weakly connected
group of files so that a file's dependencies come before it (the ordering, Algorithm 1 itself, and the import cycles
are in `repolm.data.dependency_order`). Here:

- `repolm.data.import_extraction` finds each file's raw import targets (`extract_imports`, comments skipped) and
  the package/namespace it declares (`extract_declarations`).
- `ImportResolver` maps each target to files of the same repository (indexes built once per repository, then one
  dict lookup per candidate name); `resolve_dependencies` gives every file's in-repository dependencies.

Resolution in short: Python relative imports from the package folder, absolute names against every package root
(a folder without `__init__.py`); Java classes by package path suffix, wildcards and same-package names; C#
`using` by declared namespace; C/C++ quoted includes next to the includer, then any include by path suffix;
JavaScript/TypeScript relative specifiers with extensions and index files; Go import paths under go.mod's module;
Rust `mod`/`use` paths to a.rs or a/mod.rs below the crate root; PHP include paths and PSR-4 class names; Ruby
`require_relative` next to the file and `require` on the load path (the root and lib/). Inside a package (Go: a
folder's files with one package clause; Java: a declared package; C#: a namespace), where names need no import, a
file depends on the files that declare a top-level name it uses (`repolm.data.package_names`, tree-sitter), and a
Go test file on its package's code.

Not handled: anything that needs a compiler or the build configuration (include paths, sys.path, tsconfig path
aliases, Cargo workspaces, `#[path]` attributes, conditional compilation), calls that cross languages, and
imports of packages outside the repository (those simply resolve to nothing).
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from repolm.data.import_extraction import (
    _CSHARP_NAMESPACE,
    _GO_MODULE,
    _GO_PACKAGE,
    _JAVA_PACKAGE,
    _PHP_NAMESPACE,
    DEPENDENCY_LANGUAGES,
    _imports_in_code,
    code_text,
)
from repolm.data.package_names import top_level_names
from repolm.data.records import CodeFile

# Languages whose files may import each other (a C file includes C++ headers, a TypeScript file imports JavaScript).
_FAMILY = {"C": "C", "C++": "C", "JavaScript": "JS", "TypeScript": "JS"}
_JS_EXTENSIONS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")

# bytes.translate turns everything but ASCII letters, digits, "_", "$" and non-ASCII bytes into spaces: a word set
# at C speed, several times faster than a regex findall.
_WORD_BYTES = bytes(byte if chr(byte).isalnum() or byte in b"_$" or byte > 127 else 32 for byte in range(256))


def _words(code: str) -> set[bytes]:
    """The identifiers of a text, as UTF-8 bytes."""
    return set(code.encode("utf-8", "surrogatepass").translate(_WORD_BYTES).split())


def _stem(path: str) -> bytes:
    """A file's name without extension, as UTF-8 bytes (the class/type a Java or C# file is named after)."""
    return posixpath.splitext(posixpath.basename(path))[0].encode("utf-8", "surrogatepass")


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

    def __init__(self, files: list[CodeFile], package_names: bool = True) -> None:
        """`package_names` False leaves out the edges of names inside packages (Java and C# then match file names
        only, Go has none): the resolver as it was before them, for measuring what they change."""
        self.files = {file.path: file for file in files}
        self.package_names = package_names
        self._family_paths: dict[str, set[str]] = defaultdict(set)
        for file in files:
            if file.language in DEPENDENCY_LANGUAGES:
                self._family_paths[_FAMILY.get(file.language, file.language)].add(file.path)
        self._code: dict[str, str] = {}
        self._names: dict[str, frozenset[bytes]] = {}
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

    def names(self, path: str) -> frozenset[bytes]:
        """The top-level names a Go, Java or C# file declares (`repolm.data.package_names`), with its file name's
        stem for Java and C# (the class it is named after); cached."""
        if path not in self._names:
            file = self.files[path]
            names = top_level_names(file.text, file.language) if self.package_names else frozenset()
            self._names[path] = names | {_stem(path)} if file.language in ("Java", "C#") else names
        return self._names[path]

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
        packages: dict[tuple[str, str], list[str]] = defaultdict(list)
        package_of: dict[str, tuple[str, str]] = {}
        for path in sorted(self._family_paths["Go"]):
            clause = _GO_PACKAGE.search(self.code(path))  # the comment-free text: no second parse
            package_of[path] = (_folder(path), clause.group(1) if clause else "")
            packages[package_of[path]].append(path)
            if not path.endswith("_test.go"):
                folders[_folder(path)].append(path)
        modules = []
        for path, file in self.files.items():
            if posixpath.basename(path) == "go.mod":
                modules += [(module, _folder(path)) for module in _GO_MODULE.findall(file.text)]
        modules.sort(key=lambda module: (-len(module[0]), module))
        suffixes = _suffix_index((folder.split("/"), folder) for folder in sorted(folders) if folder)
        return {
            "folders": folders,
            "modules": modules,
            "suffixes": suffixes,
            "packages": packages,
            "package_of": package_of,
        }

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
            if module == "std" and "." not in target.split("/")[0]:  # Go's own tree: bare paths ("net/http")
                found = _join(module_folder, target)
                if found in go["folders"]:
                    return list(go["folders"][found]), True
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

    def _package(self, path: str) -> list[str]:
        """The files of `path`'s own package: Java's declared package (else its folder), C#'s namespaces, Go's folder
        and package clause."""
        file = self.files[path]
        if file.language == "Java":
            declared = self._declared(path)
            return self._index("java")["packages"].get(declared[0] if declared else "/" + _folder(path), [])
        if file.language == "C#":
            namespaces = self._index("csharp")["namespaces"]
            return [hit for namespace in self._declared(path) for hit in namespaces.get(namespace, [])]
        go = self._index("go")
        return go["packages"].get(go["package_of"].get(path), [])

    def dependencies(self, path: str) -> set[str]:
        """The repository files `path` depends on (never itself).

        Whole-package hits (Java wildcards, C# `using` of a namespace) are narrowed to the files that declare a
        top-level name used as a word in the file, or kept whole when no name is. Java, C# and Go files also depend
        on the files of their own package/namespace whose top-level names they use (names need no import there:
        `names`), and a Go test file (`_test.go`) on the package's other files, so tests follow their code.
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
                hits = [hit for hit in hits if self.names(hit) & words] or hits
            found.update(hits)
        if file.language in ("Java", "C#", "Go"):
            words = words if words is not None else _words(self.code(path))
            found.update(hit for hit in self._package(path) if hit != path and self.names(hit) & words)
        if file.language == "Go" and path.endswith("_test.go") and self.package_names:  # tests after their code
            found.update(self._index("go")["folders"].get(_folder(path), []))
        found.discard(path)
        return found


def resolve_dependencies(files: list[CodeFile]) -> dict[str, set[str]]:
    """Each file's path -> the paths of the files of the same repository it depends on (never itself).

    `files` is one repository; files outside `DEPENDENCY_LANGUAGES` get an empty set (a go.mod among them still
    tells Go its module path).
    """
    resolver = ImportResolver(files)
    return {file.path: resolver.dependencies(file.path) for file in files}


def package_name_order(files: list[CodeFile], seed: object = 0) -> dict[str, Any]:
    """What names inside packages change in one repository's order: the edges only they give ("references": the
    resolver with `package_names` against without) and the import edges, each as (in order, counted) outside the
    cycles of the full graph, in the cycle-aware Algorithm 1 order without and with them. `removed_edges` counts
    edges of the old graph that the new one lacks (package names only add: 0). For `bench_package_order.py`."""
    from repolm.data.dependency_order import dependency_order, edges_in_order

    paths = [file.path for file in files]
    resolver_before, resolver = ImportResolver(files, package_names=False), ImportResolver(files)
    before = {path: resolver_before.dependencies(path) for path in paths}
    after = {path: resolver.dependencies(path) for path in paths}
    references = [(path, found) for path in paths for found in after[path] - before[path]]
    imports = [(path, found) for path in paths for found in before[path]]
    order_before = dependency_order(paths, before, seed=seed, cycle_aware=True)
    order_after = dependency_order(paths, after, seed=seed, cycle_aware=True)
    return {
        "files": len(files),
        "import_edges": len(imports),
        "reference_edges": len(references),
        "removed_edges": sum(len(before[path] - after[path]) for path in paths),
        "references_before": edges_in_order(references, order_before, after),
        "references_after": edges_in_order(references, order_after, after),
        "imports_after": edges_in_order(imports, order_after, after),
    }
