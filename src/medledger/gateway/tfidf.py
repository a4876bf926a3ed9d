"""Character n-gram TF-IDF cosine matching, as OHDSI Usagi scores candidate concepts.

Usagi (github.com/OHDSI/Usagi, ``UsagiAnalyzer`` and ``UsagiSearchEngine.recomputeScores``)
tokenises into lower-cased character 2- and 3-grams and scores candidates by plain TF-IDF
cosine; source terms are added to the document frequencies so that n-grams frequent in the
source but rare in the vocabulary are not over-weighted. This is a re-implementation of that
idea (no code taken): the scores are *suggestions*. The gateway never auto-accepts them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from medledger.gateway.text import normalise_term


def ngrams(term: str) -> Counter[str]:
    """Character 2- and 3-grams of the normalised term padded with spaces."""
    s = f" {normalise_term(term)} "
    grams: Counter[str] = Counter()
    for n in (2, 3):
        for i in range(len(s) - n + 1):
            grams[s[i:i + n]] += 1
    return grams


@dataclass(frozen=True)
class Candidate:
    target: str          # concept id (e.g. an ICD-10 code)
    term: str            # the indexed term that matched best
    score: float         # cosine similarity in [0, 1]


class NgramIndex:
    """An inverted index of terms → concept ids, scored by TF-IDF cosine."""

    def __init__(self, entries: Iterable[tuple[str, str]],
                 source_terms: Sequence[str] = ()) -> None:
        docs = [(target, term, ngrams(term)) for target, term in entries]
        df: Counter[str] = Counter()
        for _, _, g in docs:
            df.update(g.keys())
        for t in source_terms:                      # Usagi's derived index: damp source n-grams
            df.update(ngrams(t).keys())
        n = len(docs) + len(source_terms)
        self._idf = {g: math.log((1 + n) / (1 + c)) + 1.0 for g, c in df.items()}
        self._default_idf = math.log(1 + n) + 1.0
        self._docs: list[tuple[str, str]] = []
        self._post: dict[str, list[tuple[int, float]]] = {}
        for i, (target, term, g) in enumerate(docs):
            vec = self._weigh(g)
            self._docs.append((target, term))
            for gram, w in vec.items():
                self._post.setdefault(gram, []).append((i, w))

    def _weigh(self, grams: Counter[str]) -> dict[str, float]:
        vec = {g: c * self._idf.get(g, self._default_idf) for g, c in grams.items()}
        norm = math.sqrt(sum(w * w for w in vec.values())) or 1.0
        return {g: w / norm for g, w in vec.items()}

    def search(self, term: str, limit: int = 5, floor: float = 0.1) -> list[Candidate]:
        """At most ``limit`` concepts by best cosine, each at least ``floor``; one per concept."""
        q = self._weigh(ngrams(term))
        acc: dict[int, float] = {}
        for gram, w in q.items():
            for i, dw in self._post.get(gram, ()):
                acc[i] = acc.get(i, 0.0) + w * dw
        best: dict[str, Candidate] = {}
        for i, score in sorted(acc.items(), key=lambda kv: -kv[1]):
            target, t = self._docs[i]
            if score < floor:
                break
            if target not in best:
                best[target] = Candidate(target, t, round(min(score, 1.0), 4))
            if len(best) >= limit:
                break
        return list(best.values())
