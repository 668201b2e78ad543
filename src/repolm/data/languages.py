"""The language table: which file is in which language, how that language writes a comment, how to syntax-check it.

One table, `LANGUAGES`, covers the 87 languages of the DeepSeek-Coder paper's Table 1 (same display names, e.g.
"C++", "C#", "Jupyter Notebook", "Protocol Buffer") plus the prose formats "Markdown", "reStructuredText" and
"Text" (`is_text`: the "code-related text" of the mixture).

How `language_of` decides, first match wins:
1. the exact file name ("Makefile", "Dockerfile", "CMakeLists.txt", "Gemfile", ...);
2. the extension, compared in lowercase, longest compound extension first (".lagda.md" before ".md"), so ".S"
   is Assembly like ".s" and ".C" is C, not C++. Every extension belongs to one language only: ".m" is MATLAB
   (not Objective-C or Mathematica), ".pl" is Perl (Prolog gets ".prolog"/".yap"), ".v" is Verilog, ".cls" is TeX,
   ".fs" is F#, ".cl" is Common Lisp;
3. ".h" is C, unless the head carries a C++ editor modeline (`-*- C++ -*-`, `-*- mode: c++ -*-`, `vim: ft=cpp`),
   as libstdc++'s headers do; no guessing from keywords;
4. a name whose part before the first dot is "Makefile"/"GNUmakefile" ("Makefile.am", "Makefile.in") or
   "Dockerfile"/"Containerfile" ("Dockerfile.dev");
5. the head of the content (first ~200 characters), for files the name did not resolve: a shebang
   (`#!/usr/bin/env python3`, `#!/bin/sh`, `#!/usr/bin/perl -w`, `#!/usr/bin/env -S deno run`, ...), then an
   Emacs (`-*- C++ -*-`, `-*- mode: python -*-`) or Vim (`vim: set ft=ruby:`) modeline in the first lines.
A known extension always beats the head (a ".py" file with a bash shebang stays Python). Unknown -> None.

`path_header` writes the comment line that heads each file of a repository sample (paper section 2.2): the
language's line comment when it has one ("# pkg/util.py"), else its block comment ("/* a.css */"), else nothing:
JSON and Jupyter Notebook (JSON) and plain Text have no comment syntax, so their header is "" (no header).
Limits, by design: the header is a comment of the language, not of every file context: a PHP file starts in
HTML mode, so "// a.php" before `<?php` is page text; an XML/XSLT header before `<?xml ...?>` makes the declaration
misplaced; Assembly uses ";" (NASM/MASM), which GNU as on x86 reads as a statement separator.

This module does not read files, decode bytes or judge quality (see `filters` and `quality`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Language:
    """One language of the table.

    Attributes:
        name: display name, as in the paper's Table 1 (e.g. "C++", "Protocol Buffer").
        extensions: lowercase file extensions with the dot (e.g. ".py", ".lagda.md").
        filenames: exact file names (e.g. "Makefile", "CMakeLists.txt").
        line_comment: the line-comment marker (e.g. "#", "//", "--", ";", "%"), or None.
        block_comment: (start, end) of a block comment (e.g. ("/*", "*/")), or None.
        is_text: True for prose formats (Markdown, reStructuredText, Text): "code-related text", not code.
        tree_sitter: the grammar name in tree-sitter-language-pack 0.13.0 that syntax-checks it, or None.
    """

    name: str
    extensions: tuple[str, ...] = ()
    filenames: tuple[str, ...] = ()
    line_comment: str | None = None
    block_comment: tuple[str, str] | None = None
    is_text: bool = False
    tree_sitter: str | None = None


_C_BLOCK = ("/*", "*/")
_ML_BLOCK = ("(*", "*)")
_XML_BLOCK = ("<!--", "-->")
_HASKELL_BLOCK = ("{-", "-}")


def _lang(
    name: str,
    extensions: tuple[str, ...],
    line: str | None = None,
    block: tuple[str, str] | None = None,
    grammar: str | None = None,
    filenames: tuple[str, ...] = (),
    is_text: bool = False,
) -> Language:
    return Language(name, extensions, filenames, line, block, is_text, grammar)


LANGUAGES: tuple[Language, ...] = (
    _lang("Ada", (".adb", ".ads", ".ada"), "--", grammar="ada"),
    _lang("Agda", (".agda",), "--", _HASKELL_BLOCK, "agda"),
    _lang("Alloy", (".als",), "//", _C_BLOCK),
    _lang("ANTLR", (".g4",), "//", _C_BLOCK),
    _lang("AppleScript", (".applescript",), "--", _ML_BLOCK),
    _lang("Assembly", (".asm", ".s", ".nasm"), ";"),  # the "asm" grammar errors on any file that opens with a comment
    _lang("Augeas", (".aug",), None, _ML_BLOCK),
    _lang("AWK", (".awk",), "#"),
    _lang("Batchfile", (".bat", ".cmd"), "REM"),
    _lang("Bluespec", (".bsv",), "//", _C_BLOCK),
    _lang("C", (".c", ".h"), "//", _C_BLOCK, "c"),
    _lang("C#", (".cs", ".csx"), "//", _C_BLOCK, "csharp"),
    _lang("Clojure", (".clj", ".cljs", ".cljc", ".edn"), ";", grammar="clojure"),
    _lang("CMake", (".cmake",), "#", grammar="cmake", filenames=("CMakeLists.txt",)),
    _lang("CoffeeScript", (".coffee", ".cson"), "#", ("###", "###")),
    _lang("Common Lisp", (".lisp", ".lsp", ".cl", ".asd"), ";", ("#|", "|#"), "commonlisp"),
    _lang(
        "C++",
        (".cpp", ".cc", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ipp", ".tcc", ".inl"),
        "//",
        _C_BLOCK,
        "cpp",
    ),
    _lang("CSS", (".css",), None, _C_BLOCK, "css"),
    _lang("CUDA", (".cu", ".cuh"), "//", _C_BLOCK, "cuda"),
    _lang("Dart", (".dart",), "//", _C_BLOCK, "dart"),
    _lang("Dockerfile", (".dockerfile",), "#", grammar="dockerfile", filenames=("Dockerfile", "Containerfile")),
    _lang("Elixir", (".ex", ".exs"), "#", grammar="elixir"),
    _lang("Elm", (".elm",), "--", _HASKELL_BLOCK, "elm"),
    _lang("Emacs Lisp", (".el",), ";", grammar="elisp", filenames=(".emacs", "_emacs")),
    _lang("Erlang", (".erl", ".hrl"), "%", grammar="erlang", filenames=("rebar.config",)),
    _lang("F#", (".fs", ".fsi", ".fsx"), "//", _ML_BLOCK, "fsharp"),
    _lang("Fortran", (".f", ".for", ".f77", ".f90", ".f95", ".f03", ".f08"), "!", grammar="fortran"),
    _lang("GLSL", (".glsl", ".vert", ".frag", ".geom", ".comp", ".tesc", ".tese"), "//", _C_BLOCK, "glsl"),
    _lang("Go", (".go",), "//", _C_BLOCK, "go"),
    _lang("Groovy", (".groovy", ".gvy", ".gradle"), "//", _C_BLOCK, "groovy", filenames=("Jenkinsfile",)),
    _lang("Haskell", (".hs", ".hsc"), "--", _HASKELL_BLOCK, "haskell"),
    _lang("HTML", (".html", ".htm", ".xhtml"), None, _XML_BLOCK, "html"),
    _lang("Idris", (".idr",), "--", _HASKELL_BLOCK),
    _lang("Isabelle", (".thy",), None, _ML_BLOCK),
    _lang("Java", (".java",), "//", _C_BLOCK, "java"),
    _lang("Java Server Pages", (".jsp", ".jspf"), None, ("<%--", "--%>")),
    _lang("JavaScript", (".js", ".mjs", ".cjs", ".jsx"), "//", _C_BLOCK, "javascript"),
    _lang("JSON", (".json",), grammar="json"),
    _lang("Julia", (".jl",), "#", ("#=", "=#"), "julia"),
    _lang("Jupyter Notebook", (".ipynb",), grammar="json"),
    _lang("Kotlin", (".kt", ".kts"), "//", _C_BLOCK, "kotlin"),
    _lang("Lean", (".lean",), "--", ("/-", "-/")),
    _lang("Literate Agda", (".lagda", ".lagda.md", ".lagda.tex", ".lagda.rst"), "%"),
    _lang("Literate CoffeeScript", (".litcoffee", ".coffee.md"), None, _XML_BLOCK),
    _lang("Literate Haskell", (".lhs",), "--"),
    _lang("Lua", (".lua",), "--", ("--[[", "]]"), "lua"),
    _lang("Makefile", (".mk", ".mak", ".make"), "#", grammar="make", filenames=("Makefile", "makefile", "GNUmakefile")),
    _lang("Maple", (".mpl", ".maple"), "#"),
    _lang("Mathematica", (".nb", ".wl", ".wls"), None, _ML_BLOCK),
    _lang("MATLAB", (".m",), "%", ("%{", "%}"), "matlab"),
    _lang("OCaml", (".ml", ".mli"), None, _ML_BLOCK, "ocaml"),
    _lang("Pascal", (".pas", ".pp", ".dpr", ".lpr"), None, _ML_BLOCK, "pascal"),
    _lang("Perl", (".pl", ".pm", ".t"), "#", grammar="perl"),
    _lang("PHP", (".php", ".phtml", ".php3", ".php4", ".php5", ".phps"), "//", _C_BLOCK, "php"),
    _lang("PowerShell", (".ps1", ".psm1", ".psd1"), "#", ("<#", "#>"), "powershell"),
    _lang("Prolog", (".prolog", ".yap"), "%", _C_BLOCK),
    _lang("Protocol Buffer", (".proto",), "//", _C_BLOCK, "proto"),
    _lang("Python", (".py", ".pyi", ".pyw"), "#", grammar="python", filenames=("SConstruct", "SConscript")),
    _lang("R", (".r",), "#", grammar="r", filenames=(".Rprofile",)),
    _lang("Racket", (".rkt", ".rktl"), ";", ("#|", "|#"), "racket"),
    _lang("RMarkdown", (".rmd",), None, _XML_BLOCK),
    _lang(
        "Ruby",
        (".rb", ".rake", ".gemspec", ".ru"),
        "#",
        ("=begin", "=end"),
        "ruby",
        filenames=("Rakefile", "Gemfile", "Vagrantfile", "Podfile", "Guardfile"),
    ),
    _lang("Rust", (".rs",), "//", _C_BLOCK, "rust"),
    _lang("SAS", (".sas",), None, _C_BLOCK),
    _lang("Scala", (".scala", ".sc", ".sbt"), "//", _C_BLOCK, "scala"),
    _lang("Scheme", (".scm", ".ss", ".sls", ".sld"), ";", ("#|", "|#"), "scheme"),
    _lang(
        "Shell",
        (".sh", ".bash", ".zsh", ".ksh"),
        "#",
        grammar="bash",
        filenames=(".bashrc", ".bash_profile", ".profile", ".zshrc"),
    ),
    _lang("Smalltalk", (".st",), None, ('"', '"')),
    _lang("Solidity", (".sol",), "//", _C_BLOCK, "solidity"),
    _lang("Sparql", (".sparql", ".rq"), "#", grammar="sparql"),
    _lang("SQL", (".sql",), "--", _C_BLOCK, "sql"),
    _lang("Stan", (".stan",), "//", _C_BLOCK),
    _lang("Standard ML", (".sml", ".sig", ".fun"), None, _ML_BLOCK),
    _lang("Stata", (".do", ".ado"), "//", _C_BLOCK),
    _lang("SystemVerilog", (".sv", ".svh"), "//", _C_BLOCK, "verilog"),
    _lang("TCL", (".tcl", ".tk", ".itcl"), "#"),  # the "tcl" grammar errors on 95% of valid Tcl files (measured)
    _lang("Tcsh", (".tcsh", ".csh"), "#"),
    _lang("TeX", (".tex", ".sty", ".cls", ".ltx", ".dtx"), "%", grammar="latex"),
    _lang("Thrift", (".thrift",), "//", _C_BLOCK, "thrift"),
    _lang("TypeScript", (".ts", ".tsx", ".mts", ".cts"), "//", _C_BLOCK, "typescript"),
    _lang("Verilog", (".v", ".vh"), "//", _C_BLOCK, "verilog"),
    _lang("VHDL", (".vhd", ".vhdl"), "--", grammar="vhdl"),
    _lang("Visual Basic", (".vb", ".bas", ".vbs", ".vba"), "'"),
    _lang("XSLT", (".xsl", ".xslt"), None, _XML_BLOCK, "xml"),
    _lang("Yacc", (".y", ".yy", ".yacc"), None, _C_BLOCK),
    _lang("YAML", (".yml", ".yaml"), "#", grammar="yaml"),
    _lang("Zig", (".zig",), "//", grammar="zig"),
    _lang("Markdown", (".md", ".markdown", ".mdown", ".mkd"), None, _XML_BLOCK, is_text=True),
    _lang("reStructuredText", (".rst", ".rest"), "..", is_text=True),
    _lang("Text", (".txt",), is_text=True),
)

LANGUAGE_NAMES: tuple[str, ...] = tuple(language.name for language in LANGUAGES)

_BY_NAME = {language.name: language for language in LANGUAGES}
_BY_FILENAME = {filename: language.name for language in LANGUAGES for filename in language.filenames}
_BY_EXTENSION = {extension: language.name for language in LANGUAGES for extension in language.extensions}
_MAX_EXTENSION_DOTS = max(extension.count(".") for extension in _BY_EXTENSION)
_STEM_PREFIXES = {
    "Makefile": "Makefile",
    "GNUmakefile": "Makefile",
    "Dockerfile": "Dockerfile",
    "Containerfile": "Dockerfile",
}


def _invert(names_by_language: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {name: language for language, names in names_by_language.items() for name in names}


# Interpreter named by a shebang -> language. A version suffix is stripped first ("python3.11" -> "python").
_INTERPRETERS = _invert(
    {
        "Python": ("python", "pypy"),
        "Shell": ("sh", "bash", "dash", "zsh", "ksh", "ash", "mksh"),
        "Tcsh": ("tcsh", "csh"),
        "Perl": ("perl",),
        "Ruby": ("ruby",),
        "JavaScript": ("node", "nodejs"),
        "TypeScript": ("deno", "ts-node"),
        "PHP": ("php",),
        "Lua": ("lua", "luajit"),
        "R": ("rscript",),
        "Julia": ("julia",),
        "AWK": ("awk", "gawk", "mawk", "nawk"),
        "TCL": ("tclsh", "wish"),
        "Makefile": ("make",),
        "PowerShell": ("pwsh",),
        "Racket": ("racket",),
        "Scheme": ("guile", "scheme"),
        "Common Lisp": ("sbcl", "clisp"),
        "Erlang": ("escript",),
        "Elixir": ("elixir",),
        "Groovy": ("groovy",),
        "Kotlin": ("kotlin",),
        "Scala": ("scala",),
        "Haskell": ("runhaskell", "runghc"),
        "OCaml": ("ocaml",),
        "Emacs Lisp": ("emacs",),
        "AppleScript": ("osascript",),
    }
)

# Emacs major mode (lowercase, "-mode" stripped) or Vim filetype named by a modeline -> language.
_MODES = _invert(
    {
        "C++": ("c++", "cpp"),
        "C": ("c",),
        "C#": ("csharp", "cs"),
        "Python": ("python",),
        "Perl": ("perl", "cperl"),
        "Ruby": ("ruby",),
        "Shell": ("sh", "shell-script", "bash", "zsh"),
        "Makefile": ("makefile", "make"),
        "Common Lisp": ("lisp", "common-lisp"),
        "Emacs Lisp": ("emacs-lisp",),
        "Scheme": ("scheme",),
        "TCL": ("tcl",),
        "Java": ("java",),
        "JavaScript": ("javascript", "js"),
        "TypeScript": ("typescript",),
        "Fortran": ("fortran", "f90"),
        "SQL": ("sql",),
        "TeX": ("tex", "latex", "plain-tex"),
        "YAML": ("yaml",),
        "JSON": ("json",),
        "CMake": ("cmake",),
        "Markdown": ("markdown",),
        "reStructuredText": ("rst",),
        "Text": ("text",),
        "Assembly": ("asm",),
        "AWK": ("awk",),
        "Lua": ("lua",),
        "HTML": ("html",),
        "CSS": ("css",),
        "Go": ("go",),
        "Rust": ("rust",),
        "Haskell": ("haskell",),
        "OCaml": ("ocaml", "tuareg"),
        "Erlang": ("erlang",),
        "Elixir": ("elixir",),
        "MATLAB": ("matlab", "octave"),
        "Pascal": ("pascal",),
        "PHP": ("php",),
        "Kotlin": ("kotlin",),
        "Scala": ("scala",),
        "R": ("r",),
        "Julia": ("julia",),
        "Dockerfile": ("dockerfile",),
        "Groovy": ("groovy",),
        "Verilog": ("verilog",),
        "VHDL": ("vhdl",),
        "Dart": ("dart",),
    }
)

_SHEBANG = re.compile(r"#!\s*(\S+)(.*)")
_EMACS_MODELINE = re.compile(r"-\*-\s*(.*?)\s*-\*-")
_VIM_MODELINE = re.compile(r"\b(?:vim?|ex):.*?\b(?:ft|filetype|syntax|syn)=([\w+#-]+)")
_VERSION_SUFFIX = re.compile(r"[\d.]+$")
_MODELINE_LINES = 5


def get_language(name: str) -> Language:
    """The table entry of a language by its display name; ValueError naming it when unknown."""
    language = _BY_NAME.get(name)
    if language is None:
        raise ValueError(f"unknown language {name!r}; known languages are listed in repolm.data.languages")
    return language


def _language_of_shebang(first_line: str) -> str | None:
    match = _SHEBANG.match(first_line)
    if match is None:
        return None
    program, arguments = match.group(1).rsplit("/", 1)[-1], match.group(2).split()
    if program == "env":
        # `#!/usr/bin/env [-S] [VAR=value ...] program args`: the first word that is neither an option nor an
        # assignment is the program.
        words = [word for word in arguments if not word.startswith("-") and "=" not in word]
        if not words:
            return None
        program = words[0].rsplit("/", 1)[-1]
    name = program.lower()
    return _INTERPRETERS.get(name) or _INTERPRETERS.get(_VERSION_SUFFIX.sub("", name))


def _language_of_modeline(head: str) -> str | None:
    for line in head.splitlines()[:_MODELINE_LINES]:
        emacs = _EMACS_MODELINE.search(line)
        if emacs is not None:
            # Either the bare mode (`-*- C++ -*-`) or variables (`-*- mode: c++; indent-tabs-mode: nil -*-`).
            content = emacs.group(1).strip()
            if ":" not in content:
                mode = content
            else:
                variables = dict(
                    (key.strip().lower(), value.strip())
                    for key, _, value in (part.partition(":") for part in content.split(";"))
                    if value
                )
                mode = variables.get("mode", "")
            language = _MODES.get(mode.lower().removesuffix("-mode"))
            if language is not None:
                return language
        vim = _VIM_MODELINE.search(line)
        if vim is not None and vim.group(1).lower() in _MODES:
            return _MODES[vim.group(1).lower()]
    return None


def _language_of_head(head: str) -> str | None:
    first_line = head.split("\n", 1)[0].strip()
    if first_line.startswith("#!"):
        return _language_of_shebang(first_line)
    return _language_of_modeline(head)


@lru_cache(maxsize=4096)
def _language_of_name(name: str) -> str | None:
    if name in _BY_FILENAME:
        return _BY_FILENAME[name]
    lowered = name.lower()
    parts = lowered.split(".")
    # Longest compound extension first: "x.lagda.md" tries ".lagda.md", then ".md". A leading dot (".bashrc")
    # is a hidden file's name, not an extension.
    for dots in range(min(_MAX_EXTENSION_DOTS, len(parts) - 1), 0, -1):
        extension = "." + ".".join(parts[-dots:])
        if extension in _BY_EXTENSION and extension != lowered:
            return _BY_EXTENSION[extension]
    return _STEM_PREFIXES.get(name.split(".", 1)[0])


def language_of(path: str, head: str | None = None) -> str | None:
    """The language of a file from its name, refined by the head of its content; None when unknown.

    `path` is a POSIX path (only the last part is used); `head` is the start of the decoded content (the first
    ~200 characters are enough). The rules and their order are in the module docstring.
    """
    name = PurePosixPath(path).name
    language = _language_of_name(name)
    if language == "C" and head is not None and name.lower().endswith(".h"):
        if _language_of_modeline(head) == "C++":
            return "C++"
    if language is None and head:
        language = _language_of_head(head)
    return language


def _sanitize(path: str, block: tuple[str, str] | None) -> str:
    # Keep the header on one line and its comment closed: control characters become spaces, and the block's start
    # and end markers (nested comments in OCaml and Haskell count starts) and "--" (which XML forbids inside
    # comments) are broken up with spaces inside the path; a one-character marker (Smalltalk's '"') is dropped.
    text = "".join(" " if ord(character) < 32 or ord(character) == 127 else character for character in path)
    if block is not None:
        for marker in block:
            text = text.replace(marker, " ".join(marker) if len(marker) > 1 else "")
        if block == _XML_BLOCK:
            text = text.replace("--", "- -")
    return text


def path_header(language: str, path: str) -> str:
    """The comment line that heads a file in a repository sample, e.g. "# pkg/util.py\\n"; "" when the language
    has no comment syntax (JSON, Jupyter Notebook, Text).

    The line comment is used when the language has one, else the block comment. Control characters in the path
    become spaces and block-comment markers inside it are broken up, so the header is always one closed comment line.
    """
    entry = get_language(language)
    if entry.line_comment is not None:
        return f"{entry.line_comment} {_sanitize(path, None)}\n"
    if entry.block_comment is not None:
        start, end = entry.block_comment
        return f"{start} {_sanitize(path, entry.block_comment)} {end}\n"
    return ""
