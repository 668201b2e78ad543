"""Import statements of source files: the raw targets a file imports, found with regular expressions.

DeepSeek-Coder (paper section 2.2) parses only invocation relations between the files of a repository, with regular
expressions (`import` in Python, `using` in C#, `#include` in C). This module finds those statements in the
languages of `DEPENDENCY_LANGUAGES`:

- `code_text` blanks a file's comments (and, in Python, its strings too) with one scanner per language, keeping line
  breaks, so imports inside comments or docstrings are not read;
- `extract_imports` gives a file's raw import targets in text order, in each language's own notation (dotted
  names, header paths, module specifiers, Rust and PHP `use` trees expanded);
- `extract_declarations` gives the package/namespace a Java, C# or PHP file declares, or a go.mod's module path.

Not handled here: which files a target names (`repolm.data.dependencies` resolves targets to files of the same
repository) and the order of the files (`repolm.data.dependency_order`). Nothing is evaluated: imports built at run
time (importlib, `require` of a computed name) are not seen, and includes under preprocessor conditionals all count.
"""

from __future__ import annotations

import re

# The paper's five languages (issue #43) and six more whose imports name files as plainly.
DEPENDENCY_LANGUAGES = frozenset(
    {"Python", "Java", "C#", "C", "C++", "JavaScript", "TypeScript", "Go", "Rust", "PHP", "Ruby"}
)

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
_GO_PACKAGE = re.compile(r"^[ \t]*package[ \t]+(\w+)", re.M)
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
