"""Fixtures of the data tests: the benchmark folder, and a small corpus of repositories for pipeline tests,
written into a folder, with every case the pipeline must handle.

- `pyapp`: a Python package with relative imports, a nested package, an import cycle and a diamond, plus a README;
- `pyapp_fork`: a copy of `pyapp` with a few lines changed (a near-duplicate repository);
- `clib`: C sources and headers with quoted includes;
- `javaapp`: Java classes in packages with imports;
- `webapp`: JavaScript modules with require/import, a package.json, a lock file, a minified bundle, and a copy
  of `pyapp/pyapp/util.py` (an exact duplicate file; the survivor is the copy with the smaller id, pyapp's);
- `contaminated`: a file holding HumanEval/0's canonical solution (when the benchmark folder is there);
- `messy`: a binary file, undecodable bytes, a file with 2,000-character lines, an empty file, a symlink loop,
  a tiny JSON file;
- `empty`: a repository whose only file is empty; `void`: a repository with no files.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def find_benchmarks() -> Path | None:
    """The benchmark folder: $REPOLM_BENCHMARKS or ../shared/benchmarks next to the repository; None if absent."""
    candidate = Path(os.environ.get("REPOLM_BENCHMARKS", REPO_ROOT.parent / "shared" / "benchmarks"))
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def benchmarks() -> Path | None:
    return find_benchmarks()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The test corpus (a folder of repositories), written once per module."""
    return write_corpus(tmp_path_factory.mktemp("corpus") / "repos", find_benchmarks())


PYAPP = {
    "setup.py": "from setuptools import setup\n\nsetup(name='pyapp', packages=['pyapp'])\n",
    "README.md": "# pyapp\n\nA small application used to test the repository-level data pipeline of repolm.\n"
    "It has a package with relative imports, a nested package, a cycle and a diamond.\n",
    "pyapp/__init__.py": "from .core import run\n\n__all__ = ['run']\n",
    "pyapp/core.py": "from .util import helper\nfrom .models import Model\nfrom . import config\n\n\n"
    "def run(argument):\n    model = Model(config.DEFAULTS)\n    return helper(model.apply(argument))\n",
    "pyapp/util.py": 'import os\n\n\ndef helper(value):\n    """Return the value as a normalized path string."""\n'
    "    return os.path.normpath(str(value))\n\n\ndef join_all(parts):\n    return os.path.join(*parts)\n",
    "pyapp/config.py": "DEFAULTS = {'scale': 2, 'offset': 1}\n\n\ndef describe():\n    return sorted(DEFAULTS)\n",
    "pyapp/models/__init__.py": "from .base import Model\n",
    "pyapp/models/base.py": "from ..util import helper\nfrom .mixins import Mixin\n\n\nclass Model(Mixin):\n"
    "    def __init__(self, settings):\n        self.settings = settings\n\n    def apply(self, value):\n"
    "        return helper(value * self.settings['scale'] + self.settings['offset'])\n",
    "pyapp/models/mixins.py": "from ..util import join_all\n\n\nclass Mixin:\n    def describe(self):\n"
    "        from .base import Model  # a cycle: base imports mixins, mixins imports base\n\n"
    "        return join_all([type(self).__name__, Model.__name__])\n",
}

CLIB = {
    "Makefile": "all: main\n\nmain: main.o list.o\n\tcc -o main main.o list.o\n",
    "include/list.h": "#ifndef LIST_H\n#define LIST_H\n\nstruct node {\n    int value;\n    struct node *next;\n};\n\n"
    "struct node *list_push(struct node *head, int value);\nint list_length(const struct node *head);\n\n#endif\n",
    "src/list.c": '#include <stdlib.h>\n#include "list.h"\n\nstruct node *list_push(struct node *head, int value)\n{\n'
    "    struct node *node = malloc(sizeof *node);\n    node->value = value;\n    node->next = head;\n"
    "    return node;\n}\n\nint list_length(const struct node *head)\n{\n    int length = 0;\n"
    "    for (; head; head = head->next)\n        length++;\n    return length;\n}\n",
    "src/main.c": '#include <stdio.h>\n#include "list.h"\n\nint main(void)\n{\n    struct node *head = 0;\n'
    "    for (int i = 0; i < 10; i++)\n        head = list_push(head, i);\n"
    '    printf("%d\\n", list_length(head));\n    return 0;\n}\n',
}

