"""Tests of the language table: coverage of the paper's languages, unambiguous extensions, detection from names,
shebangs and modelines, and path headers that are real comments of their language."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from repolm.data.languages import LANGUAGE_NAMES, LANGUAGES, get_language, language_of, path_header

# The paper's Table 1, as listed in the facts file (section 1.8).
PAPER_LANGUAGES = (
    "Ada, Agda, Alloy, ANTLR, AppleScript, Assembly, Augeas, AWK, Batchfile, Bluespec, "
    "C, C#, Clojure, CMake, CoffeeScript, Common Lisp, C++, CSS, CUDA, Dart, Dockerfile, "
    "Elixir, Elm, Emacs Lisp, Erlang, F#, Fortran, GLSL, Go, Groovy, Haskell, HTML, Idris, Isabelle, "
    "Java, Java Server Pages, JavaScript, JSON, Julia, Jupyter Notebook, Kotlin, Lean, Literate Agda, "
    "Literate CoffeeScript, Literate Haskell, Lua, "
    "Makefile, Maple, Mathematica, MATLAB, OCaml, Pascal, Perl, PHP, PowerShell, Prolog, Protocol Buffer, Python, "
    "R, Racket, RMarkdown, Ruby, Rust, SAS, Scala, Scheme, Shell, Smalltalk, Solidity, Sparql, SQL, Stan, "
    "Standard ML, Stata, SystemVerilog, "
    "TCL, Tcsh, TeX, Thrift, TypeScript, Verilog, VHDL, Visual Basic, XSLT, Yacc, YAML, Zig"
).split(", ")


def test_table_covers_the_paper_languages_and_prose_formats() -> None:
    assert len(PAPER_LANGUAGES) == 87
    assert set(PAPER_LANGUAGES) <= set(LANGUAGE_NAMES)
    assert {"Markdown", "reStructuredText", "Text"} <= set(LANGUAGE_NAMES)
    assert len(LANGUAGE_NAMES) == len(set(LANGUAGE_NAMES))
    assert {language.name for language in LANGUAGES if language.is_text} == {"Markdown", "reStructuredText", "Text"}


def test_extensions_and_filenames_are_unambiguous_and_well_formed() -> None:
    owners: dict[str, str] = {}
    for language in LANGUAGES:
        for extension in language.extensions:
            assert extension.startswith(".") and extension == extension.lower(), (language.name, extension)
            assert extension not in owners, f"{extension} belongs to {owners[extension]} and {language.name}"
            owners[extension] = language.name
    filename_owners: dict[str, str] = {}
    for language in LANGUAGES:
        for filename in language.filenames:
            assert filename not in filename_owners, filename
            filename_owners[filename] = language.name


@pytest.mark.parametrize(
    ("path", "head", "expected"),
    [
        ("pkg/util.py", None, "Python"),
        ("src/Main.java", None, "Java"),
        ("a/b/lib.rs", None, "Rust"),
        ("x/Program.cs", None, "C#"),
        ("widget.TSX", None, "TypeScript"),
        ("lib/engine.cpp", None, "C++"),
        ("include/engine.hpp", None, "C++"),
        ("kernel.cu", None, "CUDA"),
        ("main.c", None, "C"),
        ("util.h", None, "C"),
        ("util.h", "/* plain C header */\n#include <stdio.h>\n", "C"),
        ("stl_vector.h", "// Vector implementation -*- C++ -*-\n\n// Copyright (C) 2001-2022\n", "C++"),
        ("thing.h", "/* -*- mode: c++; indent-tabs-mode: nil -*- */\n", "C++"),
        ("thing.h", "// vim: set ft=cpp:\n", "C++"),
        ("c++/12/vector", "// <vector> -*- C++ -*-\n\n// Copyright (C) 2001-2022 Free Software Foundation\n", "C++"),
        ("bin/tool", "#!/usr/bin/env python3\nimport sys\n", "Python"),
        ("bin/tool", "#!/usr/bin/python3.11 -u\n", "Python"),
        ("configure", "#!/bin/sh\n# Guess values\n", "Shell"),
        ("bin/run", "#! /bin/bash -e\n", "Shell"),
        ("script", "#!/usr/bin/perl -w\nuse strict;\n", "Perl"),
        ("bin/rails", "#!/usr/bin/env ruby\n", "Ruby"),
        ("cli", "#!/usr/bin/env node\n'use strict';\n", "JavaScript"),
        ("serve", "#!/usr/bin/env -S deno run --allow-net\n", "TypeScript"),
        ("debian/rules", "#!/usr/bin/make -f\n", "Makefile"),
        ("report.cgi", "#!/usr/bin/perl\n", "Perl"),
        ("tool", "# -*- mode: python; coding: utf-8 -*-\nimport os\n", "Python"),
        ("tool", "#!/usr/bin/env some-unknown-interpreter\n", None),
        ("plain", "just words here\n", None),
        ("plain", None, None),
        ("Makefile", None, "Makefile"),
        ("sub/GNUmakefile", None, "Makefile"),
        ("Makefile.am", None, "Makefile"),
        ("Dockerfile", None, "Dockerfile"),
        ("docker/Dockerfile.dev", None, "Dockerfile"),
        ("CMakeLists.txt", None, "CMake"),
        ("requirements.txt", None, "Text"),
        ("README.md", None, "Markdown"),
        ("docs/index.rst", None, "reStructuredText"),
        ("Gemfile", None, "Ruby"),
        ("notes.lagda.md", None, "Literate Agda"),
        ("boot.S", None, "Assembly"),
        ("analysis.Rmd", None, "RMarkdown"),
        ("model.R", None, "R"),
        ("pom.xml", None, None),
        ("style.xsl", None, "XSLT"),
        ("pkg.json", None, "JSON"),
        ("config.yml", None, "YAML"),
        ("nb.ipynb", None, "Jupyter Notebook"),
        ("schema.proto", None, "Protocol Buffer"),
        (".md", None, None),
        (".bashrc", None, "Shell"),
        ("a.unknownext", None, None),
        # A known extension beats the head.
        ("setup.py", "#!/bin/bash\n", "Python"),
    ],
)
def test_language_of(path: str, head: str | None, expected: str | None) -> None:
    assert language_of(path, head) == expected


def test_get_language() -> None:
    assert get_language("Python").line_comment == "#"
    assert get_language("C++").tree_sitter == "cpp"
    with pytest.raises(ValueError, match="Klingon"):
        get_language("Klingon")


def test_path_header_examples() -> None:
    assert path_header("Python", "pkg/util.py") == "# pkg/util.py\n"
    assert path_header("Java", "src/A.java") == "// src/A.java\n"
    assert path_header("HTML", "index.html") == "<!-- index.html -->\n"
    assert path_header("CSS", "a.css") == "/* a.css */\n"
    assert path_header("Lua", "x.lua") == "-- x.lua\n"
    assert path_header("JSON", "package.json") == ""
    assert path_header("Jupyter Notebook", "a.ipynb") == ""
    assert path_header("Text", "notes.txt") == ""
    with pytest.raises(ValueError):
        path_header("Klingon", "a.kl")


@pytest.mark.parametrize("path", ["pkg/util.py", "odd dir/a*/b--c (1).x", "line\nbreak/*/x.y", "x*)(*{--}-->.z"])
def test_every_header_is_one_closed_comment_line(path: str) -> None:
    for language in LANGUAGES:
        header = path_header(language.name, path)
        if language.line_comment is None and language.block_comment is None:
            assert header == ""
            continue
        assert header.endswith("\n") and header.count("\n") == 1, (language.name, header)
        body = header[:-1]
        if language.line_comment is not None:
            assert body.startswith(language.line_comment + " "), (language.name, header)
        else:
            start, end = language.block_comment
            assert body.startswith(start + " ") and body.endswith(" " + end), (language.name, header)
            inner = body[len(start) : -len(end)]
            assert start not in inner and end not in inner, (language.name, header)
    assert ast.parse(path_header("Python", path)).body == []


# A minimal valid program to follow the header where a grammar rejects a comment-only file.
_BODY_AFTER_HEADER = {"PowerShell": "$x = 1\n", "XSLT": "<xsl:stylesheet/>\n", "PHP": "<?php echo 1;\n"}


def _nodes(node):
    yield node
    for child in node.children:
        yield from _nodes(child)


@pytest.mark.parametrize("path", ["pkg/sub dir/file.x", "weird*/--/(*x*)/{-y-}.z"])
def test_headers_parse_as_comments_with_tree_sitter(path: str) -> None:
    from tree_sitter_language_pack import get_parser

    for language in LANGUAGES:
        header = path_header(language.name, path)
        if language.tree_sitter is None or not header:
            continue
        source = (header + _BODY_AFTER_HEADER.get(language.name, "")).encode()
        root = get_parser(language.tree_sitter).parse(source).root_node
        assert not root.has_error, (language.name, header, str(root))
        if language.name == "PHP":
            continue  # a PHP file opens in HTML mode: the header is page text before `<?php` (documented)
        covering = [node for node in _nodes(root) if "comment" in node.type.lower() and node.start_byte == 0]
        assert covering, (language.name, header, str(root))
        assert max(node.end_byte for node in covering) >= len(header.rstrip("\n").encode()), (language.name, header)


def test_grammar_names_exist_in_the_language_pack() -> None:
    from tree_sitter_language_pack import get_parser

    for language in LANGUAGES:
        if language.tree_sitter is not None:
            get_parser(language.tree_sitter)


def test_libstdcxx_extensionless_headers_are_cxx() -> None:
    include = Path("/usr/include/c++")
    versions = sorted(include.iterdir()) if include.is_dir() else []
    if not versions:
        pytest.skip("libstdc++ headers not found under /usr/include/c++")
    headers = [path for path in sorted(versions[-1].iterdir()) if path.is_file() and "." not in path.name]
    assert len(headers) > 20
    for header in headers:
        with open(header, encoding="utf-8", errors="replace") as handle:
            head = handle.read(200)
        assert language_of(os.fspath(header), head) == "C++", header
