"""Building a cross-file completion benchmark, CrossCodeEval-style, from any repositories.

**Cursor lines.** In every file of a language with dependency parsing (`repolm.data.import_extraction.
DEPENDENCY_LANGUAGES`: Python, Java, C, C++, C#, JavaScript, TypeScript, Go, Rust, PHP, Ruby), a line qualifies when
it uses a name that a file it imports defines and that the file itself does not define:
- "imports": the data pipeline's dependency resolution (`repolm.data.dependencies.ImportResolver`: Python imports,
  Java imports and same-package classes, C/C++ includes, ...);
- "defines": `defined_names`, definitions read with regular expressions on the code without comments
  (`repolm.data.import_extraction.code_text`; Python strings blanked too): functions, classes, methods, types,
  structs, `#define` macros, top-level Python assignments, Java/C# members declared with a modifier (private ones
  left out: no other file sees them); names shorter than 3 characters and Python dunder names are left out;
- Python is stricter, because a bare name cannot come from another module unless imported by name: a bare name
  counts when a `from X import name` (or `from X import *`) of the file brings it from a file that defines it, an
  attribute (`module.name`, `self.method`, `obj.attribute`) when any imported file defines the name, and attributes
  the file assigns itself (`self.name = ...`) are its own;
- names inside string literals never count, nor, in Python, Java and C#, names that are also methods of the
  standard library's most used types (`append`, `read`, `get`, `equals`, `complete`, ...: without types,
  `items.append(x)` cannot be told from a cross-file use);
- left out: import/include/package/using lines (all the lines of one that spans several), lines that are comments
  or strings only (blank once comments and Python strings are blanked), targets with fewer than 3 non-space
  characters or no letter or digit, and, in the languages
  whose predictions cceval cuts at the first `;`, `{` or `}`, targets that cut would change (a perfect prediction of
  `for (i = 0; i < n; i++) {` could not score, `repolm.eval.crossfile.metrics.perfect_prediction_scores`).

**Examples.** As CrossCodeEval: the cursor sits at the start of the line, the prompt (left context) is the file up
to it, the target ("groundtruth") is the whole line without its line break, the right context the file after the
line break (kept for reference; the prompt never sees it). `prompt + groundtruth + line break + right_context` is
the file. Each example also records the cross-file names the line uses and their defining files (the oracle).

**Sampling**, deterministic for a seed: each repository's qualifying lines are shuffled with a generator seeded by
the seed and the repository's name (adding a repository does not change what another one gives) and cut to
`per_repository`; each language then takes its examples round-robin over its repositories, up to `per_language`
and up to an equal share of `max_examples`.

**Contexts**, fixed at build time, as CrossCodeEval ships its contexts with its prompts:
- "retrieval": `repolm.infer.retrieval.RepositoryRetriever` (the serving code's retriever) built over the
  repository's files without the current file, queried with the left context as the current file's text: nothing of
  the current file is indexed (its target cannot leak through a chunk or the BM25 statistics), and its imports are
  read from the left context only (CrossCodeEval retrieves from the other files of the repository);
- "oracle": the defining file(s) in 10-line chunks, the chunk that starts at the definition first (of every
  defining file, then the following chunks, then the preceding ones, the files interleaved), so that the prompt
  builder's context budget holds the definition and as much of its file as fits.

The benchmark folder (`repolm.folder_writer.write_folder`: complete or absent) holds `examples.jsonl` (one example
per line) and `meta.json` (counts per language, candidates found, seed, source, settings).
"""

from __future__ import annotations

import bisect
import io
import json
import logging
import os
import random
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repolm.errors import RepolmError
from repolm.eval.crossfile.metrics import KEYWORDS, perfect_prediction_scores
from repolm.folder_writer import write_folder

if TYPE_CHECKING:
    from repolm.data.dependencies import ImportResolver

logger = logging.getLogger(__name__)

EXAMPLES_FILE = "examples.jsonl"
META_FILE = "meta.json"
FORMAT_VERSION = 2
MAX_FILE_BYTES = 1 << 20
ORACLE_CHUNK_LINES = 10
LAYOUTS = ("auto", "repositories", "repository")
MIN_NAME_LENGTH = 3

