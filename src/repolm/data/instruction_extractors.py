"""Documented functions found in source files: the raw material of mined instruction pairs.

`documented_functions(text, language, path)` returns every function of a file that carries documentation a person
wrote for it, with the parts the instruction kinds need (`DocumentedFunction`):
- Python, with the interpreter's parser (`ast`): functions and methods with a docstring (`ast.get_docstring`,
  cleaned); the doctest examples in the docstring (`doctest.DocTestParser`) that call the function are its tests;
- Java, C, C++, C#, JavaScript, TypeScript, Go, Rust, PHP and Ruby, with tree-sitter (the grammars of
  `repolm.data.quality`): function and method nodes with a body, documented by the comment block that ends on the
  line right above them (or above the `export` / `template` statement that wraps them), without a blank line
  between; the comment markers (`/**`, `*`, `*/`, `///`, `//`, `#`) are removed from the documentation text.

Kept only when they can be paired reliably (`ExtractionLimits`): documentation of at least `min_doc_words` words
of prose (tag lines such as `@param x` or `:param x:` not counted) that is not a licence header, a `{@inheritDoc}`,
a TODO or commented-out code; a body of `min_body_lines` to `max_lines` lines that is not a stub (`pass`, `...`,
`raise NotImplementedError`, `{}`); at most `max_chars` characters; no dunder methods other than `__init__`, no test
functions (`test*`). A Python file that does not parse is skipped (`ParseFailure`); with tree-sitter, a function
whose subtree holds a syntax error is skipped. Code is dedented (a method keeps its own indentation relative to its
`def`). The language is the table's (`repolm.data.languages`): a C++ header named `.h` is mined as C.

Not handled here: turning functions into instruction pairs, deduplication and decontamination
(`repolm.data.instruction_mining`).
"""

from __future__ import annotations

import ast
import doctest
import logging
import re
import textwrap
import warnings
from dataclasses import dataclass, field
from functools import cache
from typing import Any

logger = logging.getLogger(__name__)

# language -> (tree-sitter grammar, function node types, wrapper node types whose leading comment documents them)
TREE_SITTER_FUNCTIONS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "Java": ("java", ("method_declaration", "constructor_declaration"), ()),
    "C": ("c", ("function_definition",), ()),
    "C++": ("cpp", ("function_definition",), ("template_declaration",)),
    "C#": ("csharp", ("method_declaration", "constructor_declaration"), ()),
    "JavaScript": ("javascript", ("function_declaration", "method_definition", "generator_function_declaration"),
                   ("export_statement",)),
    "TypeScript": ("typescript", ("function_declaration", "method_definition", "generator_function_declaration"),
                   ("export_statement",)),
    "Go": ("go", ("function_declaration", "method_declaration"), ()),
    "Rust": ("rust", ("function_item",), ()),
    "PHP": ("php", ("function_definition", "method_declaration"), ()),
    "Ruby": ("ruby", ("method", "singleton_method"), ()),
}  # fmt: skip
"""The languages mined with tree-sitter besides Python (which uses `ast`)."""

MINED_LANGUAGES = ("Python", *TREE_SITTER_FUNCTIONS)
"""Every language functions are mined from."""

_COMMENT_TYPES = frozenset({"comment", "line_comment", "block_comment"})
_NOT_DOCUMENTATION = re.compile(
    r"^\s*(copyright|licensed|license|spdx|@license|todo|fixme|xxx|hack|\{@inheritdoc\}|@inheritdoc|"
    r"eslint|prettier|istanbul|ts-ignore|noinspection|nolint|rubocop|phpcs|\$id)",
    re.IGNORECASE,
)
_CODE_LIKE = re.compile(r"[;{}]\s*$|^\s*(if|for|while|return|var|let|const|int|void)\b.*[;{(]")
_MARKERS = re.compile(r"^\s*(/\*\*?|\*/|\*(?!\*)|///?!?|//!|#+)\s?")
_WORD = re.compile(r"[A-Za-z]{2,}")
_STUB_BODIES = frozenset({"pass", "...", "raise NotImplementedError", "raise NotImplementedError()", "{}", "{ }"})


@dataclass(frozen=True)
class ExtractionLimits:
    """Which documented functions are kept.

    Attributes:
        min_doc_words: least words (2+ letters) in the documentation.
        max_doc_chars: most characters of documentation.
        min_body_lines: least non-blank lines of the body (documentation excluded).
        max_lines: most lines of the whole function.
        max_chars: most characters of the whole function.
    """

    min_doc_words: int = 4
    max_doc_chars: int = 1500
    min_body_lines: int = 2
    max_lines: int = 60
    max_chars: int = 3000


