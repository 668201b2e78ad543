"""Dependency parsing and Algorithm 1: per-language extraction, in-repository resolution, ordering, cycles, and the
real trees on this machine (the Python stdlib, /usr/include, the JDK's java.base), which skip when absent."""

from __future__ import annotations

import glob
import logging
import os
import random
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repolm.data.dependencies import (
    DEPENDENCY_LANGUAGES,
    ImportResolver,
    dependency_cycles,
    dependency_order,
    extract_declarations,
    extract_imports,
    resolve_dependencies,
)
from repolm.data.records import CodeFile

logger = logging.getLogger(__name__)

LANGUAGE_OF_EXTENSION = {
    ".py": "Python",
    ".java": "Java",
    ".cs": "C#",
    ".c": "C",
    ".h": "C",
    ".hpp": "C++",
    ".cpp": "C++",
    ".js": "JavaScript",
    ".mjs": "JavaScript",
    ".ts": "TypeScript",
    ".tsx": "TypeScript",
    ".go": "Go",
    ".rs": "Rust",
    ".php": "PHP",
    ".rb": "Ruby",
    ".mod": "Go Module",
    ".md": "Markdown",
}


def repo(files: dict[str, str]) -> list[CodeFile]:
    """CodeFiles from {path: text}, the language taken from the extension."""
    return [CodeFile(path, text, LANGUAGE_OF_EXTENSION[os.path.splitext(path)[1]]) for path, text in files.items()]


def dependencies_of(files: dict[str, str]) -> dict[str, set[str]]:
    """resolve_dependencies, with files that depend on nothing left out (easier to compare)."""
    return {path: found for path, found in resolve_dependencies(repo(files)).items() if found}


# -----------------------------------------------------------------------------
# Extraction


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


# -----------------------------------------------------------------------------
# Resolution


def test_python_relative_absolute_nested_and_init_resolution():
    files = {
        "pkg/__init__.py": "from .core import run\n",
        "pkg/core.py": "from . import config\nfrom .models import Model\nfrom pkg.util import helper\nimport os\n",
        "pkg/config.py": "import json\n",
        "pkg/util.py": "import subprocess\n",
        "pkg/subprocess.py": "x = 1\n",
        "pkg/models/__init__.py": "from .base import Model\n",
        "pkg/models/base.py": "from ..util import helper\nfrom .. import config\nfrom ... import outside\n",
        "pkg/models/extra.py": "from . import *\nimport pkg.models.base\nfrom pkg import util\n",
        "src/lib/a.py": "import lib.b\nfrom lib import c\n",
        "src/lib/b.py": "",
        "src/lib/c.py": "import a\n",  # src/lib is no package: "a" names src/lib/a.py (a script folder)
        "self.py": "import self\n",
    }
    assert dependencies_of(files) == {
        "pkg/__init__.py": {"pkg/core.py"},
        "pkg/core.py": {"pkg/config.py", "pkg/models/__init__.py", "pkg/util.py"},
        # `import subprocess` inside a package is the stdlib's (no Python 2 implicit relative import)
        "pkg/models/__init__.py": {"pkg/models/base.py"},
        "pkg/models/base.py": {"pkg/util.py", "pkg/config.py"},
        "pkg/models/extra.py": {"pkg/models/__init__.py", "pkg/models/base.py", "pkg/util.py"},
        "src/lib/a.py": {"src/lib/b.py", "src/lib/c.py"},
        "src/lib/c.py": {"src/lib/a.py"},
    }


def test_python_prefers_the_closest_of_several_same_named_modules():
    files = {
        "app/__init__.py": "",
        "app/main.py": "import app.helpers\n",
        "app/helpers.py": "",
        "vendor/app/__init__.py": "",
        "vendor/app/helpers.py": "",
        "vendor/app/use.py": "import app.helpers\n",
    }
    found = dependencies_of(files)
    assert found["app/main.py"] == {"app/helpers.py"}
    assert found["vendor/app/use.py"] == {"vendor/app/helpers.py"}