Repository = tuple[str, Mapping[str, str]]
"""A repository in memory: (name, {repository-relative POSIX path: text})."""
Definition = tuple[str, str]
"""Where a name a line uses is defined: (the defining file's path, the name there; an `as` alias differs)."""

# Names a file defines, per language family: the name is the group "name" (patterns applied with re.M to the
# code without comments); a group "modifiers" holding "private" drops the match.
_JAVA_MODIFIERS = "public protected private static final abstract synchronized native default transient volatile"
_CSHARP_MODIFIERS = "public protected private internal static readonly virtual override abstract async sealed const"


def _member_pattern(modifiers: str, ends: str) -> str:
    """A member declared with at least one modifier: modifiers, a type, the name, then one of `ends`."""
    words = "|".join(modifiers.split())
    return rf"^[ \t]*(?P<modifiers>(?:(?:{words})\s+)+)[\w<>\[\]?,.\s]*?\b(?P<name>\w+)\s*[{ends}]"


_DEFINITIONS = {
    "Python": [
        r"^[ \t]*(?:async[ \t]+)?def[ \t]+(?P<name>\w+)",
        r"^[ \t]*class[ \t]+(?P<name>\w+)",
        r"^(?P<name>\w+)[ \t]*(?::[^=\n]*)?=(?!=)",
    ],
    "Java": [
        r"\b(?:class|interface|enum|record)\s+(?P<name>\w+)",
        _member_pattern(_JAVA_MODIFIERS, "(=;"),
    ],
    "C#": [
        r"\b(?:class|interface|enum|struct|record)\s+(?P<name>\w+)",
        _member_pattern(_CSHARP_MODIFIERS, "(=;{"),
    ],
    "C": [
        r"^[ \t]*#[ \t]*define[ \t]+(?P<name>\w+)",
        r"\b(?:struct|union|enum|class|namespace)[ \t]+(?P<name>\w+)",
        r"\btypedef\b[^;{]*?\b(?P<name>\w+)[ \t]*;",
        r"\}[ \t]*(?P<name>\w+)[ \t]*;",  # typedef struct { ... } name;
        r"^(?:extern[ \t]+|static[ \t]+|inline[ \t]+)*[A-Za-z_][\w \t\*]*?\b(?P<name>\w+)[ \t]*\([^;{]*\)[ \t\n]*[;{]",
    ],
    "JS": [
        r"\b(?:function\*?|class|interface|type|enum)\s+(?P<name>\w+)",
        r"\b(?:const|let|var)\s+(?P<name>\w+)\s*=",
        r"^[ \t]+(?:(?:static|async|public|protected|readonly)\s+)*(?P<name>\w+)\s*\([^)\n]*\)\s*\{",  # methods
    ],
    "Go": [
        r"^func\s+(?:\([^)]*\)\s*)?(?P<name>\w+)",
        r"^type\s+(?P<name>\w+)",
        r"^(?:const|var)\s+(?P<name>\w+)",
        r"^\t(?P<name>\w+)(?:\s+[\w.*\[\]]+)?\s*=",  # inside const ( ... ) blocks
    ],
    "Rust": [r"\b(?:fn|struct|enum|trait|type|const|static|mod|macro_rules!)\s+(?P<name>\w+)"],
    "PHP": [r"\b(?:function|class|interface|trait|enum|const)\s+(?P<name>\w+)"],
    "Ruby": [r"^\s*(?:def\s+(?:self\.)?|class\s+|module\s+)(?P<name>\w+)", r"^\s*(?P<name>[A-Z]\w*)\s*="],
}
_FAMILY = {"C": "C", "C++": "C", "JavaScript": "JS", "TypeScript": "JS"}
_DEFINITION_PATTERNS = {family: [re.compile(pattern, re.M) for pattern in patterns]
                        for family, patterns in _DEFINITIONS.items()}  # fmt: skip