JAVAAPP = {
    "pom.xml": "<project>\n  <modelVersion>4.0.0</modelVersion>\n  <groupId>org.example</groupId>\n"
    "  <artifactId>javaapp</artifactId>\n  <version>1.0</version>\n</project>\n",
    "src/main/java/org/example/App.java": "package org.example;\n\nimport org.example.model.Account;\n"
    "import org.example.service.Bank;\n\npublic class App {\n    public static void main(String[] args) {\n"
    '        Bank bank = new Bank();\n        bank.open(new Account("alice", 100));\n'
    "        System.out.println(bank.total());\n    }\n}\n",
    "src/main/java/org/example/model/Account.java": "package org.example.model;\n\npublic class Account {\n"
    "    private final String owner;\n    private long balance;\n\n"
    "    public Account(String owner, long balance) {\n        this.owner = owner;\n        this.balance = balance;\n"
    "    }\n\n    public long balance() {\n        return balance;\n    }\n}\n",
    "src/main/java/org/example/service/Bank.java": "package org.example.service;\n\n"
    "import java.util.ArrayList;\nimport java.util.List;\nimport org.example.model.Account;\n\n"
    "public class Bank {\n    private final List<Account> accounts = new ArrayList<>();\n\n"
    "    public void open(Account account) {\n        accounts.add(account);\n    }\n\n    public long total() {\n"
    "        long sum = 0;\n        for (Account account : accounts) {\n            sum += account.balance();\n"
    "        }\n        return sum;\n    }\n}\n",
}

WEBAPP = {
    "package.json": '{\n  "name": "webapp",\n  "version": "1.0.0",\n  "main": "src/index.js",\n  "license": "MIT"\n}\n',
    "package-lock.json": '{\n  "name": "webapp",\n  "lockfileVersion": 3,\n  "requires": true,\n  "packages": {}\n}\n',
    "src/index.js": "const { render } = require('./view');\nimport { fetchItems } from './api/client.js';\n\n"
    "async function main() {\n  const items = await fetchItems('/items');\n"
    "  document.body.innerHTML = render(items);\n}\n\n"
    "main();\n",
    "src/view.js": "function render(items) {\n  return items.map((item) => `<li>${item.name}</li>`).join('');\n}\n\n"
    "module.exports = { render };\n",
    "src/api/client.js": "export async function fetchItems(url) {\n  const response = await fetch(url);\n"
    "  if (!response.ok) {\n    throw new Error(`request failed: ${response.status}`);\n  }\n"
    "  return response.json();\n}\n",
    "dist/bundle.min.js": "var a=1;" * 400 + "\n",
    "tools/util.py": PYAPP["pyapp/util.py"],
}


def _write_repo(folder: Path, files: dict[str, str | bytes]) -> None:
    for relative, content in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def humaneval_zero(benchmarks: Path | None) -> dict | None:
    """HumanEval/0 from the benchmark folder, or None when the folder is absent."""
    if benchmarks is None or not (benchmarks / "humaneval" / "HumanEval.jsonl.gz").is_file():
        return None
    with gzip.open(benchmarks / "humaneval" / "HumanEval.jsonl.gz", "rt", encoding="utf-8") as file:
        return json.loads(file.readline())


def write_corpus(root: Path, benchmarks: Path | None = None) -> Path:
    """Writes the test corpus (a folder of repositories) under `root` and returns it."""
    root.mkdir(parents=True, exist_ok=True)
    _write_repo(root / "pyapp", PYAPP)
    fork = dict(PYAPP)
    fork["pyapp/config.py"] = PYAPP["pyapp/config.py"].replace("'scale': 2", "'scale': 3")
    fork["README.md"] = PYAPP["README.md"] + "\nThis is a fork with another scale.\n"
    _write_repo(root / "pyapp_fork", fork)
    _write_repo(root / "clib", CLIB)
    _write_repo(root / "javaapp", JAVAAPP)
    _write_repo(root / "webapp", WEBAPP)
    problem = humaneval_zero(benchmarks)
    if problem is not None:
        _write_repo(
            root / "contaminated",
            {
                "setup.py": "from setuptools import setup\n\nsetup(name='solutions')\n",
                "solutions/closest.py": problem["prompt"] + problem["canonical_solution"],
                "solutions/other.py": "def add(left, right):\n    return left + right\n",
            },
        )
    _write_repo(
        root / "messy",
        {
            "Makefile": "all:\n\techo messy\n",
            "logo.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
            "latin1.py": "# caf\xe9\nname = 'caf\xe9'\n".encode("latin-1"),
            "long_lines.py": "x = '" + "a" * 2000 + "'\n",
            "empty.py": "",
            "tiny.json": '{"a": 1}\n',
            "ok.py": "def ok():\n    return 'this file is fine and should be kept by every filter'\n",
        },
    )
    os.symlink("..", root / "messy" / "loop")  # a symlink to its own parent folder
    (root / "empty").mkdir()
    (root / "empty" / "setup.py").write_text("")  # an empty file: the repo yields no samples
    (root / "void").mkdir()  # a repository with no files at all
    return root