def test_java_imports_wildcards_static_nested_and_same_package():
    files = {
        "src/org/shop/App.java": "package org.shop;\nimport org.shop.model.Item;\nimport org.shop.util.*;\n"
        "import static org.shop.util.Text.join;\nimport org.shop.model.Item.Kind;\nimport java.util.List;\n"
        "class App { Cart cart; Text text; }\n",
        "src/org/shop/Cart.java": "package org.shop;\nclass Cart { App owner; }\n",
        "src/org/shop/Unused.java": "package org.shop;\nclass Unused {}\n",
        "src/org/shop/model/Item.java": "package org.shop.model;\npublic class Item { enum Kind {} }\n",
        "src/org/shop/util/Text.java": "package org.shop.util;\npublic class Text {}\n",
        "src/org/shop/util/Numbers.java": "package org.shop.util;\npublic class Numbers {}\n",
        "src/org/shop/util/Both.java": "package org.shop.util;\nimport org.shop.other.*;\nclass Both {}\n",
        "src/org/shop/other/A.java": "package org.shop.other;\nclass A {}\n",
        "src/org/shop/other/B.java": "package org.shop.other;\nclass B {}\n",
    }
    found = dependencies_of(files)
    # the wildcard is narrowed to the classes named in the file (Text); Cart is an implicit same-package use
    assert found["src/org/shop/App.java"] == {
        "src/org/shop/model/Item.java",
        "src/org/shop/util/Text.java",
        "src/org/shop/Cart.java",
    }
    assert found["src/org/shop/Cart.java"] == {"src/org/shop/App.java"}
    # no class of the package is named in Both: the wildcard keeps the whole package
    assert found["src/org/shop/util/Both.java"] == {"src/org/shop/other/A.java", "src/org/shop/other/B.java"}


def test_csharp_using_namespaces_static_alias_and_same_namespace():
    files = {
        "App/Program.cs": "using Shop.Models;\nusing static Shop.Util.Strings;\nusing O = Shop.Models.Order;\n"
        "namespace Shop.App;\nclass Program { Customer c; Runner r; }\n",
        "App/Runner.cs": "namespace Shop.App\n{\n    class Runner { }\n}\n",
        "Models/Customer.cs": "namespace Shop.Models;\npublic class Customer { }\n",
        "Models/Order.cs": "namespace Shop.Models;\npublic class Order { Customer buyer; }\n",
        "Util/Strings.cs": "namespace Shop.Util;\npublic static class Strings { }\n",
    }
    found = dependencies_of(files)
    assert found["App/Program.cs"] == {"Models/Customer.cs", "Models/Order.cs", "Util/Strings.cs", "App/Runner.cs"}
    assert found["Models/Order.cs"] == {"Models/Customer.cs"}


def test_c_includes_relative_parent_and_by_suffix():
    files = {
        "src/main.c": '#include "list.h"\n#include "../include/api.h"\n#include <lib/util.h>\n#include <stdio.h>\n',
        "src/list.h": '#include "types.h"\n',
        "include/api.h": "",
        "include/types.h": "",
        "third_party/lib/util.h": "",
        "src/util/x.cpp": '#include "list.h"\n#include "impl.hpp"\n',
        "src/util/impl.hpp": "",
    }
    assert dependencies_of(files) == {
        "src/main.c": {"src/list.h", "include/api.h", "third_party/lib/util.h"},
        "src/list.h": {"include/types.h"},
        "src/util/x.cpp": {"src/list.h", "src/util/impl.hpp"},
    }


def test_javascript_typescript_extensions_index_and_compiled_names():
    files = {
        "src/index.ts": "import { a } from './a';\nimport b from './lib';\nimport c from './c.js';\n"
        "import React from 'react';\nimport d from '../d.mjs';\n",
        "src/a.tsx": "export const a = 1;\n",
        "src/lib/index.ts": "export default 2;\n",
        "src/c.ts": "export default 3;\n",
        "d.mjs": "export default 4;\n",
        "web/app.js": "const m = require('./m');\nconst t = require('../src/a');\n",
        "web/m.js": "module.exports = {};\n",
    }
    assert dependencies_of(files) == {
        "src/index.ts": {"src/a.tsx", "src/lib/index.ts", "src/c.ts", "d.mjs"},
        "web/app.js": {"web/m.js", "src/a.tsx"},
    }