_NAME = re.compile(r"[^\W\d]\w*")
_IMPORT_LINE = re.compile(
    r"^\s*(?:import\b|from\s+\S+\s+import\b|#\s*(?:include|import)\b|using\b|package\b|require(?:_relative)?\b"
    r"|use\b|extern\s+crate\b|mod\s+\w+\s*;|namespace\b)"
)
# Statements that may span lines and import names (every line they cover is an import line), per family.
_MULTILINE_IMPORTS = {
    "Python": re.compile(r"^[ \t]*from[ \t]+[.\w]+[ \t]+import[ \t]*\([^)]*\)", re.M),
    "JS": re.compile(r"^[ \t]*(?:import|export)\b[^;'\"`]*?\bfrom\s*[\"'][^\"'\n]*[\"']", re.M),
    "Rust": re.compile(r"^[ \t]*(?:pub(?:\([^)]*\))?[ \t]+)?use\b[^;]*;", re.M),
    "Go": re.compile(r"^[ \t]*import[ \t]*\([^)]*\)", re.M),
    "PHP": re.compile(r"^[ \t]*use\b[^;]*;", re.M),
}
_STRING_LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')
_DOUBLE_QUOTED = re.compile(r'"(?:[^"\\\n]|\\.)*"')  # Rust: a quote also starts a lifetime
# Names that are also methods or attributes of the standard library's most used types: without type information a
# use such as `items.append(x)` or `future.complete(v)` cannot be told from a cross-file one, so they never count.
_AMBIGUOUS_PYTHON = frozenset(
    name for kind in (str, bytes, list, dict, set, tuple, int, float, BaseException, io.TextIOWrapper, io.BytesIO)
    for name in dir(kind)
)  # fmt: skip
_AMBIGUOUS_JAVA = frozenset(
    "equals hashCode toString getClass notify notifyAll wait clone finalize length charAt substring indexOf "
    "lastIndexOf startsWith endsWith trim strip isEmpty isBlank split replace format valueOf toLowerCase toUpperCase "
    "contains matches getBytes compareTo append insert reverse setLength delete deleteCharAt add addAll remove "
    "removeAll removeIf containsKey containsValue get put putAll putIfAbsent size clear iterator stream forEach "
    "keySet values entrySet getKey getValue getOrDefault computeIfAbsent merge of copyOf sort toArray subList "
    "hasNext next isPresent orElse orElseThrow ifPresent map filter collect complete completeExceptionally "
    "thenApply thenCompose thenAccept join whenComplete handle close read write flush run start interrupt "
    "getMessage getCause printStackTrace name ordinal".split()
)
_AMBIGUOUS = {"Python": _AMBIGUOUS_PYTHON, "Java": _AMBIGUOUS_JAVA, "C#": _AMBIGUOUS_JAVA}
_PYTHON_FROM = re.compile(r"(?:^|;)[ \t]*from[ \t]+(\.*[\w.]*)[ \t]*import[ \t]*(\([^)]*\)|[\w*. \t,]+)", re.M)
_PYTHON_ALIAS = re.compile(r"^(\w+|\*)(?:\s+as\s+(\w+))?$")
_TYPED_NAME = re.compile(  # `Type name` then = ; , ( ) : or [ (Java/C#/C: variables, parameters, functions)
    r"\b([A-Za-z_][\w.]*)(?:\s*<[^<>;(){}]*>)?(?:\s*\[\s*\])*[ \t]+\**[ \t]*(\w+)\s*(?=[=;,():\[])"
)
_NOT_TYPES = frozenset(
    "return throw throws new case else goto package import extends implements instanceof sizeof typeof yield "
    "assert default break continue do in is as using namespace await delete".split()
)
_GO_SHORT_DECLARATION = re.compile(r"\b(\w+)(?:\s*,\s*\w+)*\s*:=")
_ASSIGNED = re.compile(r"\s*=(?!=)")
_PYTHON_SELF_ATTRIBUTE = re.compile(r"\bself\.(\w+)[ \t]*(?::[^=\n]*)?=(?!=)")


