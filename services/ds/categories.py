"""Which of the user's categories a merchant's expense belongs in: what the user's own
corrections taught, else where their expenses there usually went, else the merchant
rules (config/ds/merchant_categories.toml: a word the name contains, or one close to
it by rapidfuzz). Plain Python; the caller loads the user's data."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz import fuzz, process

from services.ds.normalise import merchant_key


@dataclass(frozen=True)
class UserCategoryData:
    # {category id: name} of the user's live categories.
    names: dict[str, str]
    # {merchant key: (category id, merchant name)} from the user's corrections.
    taught: dict[str, tuple[str, str]]
    # {merchant key: category id} the user's expenses there were most often in.
    usual: dict[str, str]


class MerchantRules:
    def __init__(self, rules: dict[str, list[str]], min_score: int) -> None:
        self._word_category = {
            word.casefold(): category for category, words in rules.items() for word in words
        }
        self._words = list(self._word_category)
        self._min_score = min_score

    @classmethod
    def load(cls, path: Path, min_score: int) -> MerchantRules:
        return cls(tomllib.loads(path.read_text())["categories"], min_score)

    def category_name(self, merchant: str) -> str:
        """The default category name a merchant belongs in by the rules; "" when none."""
        name = " ".join(merchant.casefold().split())
        if not name:
            return ""
        for word in self._words:
            if word in name:
                return self._word_category[word]
        best = process.extractOne(name, self._words, scorer=fuzz.partial_ratio, score_cutoff=self._min_score)
        return self._word_category[best[0]] if best else ""

    def suggest(self, merchant: str, data: UserCategoryData) -> str:
        """The user's category id for the merchant; "" when nothing points anywhere."""
        key = merchant_key(merchant)
        if key in data.taught and data.taught[key][0] in data.names:
            return data.taught[key][0]
        if key in data.usual and data.usual[key] in data.names:
            return data.usual[key]
        wanted = self.category_name(merchant).casefold()
        if not wanted:
            return ""
        return next((cid for cid, name in sorted(data.names.items()) if name.casefold() == wanted), "")