def test_go_module_packages_and_test_files():
    files = {
        "go.mod": "module example.com/shop\n\ngo 1.21\n",
        "main.go": 'package main\nimport (\n\t"fmt"\n\t"example.com/shop/internal/store"\n)\n',
        "internal/store/store.go": 'package store\nimport "example.com/shop/internal/util"\n',
        "internal/store/cache.go": "package store\n",
        "internal/store/store_test.go": "package store\n",
        "internal/util/util.go": "package util\n",
        "cmd/tool/tool.go": 'package main\nimport "example.com/shop"\n',
    }
    found = dependencies_of(files)
    assert found["main.go"] == {"internal/store/store.go", "internal/store/cache.go"}
    assert found["internal/store/store.go"] == {"internal/util/util.go"}
    assert found["cmd/tool/tool.go"] == {"main.go"}
    # without go.mod, a domain-like path is matched by its folder suffix
    gopath = {"lib/util/u.go": "package util\n", "app/a.go": 'package app\nimport "github.com/user/repo/lib/util"\n'}
    assert dependencies_of(gopath) == {"app/a.go": {"lib/util/u.go"}}


def test_rust_modules_crate_super_self_and_groups():
    files = {
        "src/lib.rs": "mod parser;\npub mod ast;\nuse crate::util::helper;\nmod util;\n",
        "src/parser/mod.rs": "mod lexer;\nuse super::ast::Node;\nuse self::lexer::{Token, Lexer as L};\n",
        "src/parser/lexer.rs": "use crate::util::{self, helper};\nuse std::io;\n",
        "src/ast.rs": "pub struct Node;\n",
        "src/util.rs": "mod inner;\npub fn helper() {}\n",
        "src/util/inner.rs": "use super::super::ast;\n",
    }
    assert dependencies_of(files) == {
        "src/lib.rs": {"src/parser/mod.rs", "src/ast.rs", "src/util.rs"},
        "src/parser/mod.rs": {"src/parser/lexer.rs", "src/ast.rs"},
        "src/parser/lexer.rs": {"src/util.rs"},
        "src/util.rs": {"src/util/inner.rs"},
        "src/util/inner.rs": {"src/ast.rs"},
    }


def test_php_require_and_psr4_use():
    files = {
        "public/index.php": "<?php\nrequire_once __DIR__ . '/../bootstrap.php';\nuse App\\Models\\User;\n",
        "bootstrap.php": "<?php\ninclude 'config/app.php';\n",
        "config/app.php": "<?php\nreturn [];\n",
        "src/Models/User.php": "<?php\nnamespace App\\Models;\nuse Traits\\Named;\nclass User { use Named; }\n",
        "src/Traits/Named.php": "<?php\nnamespace Traits;\ntrait Named {}\n",
        "src/Http/Controller.php": "<?php\nnamespace App\\Http;\nuse App\\Models\\User as Person;\n",
    }
    assert dependencies_of(files) == {
        "public/index.php": {"bootstrap.php", "src/Models/User.php"},
        "bootstrap.php": {"config/app.php"},
        "src/Models/User.php": {"src/Traits/Named.php"},
        "src/Http/Controller.php": {"src/Models/User.php"},
    }


def test_ruby_require_relative_and_load_path():
    files = {
        "bin/tool.rb": "require_relative '../lib/shop'\nrequire 'json'\n",
        "lib/shop.rb": "require 'shop/cart'\nrequire_relative 'shop/item'\n",
        "lib/shop/cart.rb": "require 'json'\n",
        "lib/shop/item.rb": "",
        "lib/shop/json.rb": "",  # not on the load path as "json": only lib/json.rb would be
    }
    assert dependencies_of(files) == {
        "bin/tool.rb": {"lib/shop.rb"},
        "lib/shop.rb": {"lib/shop/cart.rb", "lib/shop/item.rb"},
    }


