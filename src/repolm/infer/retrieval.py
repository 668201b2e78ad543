"""Cross-file retrieval for repository-aware completion (issue 13, item 1).

Placeholder holding only `ContextSnippet`, the type the prompt builder takes, until the retrieval branch lands;
that branch's module replaces this file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ContextSnippet:
    """A fragment of another file of the repository, given to the model as cross-file context.

    Attributes:
        path: the file's path, relative to the repository root (rendered in the prompt).
        text: the fragment's code.
        start_line: the 1-based line of the file where `text` starts.
        score: the retriever's score (higher is more relevant); 0.0 when not scored.
        source: where it came from: "import" (a file the current file imports), "bm25" (lexical search) or
            "client" (sent by the editor, e.g. llama.cpp's `input_extra`).
    """

    path: str
    text: str
    start_line: int = 1
    score: float = 0.0
    source: str = "bm25"  # "import" | "bm25" | "client"
