"""Import extraction per language: every import form of the eleven dependency languages, comments and strings
skipped, declared packages and namespaces, and languages without a parser."""

from __future__ import annotations

from repolm.data.import_extraction import DEPENDENCY_LANGUAGES, extract_declarations, extract_imports


def test_python_extraction_covers_every_import_form_and_skips_strings_and_comments():
    text = (
        "import os, sys as system\n"
        "import a.b.c as d\n"
        "from . import x\n"
        "from ..m import y, z as w\n"
        "from pkg.sub import (\n    one,  # the first\n    two,\n)\n"
        '"""\nimport in_docstring\n"""\n'
        "# import in_comment\n"
        "text = 'import in_string'\n"
        "from star import *\n"
        "from . import *\n"
        "if True:\n    import nested\n"
        "x = 1; import after_semicolon\n"
        "from long.name \\\n    import continued\n"
    )
    assert extract_imports(text, "Python") == [
        "os",
        "sys",
        "a.b.c",
        ".x",
        "..m.y",
        "..m.z",
        "pkg.sub.one",
        "pkg.sub.two",
        "star",
        ".",
        "nested",
        "after_semicolon",
        "long.name.continued",
    ]


def test_java_extraction_and_package():
    text = (
        "/* Licensed under ...\n * import not.this.One;\n */\npackage org.example.app;\n\n"
        "import java.util.List;\nimport static org.example.util.Strings.join;\nimport org.example.model.*;\n"
        "// import not.this.Two;\n\npublic class App {}\n"
    )
    assert extract_imports(text, "Java") == ["java.util.List", "org.example.util.Strings.join", "org.example.model.*"]
    assert extract_declarations(text, "Java") == ["org.example.app"]


def test_csharp_extraction_and_namespaces():
    text = (
        "using System;\nusing static Shop.Util.Strings;\nusing Alias = Shop.Models.Order;\nglobal using Shop.Core;\n"
        "namespace Shop.App;\n\nclass A { void F() { using (var f = Open()) { } using var g = Open(); } }\n"
    )
    assert extract_imports(text, "C#") == ["System", "Shop.Util.Strings", "Shop.Models.Order", "Shop.Core"]
    assert extract_declarations(text, "C#") == ["Shop.App"]
    assert extract_declarations("namespace A.B\n{\n    class C {}\n}\n", "C#") == ["A.B"]


def test_c_extraction_quotes_angles_and_comments():
    text = (
        '#include "local.h"\n#include <bits/types.h>\n  #  include "../up/z.h"\n#include_next <limits.h>\n'
        '/* #include "commented.h"\n */\n// #include "commented2.h"\nconst char *s = "/*"; int i = 1 * 2;\n'
        '#include "after_string.h"\nx = y # include "not_a_directive.h"\n'
    )
    assert extract_imports(text, "C") == ["local.h", "<bits/types.h>", "../up/z.h", "<limits.h>", "after_string.h"]
    assert extract_imports('#include <vector>\n#include "impl.hpp"\n', "C++") == ["<vector>", "impl.hpp"]


def test_javascript_and_typescript_extraction():
    text = (
        "import React from 'react';\nimport { a, b as c } from \"./a\";\nimport * as ns from './ns.js';\n"
        "import './side-effect';\nimport type { T } from '../types';\nimport {\n  many,\n  names,\n} from './many';\n"
        "export { x } from './x';\nexport * from \"./all\";\nconst m = require('./m');\n"
        "const lazy = await import('./lazy');\n// import nope from './commented';\n"
        "const glob = 'src/**/*.js';\nconst later = require(\"./later\");\n"
    )
    expected = ["react", "./a", "./ns.js", "./side-effect", "../types", "./many", "./x", "./all", "./m", "./lazy"]
    assert extract_imports(text, "TypeScript") == [*expected, "./later"]
    assert extract_imports(text, "JavaScript") == [*expected, "./later"]


def test_go_extraction_and_module():
    text = (
        'package main\n\nimport "fmt"\nimport (\n\t"os"\n\tutil "example.com/m/pkg/util"\n'
        '\t// "commented/out"\n\t_ "example.com/m/internal/db"\n)\n'
    )
    assert extract_imports(text, "Go") == ["fmt", "os", "example.com/m/pkg/util", "example.com/m/internal/db"]
    assert extract_declarations("// the module\nmodule example.com/m\n\ngo 1.21\n", "Go") == ["example.com/m"]


def test_rust_extraction_expands_use_trees():
    text = (
        "mod parser;\npub mod ast;\npub(crate) mod lexer;\nmod inline { }\nuse crate::parser::Parser;\n"
        "use super::util::{self, helper as h, nested::{A, B}};\nuse self::ast::*;\nuse std::collections::HashMap;\n"
        "fn f<'a>(x: &'a str) -> &'a str { x }\n// use crate::commented;\n"
    )
    assert extract_imports(text, "Rust") == [
        "self::parser",
        "self::ast",
        "self::lexer",
        "crate::parser::Parser",
        "super::util",
        "super::util::helper",
        "super::util::nested::A",
        "super::util::nested::B",
        "self::ast::*",
        "std::collections::HashMap",
    ]


def test_php_extraction():
    text = (
        "<?php\nnamespace App\\Http;\n\nrequire_once __DIR__ . '/../vendor/autoload.php';\n"
        "include 'lib/helpers.php';\nrequire dirname(__FILE__) . \"/config.php\";\nuse App\\Models\\User;\n"
        "use App\\Services\\{Mailer, Logger as Log};\nuse function App\\helpers\\format;\nuse A\\B, C\\D as E;\n"
        "# require 'commented.php';\n$f = function () use ($x) { return $x; };\n"
    )
    assert extract_imports(text, "PHP") == [
        "./../vendor/autoload.php",
        "lib/helpers.php",
        "./config.php",
        "App\\Models\\User",
        "App\\Services\\Mailer",
        "App\\Services\\Logger",
        "App\\helpers\\format",
        "A\\B",
        "C\\D",
    ]
    assert extract_declarations(text, "PHP") == ["App\\Http"]


def test_ruby_extraction():
    text = (
        "require 'json'\nrequire_relative 'lib/helper'\nrequire_relative '../up'\nload 'tasks.rb'\n"
        "# require 'commented'\n=begin\nrequire 'in_block_comment'\n=end\nrequire \"foo/bar\"\n"
    )
    assert extract_imports(text, "Ruby") == ["json", "./lib/helper", "../up", "tasks.rb", "foo/bar"]


def test_languages_without_a_parser_give_nothing():
    assert extract_imports("import x from 'y'\n", "Markdown") == []
    assert extract_imports("#include <x.h>\n", "Objective-C") == []
    assert "Python" in DEPENDENCY_LANGUAGES and "Markdown" not in DEPENDENCY_LANGUAGES
    assert {"Python", "Java", "C#", "C", "C++"} <= DEPENDENCY_LANGUAGES