def test_several_languages_in_one_repository_stay_within_their_family():
    files = {
        "tools/gen.py": "from tools import common\n",
        "tools/common.py": "",
        "native/core.c": '#include "core.h"\n',
        "native/core.h": "",
        "java/src/x/Main.java": "package x;\nimport x.util.Helper;\nclass Main {}\n",
        "java/src/x/util/Helper.java": "package x.util;\npublic class Helper {}\n",
        "web/app.ts": "import { f } from './f';\n",
        "web/f.js": "export function f() {}\n",
        "go.mod": "module example.com/multi\n",
        "svc/main.go": 'package main\nimport "example.com/multi/svc/db"\n',
        "svc/db/db.go": "package db\n",
        "rs/lib.rs": "mod core;\n",
        "rs/core.rs": "",
        "README.md": "import tools.common\n",
    }
    assert dependencies_of(files) == {
        "tools/gen.py": {"tools/common.py"},
        "native/core.c": {"native/core.h"},
        "java/src/x/Main.java": {"java/src/x/util/Helper.java"},
        "web/app.ts": {"web/f.js"},
        "svc/main.go": {"svc/db/db.go"},
        "rs/lib.rs": {"rs/core.rs"},
    }


def test_resolver_reports_unresolved_imports_as_empty():
    resolver = ImportResolver(repo({"a.py": "import numpy\nfrom . import b\n", "b.py": ""}))
    assert resolver.resolve_import("a.py", "numpy") == []
    assert resolver.resolve_import("a.py", ".b") == ["b.py"]


# -----------------------------------------------------------------------------
# Algorithm 1


def in_group_dependencies(paths: list[str], dependencies: dict[str, set[str]]) -> dict[str, set[str]]:
    present = set(paths)
    return {path: {d for d in dependencies.get(path, ()) if d in present and d != path} for path in present}


def weak_components(paths: list[str], dependencies: dict[str, set[str]]) -> list[set[str]]:
    neighbours = {path: set() for path in paths}
    for path, found in in_group_dependencies(paths, dependencies).items():
        for dependency in found:
            neighbours[path].add(dependency)
            neighbours[dependency].add(path)
    components, seen = [], set()
    for start in sorted(paths):
        if start in seen:
            continue
        component, stack = set(), [start]
        while stack:
            node = stack.pop()
            if node not in component:
                component.add(node)
                stack.extend(neighbours[node] - component)
        seen |= component
        components.append(component)
    return components


def assert_algorithm_one(paths: list[str], dependencies: dict[str, set[str]], sequences: list[list[str]]) -> None:
    """Each weakly connected group is one sequence, each file once, and every step took a file with the smallest
    current in-degree (number of its dependencies not placed yet) among the group's unplaced files."""
    assert sorted(path for sequence in sequences for path in sequence) == sorted(set(paths))
    assert [set(sequence) for sequence in sequences] == weak_components(paths, dependencies)
    edges = in_group_dependencies(paths, dependencies)
    for sequence in sequences:
        unplaced = set(sequence)
        for path in sequence:
            degree = {node: len(edges[node] & unplaced) for node in unplaced}
            assert degree[path] == min(degree.values()), (path, degree)
            unplaced.remove(path)


def strongly_connected(dependencies: dict[str, set[str]]) -> dict[str, int]:
    """Component number of every file (files outside any cycle get their own)."""
    component = {}
    for number, cycle in enumerate(dependency_cycles(dependencies)):
        for path in cycle:
            component[path] = number
    return component


def back_edges(dependencies: dict[str, set[str]], sequences: list[list[str]], outside_cycles: bool) -> list[tuple]:
    """(dependent, dependency) pairs where the dependency comes later (optionally only pairs not in one cycle)."""
    position = {path: index for sequence in sequences for index, path in enumerate(sequence)}
    component = strongly_connected(dependencies) if outside_cycles else {}
    return [
        (path, dependency)
        for path, found in dependencies.items()
        for dependency in found
        if dependency in position
        and position[dependency] > position[path]
        and not (path in component and component.get(dependency) == component[path])
    ]


def test_diamond_places_shared_dependency_first_and_top_last():
    dependencies = {"top": {"left", "right"}, "left": {"base"}, "right": {"base"}, "base": set()}
    for seed in range(10):
        [sequence] = dependency_order(list(dependencies), dependencies, seed=seed)
        assert sequence[0] == "base" and sequence[-1] == "top" and set(sequence[1:3]) == {"left", "right"}