@dataclass
class DocumentedFunction:
    """A function and its documentation, as the instruction kinds use them.

    Attributes:
        language: the language's display name ("Python", "Java", ...).
        name: the function's name.
        line: 1-based line of the function's first line in its file.
        code: the whole function, documentation included (a docstring inside, or the doc comment above), dedented.
        code_without_doc: the function without its documentation.
        doc: the documentation as text (docstring cleaned, comment markers removed).
        signature_with_doc: what a caller sees before the body: the doc comment and the header (other
            languages), or the header and the docstring (Python), ready to be completed with the body.
        tests: doctest examples that call the function, as `>>> call` / expected-output lines (Python only).
    """

    language: str
    name: str
    line: int
    code: str
    code_without_doc: str
    doc: str
    signature_with_doc: str
    tests: list[str] = field(default_factory=list)


class ParseFailure(Exception):
    """The file does not parse (counted, never raised to the user)."""


def _prose(doc: str) -> str:
    """The documentation without its tag lines (`@param x ...`, `:param x:`), `@brief` kept as prose."""
    lines = []
    for line in doc.splitlines():
        stripped = re.sub(r"^\s*[@\\](brief|summary|details)\b", "", line)
        if not re.match(r"\s*([@\\]\w+|:\w+[^:]*:)", stripped):
            lines.append(stripped)
    return "\n".join(lines)


def _doc_ok(doc: str, limits: ExtractionLimits) -> bool:
    if len(_WORD.findall(_prose(doc))) < limits.min_doc_words or len(doc) > limits.max_doc_chars:
        return False
    if _NOT_DOCUMENTATION.match(doc):
        return False
    lines = [line for line in doc.splitlines() if line.strip()]
    code_lines = sum(bool(_CODE_LIKE.search(line)) for line in lines)
    return code_lines * 2 < len(lines)  # mostly prose, not commented-out code


def _name_ok(name: str) -> bool:
    if name.startswith("__") and name.endswith("__") and name != "__init__":
        return False
    return not name.lower().startswith("test")


def _size_ok(code: str, body_lines: int, limits: ExtractionLimits) -> bool:
    return (
        body_lines >= limits.min_body_lines
        and code.count("\n") + 1 <= limits.max_lines
        and len(code) <= limits.max_chars
    )


# -----------------------------------------------------------------------------
# Python


def _doctest_calls(docstring: str, name: str) -> list[str]:
    """The doctest examples of a docstring that call `name`, as `>>> source` lines followed by the expected output."""
    try:
        examples = doctest.DocTestParser().get_examples(docstring)
    except ValueError:  # malformed doctest (inconsistent indentation)
        return []
    call = re.compile(rf"\b{re.escape(name)}\s*\(")
    if not any(call.search(example.source) for example in examples):
        return []
    lines = []
    for example in examples:
        source = example.source.rstrip("\n").split("\n")
        lines.append(">>> " + source[0])
        lines.extend("... " + line for line in source[1:])
        lines.extend(example.want.rstrip("\n").split("\n") if example.want else [])
    return lines


def _python_functions(text: str, limits: ExtractionLimits) -> list[DocumentedFunction]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarnings of old escape sequences
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
            raise ParseFailure(str(error)) from None
    lines = text.splitlines()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or not _name_ok(node.name):
            continue
        doc = ast.get_docstring(node, clean=True)
        if not doc or not _doc_ok(doc, limits) or len(node.body) < 2 or node.end_lineno is None:
            continue
        docstring, first_statement = node.body[0], node.body[1]
        if (
            docstring.end_lineno is None
            or docstring.lineno <= node.lineno
            or first_statement.lineno <= docstring.end_lineno
        ):
            continue  # a one-line def, or code on the docstring's line
        start = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
        header = lines[start - 1 : docstring.lineno - 1]
        doc_lines = lines[docstring.lineno - 1 : docstring.end_lineno]
        body = lines[docstring.end_lineno : node.end_lineno]
        body_text = "\n".join(line for line in body if line.strip())
        if textwrap.dedent(body_text).strip() in _STUB_BODIES:
            continue
        code = textwrap.dedent("\n".join(header + doc_lines + body))
        if not _size_ok(code, len(body_text.splitlines()), limits):
            continue
        found.append(
            DocumentedFunction(
                language="Python",
                name=node.name,
                line=start,
                code=code,
                code_without_doc=textwrap.dedent("\n".join(header + body)),
                doc=doc,
                signature_with_doc=textwrap.dedent("\n".join(header + doc_lines)),
                tests=_doctest_calls(doc, node.name),
            )
        )
    return sorted(found, key=lambda function: function.line)


