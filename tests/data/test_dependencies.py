"""Dependency resolution: in-repository resolution per language, and the real trees on this machine (the Python
stdlib, /usr/include, the JDK's java.base), which skip when absent: imports extracted and resolved, files ordered
with Algorithm 1, figures logged. Extraction and ordering on their own are tested in test_import_extraction.py and
test_dependency_order.py."""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
from test_dependency_order import assert_algorithm_one, back_edges

from repolm.data.dependencies import ImportResolver, package_name_order, resolve_dependencies
from repolm.data.dependency_order import dependency_cycles, dependency_order
from repolm.data.import_extraction import extract_imports
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


def test_names_inside_a_package_are_edges_without_imports():
    """Go: a file uses a function, type, var or const of another file of its folder and package; methods and init
    are no edges; another package clause in the folder (an external test) is another package; test files follow
    the code. Java: a non-public top-level class in another file. C#: a second type of a namespace's file."""
    files = {
        "go.mod": "module example.com/shop\n",
        "cart/cart.go": "package cart\n\nfunc Total(items []Item) Money { return sum(items) }\n",
        "cart/item.go": "package cart\n\ntype Item struct{ price Money }\n\n"
        'func (i Item) String() string { return "" }\n',
        "cart/money.go": "package cart\n\ntype (\n\tMoney int\n\tRate = float64\n)\n\nvar zero, one Money = 0, 1\n",
        "cart/sum.go": "package cart\n\nconst limit = 9\n\nfunc init() {}\n\n"
        "func sum(items []Item) Money { return zero }\n",
        "cart/format.go": "package cart\n\nfunc describe(x fmt.Stringer) string { return x.String() + init() }\n",
        "cart/cart_test.go": "package cart\n\nfunc TestTotal(t *testing.T) { Total(nil) }\n",
        "cart/example_test.go": 'package cart_test\n\nimport "example.com/shop/cart"\n\nvar limit = cart.Total\n',
        "java/p/A.java": "package p;\npublic class A { Helper helper; }\n",
        "java/p/B.java": "package p;\npublic class B {}\nclass Helper extends B {}\n",
        "cs/Shapes.cs": "namespace Geo { class Shapes { Circle c; } }\n",
        "cs/Round.cs": "namespace Geo { class Round {} class Circle : Round {} }\n",
    }
    found = dependencies_of(files)
    non_test = {"cart/cart.go", "cart/item.go", "cart/money.go", "cart/sum.go", "cart/format.go"}
    assert found["cart/cart.go"] == {"cart/item.go", "cart/money.go", "cart/sum.go"}
    assert found["cart/item.go"] == {"cart/money.go"}
    assert found["cart/sum.go"] == {"cart/item.go", "cart/money.go"}
    assert "cart/format.go" not in found  # String is a method, init is no name: no edges
    assert "cart/money.go" not in found
    assert found["cart/cart_test.go"] == non_test  # a test file follows its package's code
    assert found["cart/example_test.go"] == non_test  # the external test imports the package (and is a test)
    assert found["java/p/A.java"] == {"java/p/B.java"}  # Helper is declared in B.java
    assert found["cs/Shapes.cs"] == {"cs/Round.cs"}
    before = ImportResolver(repo(files), package_names=False)
    assert before.dependencies("cart/cart.go") == set() and before.dependencies("java/p/A.java") == set()


def test_resolver_reports_unresolved_imports_as_empty():
    resolver = ImportResolver(repo({"a.py": "import numpy\nfrom . import b\n", "b.py": ""}))
    assert resolver.resolve_import("a.py", "numpy") == []
    assert resolver.resolve_import("a.py", ".b") == ["b.py"]


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
    # cycles of this subset, named: features.h <-> sys/cdefs.h (each includes the other), curses.h <-> unctrl.h
    assert ["features.h", "x86_64-linux-gnu/sys/cdefs.h"] in figures["cycles"], figures["cycles"]
    assert figures["aware_back_edges_outside_cycles"] == 0
    assert_algorithm_one(list(dependencies), dependencies, figures["sequences"])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/include/stdio.h").is_file(), reason="/usr/include is absent")
def test_usr_include_whole():
    figures = measure("usr-include", read_usr_include(), lambda target: True)
    assert figures["files"] > 1000
    assert figures["resolved_rate"] > 0.9
    assert figures["order_seconds"] < 1.0
    assert figures["aware_back_edges_outside_cycles"] == 0


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


def order_figures(name: str, files: list[CodeFile]) -> dict:
    """`package_name_order`, logged; package names only add edges."""
    figures = package_name_order(files, seed=name)
    assert figures["removed_edges"] == 0
    logger.info("%s: %d files, (in order, counted) %s", name, len(files), figures)
    return figures


GO_PACKAGES = ("go/ast", "go/parser", "go/scanner", "go/token", "text/template", "encoding/json", "bufio", "strings")


def go_root() -> Path | None:
    go = shutil.which("go")
    if go is None:
        return None
    found = subprocess.run([go, "env", "GOROOT"], capture_output=True, text=True).stdout.strip()
    return Path(found) if found and (Path(found) / "src" / "go.mod").is_file() else None


@pytest.mark.skipif(go_root() is None, reason="no Go toolchain with its sources (make toolchains installs golang-go)")
def test_go_standard_library_names_inside_packages_come_in_order():
    """Real Go (packages of the standard library, its go.mod "module std" resolving bare import paths): files of a
    package use each other's names without imports; read, those edges all come in order outside cycles, where a
    seeded order put only part of them in order, and every import edge still does."""
    source = go_root() / "src"
    files = [CodeFile("go.mod", (source / "go.mod").read_text(), "Text")]
    for package in GO_PACKAGES:
        for path in sorted((source / package).glob("*.go")):
            files.append(CodeFile(path.relative_to(source).as_posix(), path.read_text("utf-8", "replace"), "Go"))
    figures = order_figures("go/std subset", files)
    in_order, counted = figures["references_after"]
    assert counted >= 50 and in_order == counted
    assert figures["references_before"][0] < counted  # a seeded order left some out of order
    in_order, counted = figures["imports_after"]
    assert counted >= 50 and in_order == counted  # go/parser imports go/ast, go/scanner, go/token


@pytest.mark.skipif(jdk_source_zip() is None, reason="no JDK src.zip with a java.base module")
def test_jdk_names_inside_packages_keep_every_import_in_order():
    """Real Java (java.logging, java.sql): package names add edges only where a file uses a type declared in a file
    of another name (the file-name rule finds the rest); every import edge stays in order outside cycles."""
    with zipfile.ZipFile(jdk_source_zip()) as archive:
        names = sorted(
            n for n in archive.namelist() if n.startswith(("java.logging/", "java.sql/")) and n.endswith(".java")
        )
        files = [CodeFile(name, archive.read(name).decode("utf-8", "replace"), "Java") for name in names]
    figures = order_figures("jdk: java.logging + java.sql", files)
    assert figures["references_after"][0] == figures["references_after"][1]
    in_order, counted = figures["imports_after"]
    assert counted > 100 and in_order == counted