def test_cycles_are_broken_and_reported():
    two_cycle = {"a": {"b"}, "b": {"a"}}
    [sequence] = dependency_order(["a", "b"], two_cycle, seed=1)
    assert sorted(sequence) == ["a", "b"]
    three_cycle = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    sequences = dependency_order(list(three_cycle), three_cycle, seed=2)
    assert_algorithm_one(list(three_cycle), three_cycle, sequences)
    assert sequences[0][-1] == "d"  # d's dependency is placed before d has the smallest in-degree
    assert dependency_cycles(three_cycle) == [["a", "b", "c"]]
    assert dependency_cycles({"self": {"self"}, "x": {"y"}}) == [["self"]]
    assert dependency_cycles(two_cycle) == [["a", "b"]]


def test_facts_file_example_graph():
    # A,B -> C/D -> F,G; B -> E (issue #43): one possible order is BACDFGE
    dependencies = {
        "A": set(),
        "B": set(),
        "C": {"A", "B"},
        "D": {"A", "B"},
        "F": {"C", "D"},
        "G": {"C", "D"},
        "E": {"B"},
    }
    orders = set()
    for seed in range(200):
        sequences = dependency_order(list(dependencies), dependencies, seed=seed)
        assert_algorithm_one(list(dependencies), dependencies, sequences)
        orders.add("".join(sequences[0]))
    assert "BACDFGE" in orders
    assert len(orders) > 5  # ties are really broken at random


def test_tie_breaking_is_seeded_and_independent_of_input_order():
    dependencies = {f"f{i:02d}": {f"f{(i * 7) % 40:02d}"} if i % 3 else set() for i in range(40)}
    paths = list(dependencies)
    first = dependency_order(paths, dependencies, seed="repo-1")
    shuffled = paths[:]
    random.Random(5).shuffle(shuffled)
    reordered = {path: set(dependencies[path]) for path in reversed(paths)}
    assert dependency_order(shuffled, reordered, seed="repo-1") == first
    assert dependency_order(paths, dependencies, seed="repo-1") == first
    assert len({str(dependency_order(paths, dependencies, seed=seed)) for seed in range(10)}) > 1


def test_groups_come_in_order_of_their_smallest_path_and_isolated_files_are_groups():
    dependencies = {"z/a": {"z/b"}, "a/x": set(), "m/1": {"m/2"}, "m/2": set(), "z/b": set()}
    sequences = dependency_order(list(dependencies), dependencies, seed=0)
    assert [min(sequence) for sequence in sequences] == ["a/x", "m/1", "z/a"]
    assert dependency_order([], {}, seed=0) == []


def test_dependencies_outside_the_paths_and_on_itself_are_ignored():
    sequences = dependency_order(["a", "b"], {"a": {"a", "b", "elsewhere"}, "b": set()}, seed=0)
    assert sequences == [["b", "a"]]


def test_cycle_aware_order_keeps_files_outside_a_cycle_after_their_dependencies():
    # the paper's rule: once every unplaced file has an unplaced dependency, any file with the smallest count goes
    dependencies = {"top": {"x"}, "x": {"y"}, "y": {"x"}}
    paper = {tuple(dependency_order(list(dependencies), dependencies, seed=seed)[0]) for seed in range(30)}
    assert any(order[0] == "top" for order in paper)
    for seed in range(30):
        [order] = dependency_order(list(dependencies), dependencies, seed=seed, cycle_aware=True)
        assert order.index("top") > order.index("x")


graphs = st.integers(min_value=1, max_value=14).flatmap(
    lambda size: st.tuples(
        st.just(size),
        st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, size - 1)), max_size=size * 3),
        st.integers(0, 10**6),
    )
)


@settings(max_examples=200, deadline=None)
@given(graphs, st.booleans())
def test_property_random_graphs(graph, acyclic):
    size, edges, seed = graph
    paths = [f"file{index:02d}" for index in range(size)]
    dependencies = {path: set() for path in paths}
    for dependent, dependency in edges:
        if acyclic and dependency >= dependent:
            continue  # a DAG: files depend only on earlier-numbered files
        dependencies[paths[dependent]].add(paths[dependency])
    sequences = dependency_order(paths, dependencies, seed=seed)
    assert_algorithm_one(paths, dependencies, sequences)
    if acyclic:
        assert back_edges(dependencies, sequences, outside_cycles=False) == []
    aware = dependency_order(paths, dependencies, seed=seed, cycle_aware=True)
    assert sorted(path for sequence in aware for path in sequence) == paths
    assert back_edges(dependencies, aware, outside_cycles=True) == []
    if acyclic:
        assert aware == sequences