@dataclass
class CrossfileConfig:
    """How a benchmark is drawn.

    Attributes:
        max_examples: examples in all, shared evenly between the languages found (0: no cap).
        per_repository: at most this many examples of one repository (0: no cap).
        per_language: at most this many examples of one language (0: no cap).
        seed: seeds which lines are drawn.
        languages: only these languages (names of `repolm.data.languages`, any case: "python", "c++"); empty:
            every language with dependency parsing.
        retrieved_chunks: chunks the retriever gives each example (the prompt builder keeps those that fit).
        layout: how a folder is read: "repositories" (each subfolder one repository), "repository" (the folder is
            one) or "auto" (one repository when the folder holds a `.git`, a source file of a language with
            dependency parsing or a build file at its top; else each subfolder is one).
    """

    max_examples: int = 200
    per_repository: int = 20
    per_language: int = 0
    seed: int = 0
    languages: tuple[str, ...] = ()
    retrieved_chunks: int = 5
    layout: str = "auto"

    def __post_init__(self) -> None:
        from repolm.data.import_extraction import DEPENDENCY_LANGUAGES

        for name in ("max_examples", "per_repository", "per_language", "retrieved_chunks", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RepolmError(f"{name}: must be an integer >= 0, got {value!r}")
        if self.layout not in LAYOUTS:
            raise RepolmError(f"layout: must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        known = {name.lower(): name for name in DEPENDENCY_LANGUAGES} | {"cpp": "C++", "csharp": "C#", "c_sharp": "C#"}
        languages = []
        for language in self.languages:
            if str(language).lower() not in known:
                raise RepolmError(
                    f"languages: {language!r} has no dependency parsing (one of {', '.join(sorted(known.values()))})"
                )
            languages.append(known[str(language).lower()])
        self.languages = tuple(dict.fromkeys(languages))


# -----------------------------------------------------------------------------
# repositories

_BUILD_FILES = frozenset(
    {"setup.py", "pyproject.toml", "setup.cfg", "pom.xml", "build.gradle", "build.gradle.kts", "Makefile",
     "CMakeLists.txt", "configure.ac", "meson.build", "go.mod", "Cargo.toml", "package.json", "composer.json",
     "Gemfile", "build.xml"}
)  # fmt: skip


def read_repository_folder(folder: str | os.PathLike) -> dict[str, str]:
    """The text files of one repository folder with a known language, by POSIX path (hidden folders, the
    retriever's skipped folders such as `__pycache__` and `node_modules`, files over 1 MB and files that are not
    UTF-8 left out)."""
    from repolm.data.languages import language_of
    from repolm.infer.retrieval import RetrievalConfig

    skipped = RetrievalConfig().skipped_directories
    folder = Path(folder)
    files = {}
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith(".") and name not in skipped)
        for name in sorted(names):
            path = Path(root, name)
            if name.startswith(".") or not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            relative = path.relative_to(folder).as_posix()
            if language_of(relative, text[:200]) is not None:
                files[relative] = text
    return files


def _is_one_repository(folder: Path) -> bool:
    """The "auto" layout: a `.git`, a build file or a source file of a language with dependency parsing at the top."""
    from repolm.data.import_extraction import DEPENDENCY_LANGUAGES
    from repolm.data.languages import language_of

    for entry in folder.iterdir():
        if entry.name == ".git" or (entry.is_file() and entry.name in _BUILD_FILES):
            return True
        if entry.is_file() and language_of(entry.name) in DEPENDENCY_LANGUAGES:
            return True
    return False


def repositories_in_folder(folder: str | os.PathLike, layout: str = "auto") -> list[tuple[str, dict[str, str]]]:
    """The repositories of a folder, by name (see `CrossfileConfig.layout`); RepolmError when it is no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RepolmError(f"--repos {folder}: no such folder")
    if layout not in LAYOUTS:
        raise RepolmError(f"layout: must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    subfolders = sorted(entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if layout == "repository" or not subfolders or (layout == "auto" and _is_one_repository(folder)):
        return [(folder.resolve().name, read_repository_folder(folder))]
    return [(entry.name, read_repository_folder(entry)) for entry in subfolders]


def repositories_in_samples(folder: str | os.PathLike) -> list[tuple[str, dict[str, str]]]:
    """The repositories of a data build's sample folder (`heldout/` or `data/`), cut back into their files."""
    from repolm.data.records import read_sample_records, sample_record_files

    repositories: dict[str, dict[str, str]] = {}
    for record in read_sample_records(folder):
        for path, _language, text in sample_record_files(record):
            repositories.setdefault(record["repo"], {})[path] = text
    return sorted(repositories.items())


# -----------------------------------------------------------------------------
# definitions and uses


def _line_starts(text: str) -> list[int]:
    """The offset of each line's first character (lines end at "\\n")."""
    return [0, *(match.end() for match in re.finditer("\n", text))]


def definitions(code: str, language: str, include_private: bool = False) -> dict[str, int]:
    """The names a file defines -> the 0-based line of the first definition (see the module docstring), read from
    its code without comments (`repolm.data.import_extraction.code_text`); Java/C# private members only with
    `include_private` (what the file itself sees)."""
    keywords = KEYWORDS.get(language, frozenset())
    starts = _line_starts(code)
    found: dict[str, int] = {}
    for pattern in _DEFINITION_PATTERNS.get(_FAMILY.get(language, language), ()):
        for match in pattern.finditer(code):
            name = match.group("name")
            if not name or len(name) < MIN_NAME_LENGTH or name in keywords or name[0].isdigit():
                continue
            if name.startswith("__") and name.endswith("__"):
                continue
            modifiers = (match.group("modifiers") or "").split() if "modifiers" in match.re.groupindex else ()
            if not include_private and "private" in modifiers:
                continue
            line = bisect.bisect_right(starts, match.start("name")) - 1
            if line < found.get(name, line + 1):
                found[name] = line
    return found


def defined_names(text: str, language: str) -> set[str]:
    """The names a file's text defines (functions, classes, methods, types, constants, macros)."""
    from repolm.data.import_extraction import code_text

    return set(definitions(code_text(text, language), language))


@dataclass
class _FileNames:
    """What one file can use from other files."""

    visible: dict[str, list[Definition]]  # name -> its definitions in imported files (Python: as an attribute)
    bare: dict[str, list[Definition]]  # Python: a bare name imported by name or * (`as` aliases included)


def _python_imported_names(
    path: str, code: str, resolver: ImportResolver, defined: dict[str, dict[str, int]]
) -> dict[str, list[Definition]]:
    """Python names a file imports by name (`from X import a as b`: b) or with `*`, that the imported module
    defines -> (that module's file, the name there)."""
    found: dict[str, list[Definition]] = {}
    for match in _PYTHON_FROM.finditer(code.replace("\\\n", " ")):
        module = match.group(1)
        files = [file for file in resolver.resolve_import(path, module) if file in defined] if module else []
        for item in match.group(2).strip("() \t\n").split(","):
            parsed = _PYTHON_ALIAS.match(" ".join(item.split()))
            if not parsed:
                continue
            name, alias = parsed.group(1), parsed.group(2)
            for file in files:
                names = defined[file] if name == "*" else [name] if name in defined[file] else []
                for imported in names:
                    found.setdefault(alias or imported, []).append((file, imported))
    return found


def _file_names(
    path: str, language: str, code: str, resolver: ImportResolver, defined: dict[str, dict[str, int]]
) -> _FileNames:
    visible: dict[str, list[Definition]] = {}
    for dependency in sorted(resolver.dependencies(path) - {path}):
        for name in defined.get(dependency, ()):
            visible.setdefault(name, []).append((dependency, name))
    bare = _python_imported_names(path, code, resolver, defined) if language == "Python" else {}
    return _FileNames(visible, bare)


def _cross_file_uses(code_line: str, language: str, names: _FileNames, own: set[str]) -> dict[str, list[Definition]]:
    """The names a line (its code without comments) uses from other files -> their definitions."""
    used: dict[str, list[Definition]] = {}
    ambiguous = _AMBIGUOUS.get(language, frozenset())
    strings = _DOUBLE_QUOTED if language == "Rust" else _STRING_LITERAL
    code_line = strings.sub(lambda literal: '"' + " " * (len(literal.group()) - 2) + '"', code_line)
    for match in _NAME.finditer(code_line):
        name = match.group()
        if name in own or name in used or name in ambiguous:
            continue
        before = code_line[: match.start()].rstrip()
        if _ASSIGNED.match(code_line, match.end()) and not before.endswith((".", "->", "::")):
            continue  # `quote = False`: the line binds the name, it does not use another file's
        if language == "Python":
            attribute = before.endswith(".")
            found = names.visible.get(name) if attribute else names.bare.get(name)
        else:
            found = names.visible.get(name)
        if found:
            used[name] = sorted(set(found))
    return used


def _local_names(code: str, language: str) -> set[str]:
    """Names a file binds for itself besides its definitions: Python attributes it assigns (`self.x = ...`), Java,
    C#, C and C++ variables, parameters and functions (`Type name` before `=`, `;`, `,`, `(`, `)`, `:` or `[`),
    Go's `name :=`."""
    family = _FAMILY.get(language, language)
    if language == "Python":
        return set(_PYTHON_SELF_ATTRIBUTE.findall(code))
    if language == "Go":
        return set(_GO_SHORT_DECLARATION.findall(code))
    if family not in ("Java", "C#", "C"):
        return set()
    return {name for kind, name in _TYPED_NAME.findall(code) if kind.rsplit(".", 1)[-1] not in _NOT_TYPES}


def _import_lines(code: str, language: str) -> set[int]:
    """The 0-based lines of a file's code (comments blanked) that belong to import, include, package or using
    statements, the lines of statements that span several lines included."""
    found = {number for number, line in enumerate(code.split("\n")) if _IMPORT_LINE.match(line)}
    pattern = _MULTILINE_IMPORTS.get(_FAMILY.get(language, language))
    if pattern is not None:
        for match in pattern.finditer(code):
            first = code.count("\n", 0, match.start())
            found.update(range(first, first + match.group().count("\n") + 1))
    return found


def _definition_lines(used: dict[str, list[Definition]], defined: dict[str, dict[str, int]]) -> dict[str, int]:
    """Each defining file -> the 1-based line of its first definition of a name the line uses."""
    lines: dict[str, int] = {}
    for definitions_of_name in used.values():
        for path, name in definitions_of_name:
            lines[path] = min(lines.get(path, defined[path][name] + 1), defined[path][name] + 1)
    return dict(sorted(lines.items()))


def _meaningful(text: str) -> bool:
    """At least 3 non-space characters, one of them a letter or digit."""
    compact = "".join(text.split())
    return len(compact) >= 3 and any(character.isalnum() for character in compact)


def _candidates(repository: str, files: Mapping[str, str], config: CrossfileConfig) -> list[dict[str, Any]]:
    """Every qualifying cursor line of one repository (see the module docstring), in file and line order."""
    from repolm.data.dependencies import ImportResolver
    from repolm.data.import_extraction import DEPENDENCY_LANGUAGES, code_text
    from repolm.data.languages import language_of
    from repolm.data.records import CodeFile

    code_files = []
    for path, text in sorted(files.items()):
        language = language_of(path, text[:200])
        if language in DEPENDENCY_LANGUAGES:
            code_files.append(CodeFile(path, text, language))
    if len(code_files) < 2:
        return []
    resolver = ImportResolver(code_files)
    code = {file.path: code_text(file.text, file.language) for file in code_files}
    defined = {file.path: definitions(code[file.path], file.language) for file in code_files}
    found = []
    for file in code_files:
        if config.languages and file.language not in config.languages:
            continue
        names = _file_names(file.path, file.language, code[file.path], resolver, defined)
        if not names.visible and not names.bare:
            continue
        own = set(definitions(code[file.path], file.language, include_private=True))
        own.update(_local_names(code[file.path], file.language))
        lines, code_lines = file.text.split("\n"), code[file.path].split("\n")
        imports = _import_lines(code[file.path], file.language)
        if len(lines) != len(code_lines):  # code_text keeps every line break; a mismatch would misplace lines
            logger.warning("cross-file examples: %s/%s: comment blanking moved lines; skipped", repository, file.path)
            continue
        offset = 0
        for number, (line, code_line) in enumerate(zip(lines, code_lines, strict=True)):
            start, offset = offset, offset + len(line) + 1
            target = line.removesuffix("\r")
            if not _meaningful(target) or not _meaningful(code_line) or number in imports:
                continue
            used = _cross_file_uses(code_line, file.language, names, own)
            if not used or not perfect_prediction_scores(target, file.language):
                continue
            found.append({
                "task_id": f"{repository}/{file.path}:{number + 1}", "repository": repository, "path": file.path,
                "language": file.language, "line": number + 1, "prompt": file.text[:start], "groundtruth": target,
                "right_context": file.text[offset:], "cross_file_names": sorted(used),
                "defining_files": sorted({path for found in used.values() for path, _ in found}),
                "definition_lines": _definition_lines(used, defined),
            })  # fmt: skip
    return found


# -----------------------------------------------------------------------------
# contexts


def oracle_snippets(example: Mapping[str, Any], files: Mapping[str, str]) -> list[dict[str, Any]]:
    """The defining files of an example in 10-line chunks, as `ContextSnippet` fields: each file's chunk that starts
    at its first definition of a name the line uses (`definition_lines`), then its following chunks, then its
    preceding ones; the files interleaved (every definition chunk first)."""
    per_file = []
    for path in example["defining_files"]:
        lines = files[path].splitlines(keepends=True)
        first = example["definition_lines"].get(path, 1) - 1
        starts = [*range(first, len(lines), ORACLE_CHUNK_LINES)]
        starts += range(first - ORACLE_CHUNK_LINES, -ORACLE_CHUNK_LINES, -ORACLE_CHUNK_LINES)
        chunks = []
        for start in starts:
            begin = max(0, start)
            chunk = "".join(lines[begin : start + ORACLE_CHUNK_LINES])
            if chunk.strip():
                chunks.append({"path": path, "text": chunk, "start_line": begin + 1, "score": 0.0, "source": "oracle"})
        per_file.append(chunks)
    interleaved = []
    for rank in range(max((len(chunks) for chunks in per_file), default=0)):
        interleaved.extend(chunks[rank] for chunks in per_file if rank < len(chunks))
    return interleaved


def _add_contexts(examples: list[dict[str, Any]], repositories: Mapping[str, Mapping[str, str]], top_k: int) -> None:
    """Adds "retrieval" and "oracle" to each example (see the module docstring): one retriever per current file,
    over its repository without that file."""
    from repolm.infer.retrieval import RepositoryRetriever, RetrievalConfig

    by_file: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for example in examples:
        by_file.setdefault((example["repository"], example["path"]), []).append(example)
    retrieval_config = RetrievalConfig(top_k=max(top_k, 1))
    started = time.perf_counter()
    for (repository, path), group in sorted(by_file.items()):
        files = repositories[repository]
        retriever = RepositoryRetriever.from_files(
            {other: text for other, text in files.items() if other != path}, retrieval_config
        )
        for example in group:
            snippets = retriever.retrieve(path, example["prompt"], "", top_k=top_k) if top_k else []
            example["retrieval"] = [asdict(snippet) for snippet in snippets]
            example["oracle"] = oracle_snippets(example, files)
    logger.info("cross-file contexts: %d files, %.1f s", len(by_file), time.perf_counter() - started)


# -----------------------------------------------------------------------------
# building


def _draw(
    candidates: dict[str, list[dict[str, Any]]], config: CrossfileConfig
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(the drawn examples by language and task id order of drawing, candidates per language); `candidates`:
    repository -> its qualifying lines."""
    by_language: dict[str, dict[str, list[dict[str, Any]]]] = {}
    found: dict[str, int] = {}
    for repository in sorted(candidates):
        lines = list(candidates[repository])
        random.Random(f"{config.seed}/{repository}").shuffle(lines)
        for example in lines[: config.per_repository or None]:
            by_language.setdefault(example["language"], {}).setdefault(repository, []).append(example)
        for example in lines:
            found[example["language"]] = found.get(example["language"], 0) + 1
    caps = [cap for cap in (config.per_language, -(-config.max_examples // max(len(by_language), 1))) if cap]
    cap = min(caps) if caps else None
    drawn = []
    for language in sorted(by_language):
        queues = [list(reversed(by_language[language][repository])) for repository in sorted(by_language[language])]
        taken = 0
        while queues and (cap is None or taken < cap):
            for queue in list(queues):
                if cap is not None and taken >= cap:
                    break
                drawn.append(queue.pop())
                taken += 1
                if not queue:
                    queues.remove(queue)
    return drawn, found


def build_crossfile_benchmark(
    repositories: str | os.PathLike | Iterable[Repository],
    output: str | os.PathLike,
    config: CrossfileConfig | None = None,
) -> dict[str, Any]:
    """Draws the examples of `repositories` (a folder, read with `config.layout`, or (name, {path: text}) pairs),
    adds their retrieved and oracle contexts, writes `examples.jsonl` and `meta.json` to `output` (complete or not
    at all) and returns the meta. RepolmError when nothing qualifies."""
    config = config or CrossfileConfig()
    started = time.perf_counter()
    if isinstance(repositories, str | os.PathLike):
        source = str(Path(repositories).resolve())
        repositories = repositories_in_folder(repositories, config.layout)
    else:
        source = "in memory"
    by_name: dict[str, Mapping[str, str]] = {}
    for name, files in repositories:
        if name in by_name:
            raise RepolmError(f"two repositories are named {name!r}")
        by_name[name] = files
    candidates = {name: _candidates(name, files, config) for name, files in by_name.items()}
    examples, found = _draw(candidates, config)
    if not examples:
        wanted = f" in {', '.join(config.languages)}" if config.languages else ""
        raise RepolmError(
            f"no cross-file examples{wanted} in {len(by_name)} repositories: no line uses a name that a file it "
            "imports defines"
        )
    _add_contexts(examples, by_name, config.retrieved_chunks)
    counts: dict[str, int] = {}
    for example in examples:
        counts[example["language"]] = counts.get(example["language"], 0) + 1
    meta = {
        "format": FORMAT_VERSION,
        "examples": len(examples),
        "languages": dict(sorted(counts.items())),
        "repositories": len({example["repository"] for example in examples}),
        "repositories_read": len(by_name),
        "candidates": dict(sorted(found.items())),
        "seed": config.seed,
        "source": source,
        "settings": asdict(config),
        "seconds": round(time.perf_counter() - started, 2),
    }

    def write_into(folder: Path) -> None:
        lines = "".join(json.dumps(example, ensure_ascii=False) + "\n" for example in examples)
        (folder / EXAMPLES_FILE).write_text(lines, encoding="utf-8")
        (folder / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")

    write_folder(Path(output), write_into, owned=lambda name: name in (EXAMPLES_FILE, META_FILE), last=(META_FILE,))
    logger.info("cross-file benchmark: %d examples %s in %s", len(examples), meta["languages"], output)
    return meta


def read_benchmark(bench: str | os.PathLike) -> list[dict[str, Any]]:
    """The examples of a benchmark folder; RepolmError when it has none or a line is not an example."""
    path = Path(bench) / EXAMPLES_FILE
    if not path.is_file():
        raise RepolmError(f"--bench {bench}: no {EXAMPLES_FILE} (build it with `repolm eval crossfile build`)")
    examples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                example = json.loads(line)
            except json.JSONDecodeError as error:
                raise RepolmError(f"{path}:{number}: not JSON ({error.msg})") from None
            missing = [key for key in ("task_id", "language", "path", "prompt", "groundtruth") if key not in example]
            if missing:
                raise RepolmError(f"{path}:{number}: not a cross-file example (no {', '.join(missing)})")
            examples.append(example)
    if not examples:
        raise RepolmError(f"--bench {bench}: {EXAMPLES_FILE} holds no examples")
    return examples