# -----------------------------------------------------------------------------
# tree-sitter languages


@cache
def _parser(grammar: str) -> Any:
    from tree_sitter_language_pack import get_parser

    return get_parser(grammar)  # type: ignore[arg-type]


def clean_comment(comment: str) -> str:
    """The text of a comment block without its markers (`/**`, leading `*`, `*/`, `///`, `//`, `#`), dedented."""
    lines = []
    for line in comment.splitlines():
        line = line.rstrip()
        if line.endswith("*/"):
            line = line[:-2].rstrip()
        lines.append(_MARKERS.sub("", line, count=1))
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return textwrap.dedent("\n".join(lines)).strip()


def _last_line(node: Any) -> int:
    """The 0-based last line a node occupies (a line comment's range may end at column 0 of the next line)."""
    row, column = node.end_point
    return row - 1 if column == 0 and row > node.start_point[0] else row


def _leading_comments(node: Any) -> list[Any]:
    """The comment nodes right above `node`: each ending on the line before the next, the last one on the line
    before `node`; a comment sharing its line with code ends the block."""
    comments: list[Any] = []
    expected_line = node.start_point[0] - 1
    sibling = node.prev_sibling
    while sibling is not None and sibling.type in _COMMENT_TYPES and _last_line(sibling) == expected_line:
        previous = sibling.prev_sibling
        if (
            previous is not None
            and _last_line(previous) == sibling.start_point[0]
            and previous.type not in _COMMENT_TYPES
        ):
            break  # a trailing comment of the previous statement
        comments.insert(0, sibling)
        expected_line = sibling.start_point[0] - 1
        sibling = previous
    return comments


def _tree_sitter_functions(text: str, language: str, limits: ExtractionLimits) -> list[DocumentedFunction]:
    grammar, function_types, wrapper_types = TREE_SITTER_FUNCTIONS[language]
    data = text.encode("utf-8")
    tree = _parser(grammar).parse(data)
    lines = data.split(b"\n")
    found = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(reversed(node.named_children))
        if node.type not in function_types:
            continue
        body = node.child_by_field_name("body")
        if body is None or node.has_error:
            continue
        outer = node.parent if node.parent is not None and node.parent.type in wrapper_types else node
        comments = _leading_comments(outer)
        if not comments:
            continue
        doc = clean_comment("\n".join(comment.text.decode("utf-8") for comment in comments))
        if not _doc_ok(doc, limits):
            continue
        first, last = outer.start_point[0], outer.end_point[0]
        if outer.start_point[1] and data[outer.start_byte - outer.start_point[1] : outer.start_byte].strip():
            continue  # the function starts after other code on its line
        comment_first = comments[0].start_point[0]
        function_text = b"\n".join(lines[first : last + 1]).decode("utf-8")
        doc_text = b"\n".join(lines[comment_first:first]).decode("utf-8")
        header = data[outer.start_byte - outer.start_point[1] : body.start_byte].decode("utf-8").rstrip()
        name = re.search(r"([A-Za-z_$][\w$]*)\s*(?:<[^()]*>)?\s*\(", header)
        if name is None and language == "Ruby":
            name = re.search(r"def\s+(?:self\.)?([\w?!=]+)", header)
        if name is None or not _name_ok(name.group(1)):
            continue
        body_text = data[body.start_byte : body.end_byte].decode("utf-8")
        body_lines = [line for line in body_text.splitlines() if line.strip() and line.strip() not in "{}"]
        if body_text.strip() in _STUB_BODIES or len(body_lines) < limits.min_body_lines:
            continue
        code = textwrap.dedent(doc_text + "\n" + function_text)
        if not _size_ok(code, len(body_lines), limits):
            continue
        found.append(
            DocumentedFunction(
                language=language,
                name=name.group(1),
                line=comment_first + 1,
                code=code,
                code_without_doc=textwrap.dedent(function_text),
                doc=doc,
                signature_with_doc=textwrap.dedent(doc_text + "\n" + header),
            )
        )
    return found


def documented_functions(text: str, language: str, limits: ExtractionLimits | None = None) -> list[DocumentedFunction]:
    """The documented functions of one file of `language` (see the module docstring); [] for other languages;
    `ParseFailure` when the file does not parse."""
    limits = limits or ExtractionLimits()
    if language == "Python":
        return _python_functions(text, limits)
    if language in TREE_SITTER_FUNCTIONS:
        return _tree_sitter_functions(text, language, limits)
    return []