def test_ten_thousand_files_order_in_well_under_a_second():
    generator = random.Random(0)
    paths = [f"src/module_{index:05d}.py" for index in range(10_000)]
    dependencies = {path: {generator.choice(paths) for _ in range(5)} for path in paths}
    started = time.perf_counter()
    sequences = dependency_order(paths, dependencies, seed=0)
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    cycles = dependency_cycles(dependencies)
    cycles_elapsed = time.perf_counter() - started
    logger.info("10k files, 50k edges: order %.3f s, Tarjan %.3f s", elapsed, cycles_elapsed)
    assert sum(map(len, sequences)) == 10_000
    assert elapsed < 1.0 and cycles_elapsed < 1.0
    assert len(cycles) >= 1


def test_tarjan_is_iterative_on_a_long_chain_and_a_long_cycle():
    length = 50_000
    chain = {f"n{index}": {f"n{index + 1}"} for index in range(length)}
    assert dependency_cycles(chain) == []
    ring = {**chain, f"n{length}": {"n0"}}
    [cycle] = dependency_cycles(ring)
    assert len(cycle) == length + 1


# -----------------------------------------------------------------------------
# Real trees (skipped when absent)

STDLIB = Path(sysconfig.get_paths()["stdlib"])
STDLIB_PACKAGES = ("json", "email", "asyncio", "xml", "importlib", "concurrent", "http", "urllib", "unittest")


def measure(name: str, files: list[CodeFile], is_internal) -> dict:
    """Resolve, order and find cycles of one repository; log and return the figures."""
    started = time.perf_counter()
    resolver = ImportResolver(files)
    dependencies = {file.path: resolver.dependencies(file.path) for file in files}
    resolve_seconds = time.perf_counter() - started
    started = time.perf_counter()
    sequences = dependency_order([file.path for file in files], dependencies, seed=name)
    order_seconds = time.perf_counter() - started
    aware = dependency_order([file.path for file in files], dependencies, seed=name, cycle_aware=True)
    cycles = dependency_cycles(dependencies)
    imports = internal = resolved = 0
    for file in files:
        for target in extract_imports(file.text, file.language):
            imports += 1
            if is_internal(target):
                internal += 1
                resolved += bool(resolver.resolve_import(file.path, target))
    figures = {
        "files": len(files),
        "megabytes": sum(len(file.text) for file in files) / 1e6,
        "imports": imports,
        "internal": internal,
        "resolved_rate": resolved / max(internal, 1),
        "edges": sum(map(len, dependencies.values())),
        "groups": len(sequences),
        "cycles": cycles,
        "back_edges": len(back_edges(dependencies, sequences, outside_cycles=False)),
        "back_edges_outside_cycles": len(back_edges(dependencies, sequences, outside_cycles=True)),
        "aware_back_edges_outside_cycles": len(back_edges(dependencies, aware, outside_cycles=True)),
        "resolve_seconds": resolve_seconds,
        "order_seconds": order_seconds,
        "dependencies": dependencies,
        "sequences": sequences,
    }
    largest = sorted(cycles, key=len, reverse=True)[:3]
    logger.info(
        "%s: %d files, %.1f MB, %d imports, %d internal, %.1f%% resolved, %d edges, %d groups, %d cycles %s, "
        "%d back edges (%d outside cycles; cycle-aware %d), resolve %.2f s, order %.3f s",
        name,
        figures["files"],
        figures["megabytes"],
        imports,
        internal,
        100 * figures["resolved_rate"],
        figures["edges"],
        len(sequences),
        len(cycles),
        [cycle if len(cycle) <= 4 else [*cycle[:3], f"... {len(cycle)} files"] for cycle in largest],
        figures["back_edges"],
        figures["back_edges_outside_cycles"],
        figures["aware_back_edges_outside_cycles"],
        resolve_seconds,
        order_seconds,
    )
    return figures


