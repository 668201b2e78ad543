"""Which repositories are held out: a split by a hash of the repository name, made before anything is trained.

A held-out repository is never trained on (the tokenizer included): `repolm data build` writes its samples to
`heldout/<kind>/` instead of `data/<kind>/`, and every later stage reads `data/` only. The evaluations then score
the model on repositories it never saw (bits per byte, infilling, cross-file completion).

The rule: each repository's key is blake2b("<seed>/<repository name>") read as a number in [0, 1). Where a source
lists its repositories before reading them (folders, archives, the default corpus: one repository per unit), the
`round(fraction x n)` repositories with the smallest keys of each source are held out, at least one when the source
has two or more, so that every source (and so every language of the default corpus) has held-out repositories. The
repositories of corpus files (JSONL/Parquet rows, whose names are known only when read) are held out when their key
is below `fraction`. Both depend only on the names, the seed and the fraction: the same repositories are held out
on any machine, for any number of tasks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from repolm.errors import RepolmError

HELDOUT_FOLDER = "heldout"


@dataclass
class SplitConfig:
    """The held-out split of a data build.

    Attributes:
        heldout_fraction: share of each source's repositories held out (0 = none, the default: everything is
            training data); written to `heldout/<kind>/` in the same format as `data/<kind>/`.
        seed: salts the hash, so another seed holds out other repositories.
    """

    heldout_fraction: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        fraction = self.heldout_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 <= fraction < 1.0:
            raise RepolmError(f"split.heldout_fraction: must be a number in [0, 1), got {fraction!r}")


def repository_key(name: str, seed: int) -> float:
    """The repository's place in the split order: a number in [0, 1) from blake2b of the seed and the name."""
    digest = hashlib.blake2b(f"{seed}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def heldout_repositories(names_by_source: dict[str, Iterable[str]], config: SplitConfig) -> frozenset[str]:
    """The held-out names among the listed repositories: per source the `round(fraction x n)` smallest keys (at
    least one of two or more repositories when the fraction is above 0)."""
    if config.heldout_fraction <= 0:
        return frozenset()
    chosen: set[str] = set()
    for names in names_by_source.values():
        unique = sorted(set(names), key=lambda name: (repository_key(name, config.seed), name))
        count = round(config.heldout_fraction * len(unique))
        if len(unique) >= 2:
            count = min(max(count, 1), len(unique) - 1)
        chosen.update(unique[:count])
    return frozenset(chosen)


@dataclass(frozen=True)
class HeldoutRule:
    """The split of one build, decided at planning time and shipped to the output tasks (picklable).

    Attributes:
        listed: the held-out names among the repositories that the sources listed (`heldout_repositories`).
        unlisted_sources: sources whose repository names were not listed (corpus files): held out by key alone.
        fraction, seed: the split's settings.
    """

    listed: frozenset[str]
    unlisted_sources: frozenset[str]
    fraction: float
    seed: int

    def holds_out(self, name: str, source: str) -> bool:
        """Whether the repository `name` of `source` is held out."""
        if source in self.unlisted_sources:
            return self.fraction > 0 and repository_key(name, self.seed) < self.fraction
        return name in self.listed
