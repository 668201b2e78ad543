"""CrossCodeEval's scores of one predicted line against its target, as cceval's `scripts/eval_metric.py`
(`compute_metric_stmt`, `process_examples`) and `scripts/eval_utils.py` compute them.

Per example, in this order:

1. **Post-processing of the prediction** (`postprocess_prediction`; the target is never post-processed).
   cceval's `postprocess_code_lines`: for Java, C# and TypeScript the prediction is cut after its first `;`, `{` or
   `}` (`get_bracket_lang_statement`, with its quirk kept: a statement character at position 0 cuts nothing); for
   Python the prediction is cut after the first statement that parses and is followed by a line break
   (`get_python_one_statement`), which for a one-line prediction, all this benchmark scores, is the line unchanged
   (the loop never meets a line break, and at the last character cceval's `completion[i + 1]` raises and the
   prediction is returned as it is), so no parser is needed. cceval defines no other language; here the bracket rule
   also applies to the other languages whose statements end in `;` or braces (JavaScript, C, C++, Go, Rust, PHP),
   and a Ruby prediction is left as it is.
2. **Comments removed** from prediction and target (`remove_comments`): cceval's two substitutions, `#.*` then
   `//.*`, whatever the language (so a `#` or `//` inside a string cuts it too). In C, C++ and Rust, where `#`
   starts a preprocessor line or an attribute rather than a comment, only `//.*` is removed (cceval has none of
   those languages).
3. **Exact match** (`em`, 0 or 1): the lists of the non-empty lines of both, each stripped, are equal.
4. **Edit similarity** (`es`, 0-100): `fuzz.ratio` of the two strings stripped of surrounding whitespace
   (`cal_edit_sim`), computed by `repolm.eval.text_metrics.edit_similarity`: the normalized Indel similarity
   `200 * LCS(a, b) / (len(a) + len(b))`, 100 when both are empty, 0 when one is. That is fuzz.ratio as
   python-Levenshtein and rapidfuzz compute it; fuzzywuzzy rounds each example's ratio to an integer, this does
   not (the mean moves by well under one point; cceval's requirements list fuzzywuzzy without python-Levenshtein,
   where it falls back to difflib's SequenceMatcher, whose matching-blocks ratio can differ from the Indel one).
5. **Identifiers** (`identifiers`, cceval's `extract_identifiers`): the text with string literals removed
   (cceval's pattern for "..." and '...'), split into `\\w+` tokens (nltk's `RegexpTokenizer(r"\\w+")`), kept
   when the token starts like an identifier (`[_a-zA-Z]`, so numbers drop out) and is not a keyword of the
   language (`KEYWORDS`: Python's `keyword.kwlist` without True and False, cceval's lists for Java, C#,
   JavaScript and TypeScript; for the languages cceval has no list for, the language's reserved words without
   the boolean literals, as cceval's lists leave those out).
   - **identifier exact match** (`id_em`, 0 or 1): the two lists equal, order and repeats included;
   - **identifier precision, recall, F1** (0-1) over the two sets: tp = shared identifiers, fp = predicted only,
     fn = target only; F1 = 2 tp / (2 tp + fp + fn), each 0 when its denominator is 0 (so two lines without
     identifiers have identifier EM 1 and F1 0, as in cceval).

`summarize` averages them over examples as cceval's `results.json` reports them: EM, identifier EM, precision,
recall and F1 in percent, ES as the mean of the per-example ratios, each rounded to 2 decimals.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Mapping

from repolm.eval.text_metrics import edit_similarity

# cceval's lists (scripts/keywords/*.txt, from microsoft/dpu-utils) for Java, C#, JavaScript and TypeScript.
_JAVA = (
    "abstract assert boolean break byte case catch char class continue default do double else enum extends final "
    "finally float for if implements import instanceof int interface long native new package private protected "
    "public return short static strictfp super switch synchronized this throw throws transient try void volatile "
    "while var const goto"
)
_CSHARP = (
    "abstract as base bool break byte case catch char checked class const continue decimal default delegate do "
    "double else enum event explicit extern finally fixed float for foreach goto if implicit in int interface "
    "internal is lock long namespace new null object operator out override params private protected public "
    "readonly ref return sbyte sealed short sizeof stackalloc static string struct switch this throw try typeof "
    "uint ulong unchecked unsafe ushort using virtual void volatile while"
)
_JAVASCRIPT = (
    "break case catch class const continue debugger default delete do else export extends finally for function if "
    "import in instanceof new return super switch this throw try typeof var void while with yield enum implements "
    "interface let package private protected public static"
)
# The reserved words of the languages cceval has no list for (their standards), boolean literals left out.
_C = (
    "auto break case char const continue default do double else enum extern float for goto if inline int long "
    "register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while "
    "_Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert _Thread_local"
)
_CPP = (
    "alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t class "
    "compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield decltype "
    "default delete do double dynamic_cast else enum explicit export extern float for friend goto if inline int "
    "long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public register "
    "reinterpret_cast requires return short signed sizeof static static_assert static_cast struct switch template "
    "this thread_local throw try typedef typeid typename union unsigned using virtual void volatile wchar_t while "
    "xor xor_eq"
)
_GO = (
    "break case chan const continue default defer else fallthrough for func go goto if import interface map "
    "package range return select struct switch type var"
)
_RUST = (
    "as async await break const continue crate dyn else enum extern fn for if impl in let loop match mod move mut "
    "pub ref return self Self static struct super trait type unsafe use where while"
)
_PHP = (
    "abstract and array as break callable case catch class clone const continue declare default do echo else "
    "elseif empty enddeclare endfor endforeach endif endswitch endwhile enum eval exit extends final finally fn for "
    "foreach function global goto if implements include include_once instanceof insteadof interface isset list "
    "match namespace new or print private protected public readonly require require_once return static switch "
    "throw trait try unset use var while xor yield"
)
_RUBY = (
    "__ENCODING__ __LINE__ __FILE__ BEGIN END alias and begin break case class def defined do else elsif end "
    "ensure for if in module next nil not or redo rescue retry return self super then undef unless until when "
    "while yield"
)
KEYWORDS: dict[str, frozenset[str]] = {
    "Python": frozenset(keyword.kwlist) - {"True", "False"},
    "Java": frozenset(_JAVA.split()),
    "C#": frozenset(_CSHARP.split()),
    "JavaScript": frozenset(_JAVASCRIPT.split()),
    "TypeScript": frozenset(_JAVASCRIPT.split()),
    "C": frozenset(_C.split()),
    "C++": frozenset(_CPP.split()),
    "Go": frozenset(_GO.split()),
    "Rust": frozenset(_RUST.split()),
    "PHP": frozenset(_PHP.split()),
    "Ruby": frozenset(_RUBY.split()),
}
"""Keywords left out of the identifiers, per language name of `repolm.data.languages` (none for other languages)."""

BRACKET_LANGUAGES = frozenset({"Java", "C#", "TypeScript", "JavaScript", "C", "C++", "Go", "Rust", "PHP"})
"""Languages whose predictions are cut after their first `;`, `{` or `}` (cceval: Java, C#, TypeScript)."""

_HASH_IS_CODE = frozenset({"C", "C++", "Rust"})  # `#include`, `#define`, `#[derive]`: not comments
_STRING = re.compile(r'"([^"\\]*(\\.[^"\\]*)*)"|\'([^\'\\]*(\\.[^\'\\]*)*)\'')  # cceval's string_pattern
_WORD = re.compile(r"\w+")  # nltk's RegexpTokenizer(r"\w+")
_IDENTIFIER_START = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")  # cceval's IDENTIFIER_REGEX, used with re.match
_HASH_COMMENT = re.compile(r"#.*")
_SLASH_COMMENT = re.compile(r"//.*")

SCORE_NAMES = ("em", "es", "id_em", "id_precision", "id_recall", "id_f1")
"""The per-example scores `score_prediction` returns."""


def postprocess_prediction(prediction: str, language: str) -> str:
    """cceval's `postprocess_code_lines` for one prediction (see the module docstring)."""
    if language in BRACKET_LANGUAGES:
        end = next((index for index, character in enumerate(prediction) if character in ";{}"), None)
        return prediction[: end + 1] if end else prediction  # cceval's `if end_idx`: 0 cuts nothing
    return prediction


def remove_comments(code: str, language: str) -> str:
    """cceval's `remove_comments`: `#.*` (not in C, C++, Rust), then `//.*` removed."""
    if language not in _HASH_IS_CODE:
        code = _HASH_COMMENT.sub("", code)
    return _SLASH_COMMENT.sub("", code)


def identifiers(code: str, language: str) -> list[str]:
    """cceval's `extract_identifiers`: the identifiers of a code fragment in order, strings and keywords left out."""
    keywords = KEYWORDS.get(language, frozenset())
    without_strings = _STRING.sub("", code)
    return [
        token for token in _WORD.findall(without_strings) if _IDENTIFIER_START.match(token) and token not in keywords
    ]


def _non_empty_lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def score_prediction(prediction: str, target: str, language: str) -> dict[str, float]:
    """The per-example scores of cceval (see the module docstring): em, es, id_em (0/1 or 0-100 for es) and
    id_precision, id_recall, id_f1 (0-1)."""
    prediction = remove_comments(postprocess_prediction(prediction, language), language)
    target = remove_comments(target, language)
    predicted, wanted = identifiers(prediction, language), identifiers(target, language)
    predicted_set, wanted_set = set(predicted), set(wanted)
    true_positives = len(predicted_set & wanted_set)
    false_positives, false_negatives = len(predicted_set - wanted_set), len(wanted_set - predicted_set)
    f1_denominator = 2 * true_positives + false_positives + false_negatives
    return {
        "em": float(_non_empty_lines(prediction) == _non_empty_lines(target)),
        "es": edit_similarity(prediction, target),
        "id_em": float(predicted == wanted),
        "id_precision": true_positives / len(predicted_set) if predicted_set else 0.0,
        "id_recall": true_positives / len(wanted_set) if wanted_set else 0.0,
        "id_f1": 2 * true_positives / f1_denominator if f1_denominator else 0.0,
    }


def perfect_prediction_scores(target: str, language: str) -> bool:
    """Whether the target, predicted exactly, gets exact match: False when post-processing would cut it (a Java
    `for (i = 0; i < n; i++) {` is cut after its first `;`). The benchmark leaves such targets out."""
    return score_prediction(target, target, language)["em"] == 1.0


def summarize(scores: Iterable[Mapping[str, float]]) -> dict[str, float | int]:
    """cceval's `results.json` over examples: exact_match, identifier_exact_match, identifier_precision,
    identifier_recall, identifier_f1 in percent, edit_similarity the mean ratio, all rounded to 2 decimals; with
    count (and nothing else when there are no examples)."""
    scores = list(scores)
    count = len(scores)
    if not count:
        return {"count": 0}

    def mean(name: str, scale: float) -> float:
        return round(scale * sum(score[name] for score in scores) / count, 2)

    return {
        "count": count,
        "exact_match": mean("em", 100),
        "edit_similarity": mean("es", 1),
        "identifier_exact_match": mean("id_em", 100),
        "identifier_precision": mean("id_precision", 100),
        "identifier_recall": mean("id_recall", 100),
        "identifier_f1": mean("id_f1", 100),
    }