@pytest.mark.skipif(not (STDLIB / "email" / "message.py").is_file(), reason="the Python stdlib sources are absent")
def test_stdlib_packages_as_repositories():
    for package in STDLIB_PACKAGES:
        paths = sorted((STDLIB / package).rglob("*.py"))
        if not paths:
            continue
        files = [CodeFile(path.relative_to(STDLIB).as_posix(), path.read_text("utf-8"), "Python") for path in paths]
        figures = measure(
            f"stdlib/{package}", files, lambda target, package=package: target.split(".")[0] in ("", package)
        )
        assert figures["resolved_rate"] >= 0.99, package
        assert figures["aware_back_edges_outside_cycles"] == 0
        dependencies = figures["dependencies"]
        if package == "json":
            assert "json/scanner.py" in dependencies["json/decoder.py"]
            assert figures["back_edges"] == 0  # json has no cycle: a plain topological order
        if package == "email":
            assert {"email/_policybase.py", "email/utils.py"} <= dependencies["email/message.py"] | dependencies[
                "email/policy.py"
            ]
        assert_algorithm_one(list(dependencies), dependencies, figures["sequences"])


def read_usr_include(subfolders: tuple[str, ...] | None = None) -> list[CodeFile]:
    root = Path("/usr/include")
    files = []
    for folder, folder_names, file_names in os.walk(root):
        folder_names.sort()
        for name in sorted(file_names):
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            if subfolders is not None and not relative.startswith(subfolders) and "/" in relative:
                continue
            if path.is_symlink() or not (name.endswith((".h", ".hpp", ".tcc")) or relative.startswith("c++/")):
                continue
            language = "C++" if relative.startswith("c++/") or name.endswith((".hpp", ".tcc")) else "C"
            files.append(CodeFile(relative, path.read_text("utf-8", errors="replace"), language))
    return files


@pytest.mark.skipif(not Path("/usr/include/stdio.h").is_file(), reason="/usr/include is absent")
def test_usr_include_glibc_subset():
    files = read_usr_include(("bits/", "sys/", "x86_64-linux-gnu/"))
    figures = measure(
        "usr-include (top, bits, sys, x86_64-linux-gnu)",
        files,
        lambda target: target.strip("<>").split("/")[0] in ("bits", "sys", "gnu"),  # within the subset
    )
    dependencies = figures["dependencies"]
    assert any("bits/types.h" in found for found in dependencies["stdio.h"])
    assert figures["resolved_rate"] > 0.95
    assert_algorithm_one(list(dependencies), dependencies, figures["sequences"])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/include/stdio.h").is_file(), reason="/usr/include is absent")
def test_usr_include_whole():
    figures = measure("usr-include", read_usr_include(), lambda target: True)
    assert figures["files"] > 1000
    assert figures["resolved_rate"] > 0.9
    assert figures["order_seconds"] < 1.0


def jdk_source_zip() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/jvm/*/lib/src.zip")):
        if os.path.isfile(candidate) and zipfile.is_zipfile(candidate):
            with zipfile.ZipFile(candidate) as archive:
                if "java.base/java/lang/String.java" in archive.namelist():
                    return Path(candidate)
    return None


@pytest.mark.slow
@pytest.mark.skipif(jdk_source_zip() is None, reason="no JDK src.zip with a java.base module")
def test_jdk_java_base():
    with zipfile.ZipFile(jdk_source_zip()) as archive:
        names = sorted(name for name in archive.namelist() if name.startswith("java.base/") and name.endswith(".java"))
        files = [CodeFile(name, archive.read(name).decode("utf-8", "replace"), "Java") for name in names]
    figures = measure("jdk/java.base", files, lambda target: target.startswith(("java.", "javax.", "jdk.", "sun.")))
    dependencies = figures["dependencies"]
    assert figures["files"] > 2000
    assert figures["resolved_rate"] > 0.99
    assert "java.base/java/util/AbstractList.java" in dependencies["java.base/java/util/ArrayList.java"]
    assert "java.base/java/util/function/Consumer.java" in dependencies["java.base/java/util/ArrayList.java"]
    assert figures["aware_back_edges_outside_cycles"] == 0
