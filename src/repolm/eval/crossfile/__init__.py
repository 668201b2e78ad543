"""Cross-file code completion, CrossCodeEval-style: a benchmark built from any repositories, scored as cceval scores.

- `repolm.eval.crossfile.build`: lines that use a name another file of the repository defines and the line's file
  imports; the left context as the prompt, the line as the target; retrieved and oracle contexts fixed at build time
  (`build_crossfile_benchmark`, `repolm eval crossfile build`);
- `repolm.eval.crossfile.run`: each example with no context, the retrieved chunks and the oracle, through the one
  prompt builder, greedy to the end of the line (`run_crossfile`, `repolm eval crossfile run`);
- `repolm.eval.crossfile.metrics`: cceval's exact match, edit similarity, identifier exact match and F1.
"""

from repolm.eval.crossfile.build import (
    EXAMPLES_FILE,
    META_FILE,
    CrossfileConfig,
    build_crossfile_benchmark,
    defined_names,
    definitions,
    oracle_snippets,
    read_benchmark,
    read_repository_folder,
    repositories_in_folder,
    repositories_in_samples,
)
from repolm.eval.crossfile.metrics import (
    KEYWORDS,
    identifiers,
    perfect_prediction_scores,
    postprocess_prediction,
    remove_comments,
    score_prediction,
    summarize,
)
from repolm.eval.crossfile.run import (
    RESULTS_FILE,
    SUMMARY_FILE,
    VARIANTS,
    CrossfileRunSettings,
    crossfile_prompt,
    first_line,
    run_crossfile,
)

__all__ = [
    "EXAMPLES_FILE",
    "KEYWORDS",
    "META_FILE",
    "RESULTS_FILE",
    "SUMMARY_FILE",
    "VARIANTS",
    "CrossfileConfig",
    "CrossfileRunSettings",
    "build_crossfile_benchmark",
    "crossfile_prompt",
    "defined_names",
    "definitions",
    "first_line",
    "identifiers",
    "oracle_snippets",
    "perfect_prediction_scores",
    "postprocess_prediction",
    "read_benchmark",
    "read_repository_folder",
    "remove_comments",
    "repositories_in_folder",
    "repositories_in_samples",
    "run_crossfile",
    "score_prediction",
    "summarize",
]
