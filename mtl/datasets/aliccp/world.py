"""The planted world behind synthetic Ali-CCP: users, items, and the true click / purchase probabilities.

Users have profile fields (121..129), an id (101) and behaviour histories (109_14 categories, 110_14 shops,
127_14 brands, 150_14 intentions); items have an id (205), category (206), shop (207), brand (216) and
intention nodes (210). An impression pairs a Zipf-drawn user with an item -- often one from a category
in the user's history -- at a position (301). Cross fields appear where the item matches the user's
history, as in the real data: 508 (category), 509 (shop), 702 (brand), 853 (matched intentions).

The true logits add user, item and position effects, the history matches (an interaction no single
field carries) and a low-rank user x category term (a product of embeddings: learnable by factorised /
deep models, invisible to a logistic regression on one-hot fields). Intercepts are calibrated so that
CTR and purchase-given-click hit the configured rates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtl.config import AliccpSynthetic

# Distinct ids per field in the full data (PaddleRec AITM config); fields it lacks take the size of the
# item field sharing their id space (histories) or an assumed 80,000 intention nodes (210, 150_14).
REAL_VOCAB = {
    "101": 238635, "109_14": 6929, "110_14": 263942, "127_14": 106399, "150_14": 80000, "121": 98,
    "122": 14, "124": 3, "125": 8, "126": 4, "127": 4, "128": 3, "129": 5, "205": 467298, "206": 6929,
    "207": 263942, "210": 80000, "216": 106399, "508": 5888, "509": 104830, "702": 51878, "853": 37148,
    "301": 4,
}  # fmt: skip
SMALL_VOCAB = 100  # vocabularies at most this big keep their real size at any scale
PROFILE = ("121", "122", "124", "125", "126", "127", "128", "129")
HISTORIES = {"109_14": "206", "110_14": "207", "127_14": "216", "150_14": "210"}  # history -> item field
# cross field -> (user history, item field): present where the item's value is in the user's history
CROSSES = {"508": ("109_14", "206"), "509": ("110_14", "207"), "702": ("127_14", "216")}
MAX_LIST = 14  # longest history / intention list, as in the public sample's 210
RANK = 4  # of the user x category term
CATEGORY_EXPONENT = 1.1  # Zipf exponent of the items' category, shop and brand
PILOT_ROWS = 200_000  # impressions drawn to calibrate the intercepts
TASTE = ("122", "124", "125")  # profile fields whose latents make the shared user taste
CVR_TASTE = ("121", "127", "128")  # profile fields whose latents make the purchase-only taste
# Effect scales (standard deviations of the planted tables, or fixed values), per the docstring of World.
EFFECTS = {
    "profile": 0.15, "user": 0.05, "item": 0.05, "206": 0.3, "207": 0.08, "216": 0.1,
    "position": (0.45, 0.1, -0.2, -0.55),
    "match": {"508": (0.7, 0.3), "509": (0.2, 0.8), "702": (0.3, 0.5), "853": (0.25, 0.1)},
    "taste": 0.2, "history_taste": 0.3, "cvr_taste": 0.2,
    "affinity": 1.0, "purchase_share": 0.7, "cvr_affinity": 0.5,
}  # fmt: skip
SIGNAL = 0.75  # scales every effect, which sets the oracle AUCs


def vocab_sizes(scale: float) -> dict[str, int]:
    return {f: n if n <= SMALL_VOCAB else max(SMALL_VOCAB, round(n * scale)) for f, n in REAL_VOCAB.items()}


def zipf_cdf(size: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1) ** exponent
    return np.cumsum(weights) / weights.sum()


def draw(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(n)), cdf.size - 1)


def ragged(
    rng: np.random.Generator, owners: int, size: int, empty: float, mean_extra: float
) -> tuple[np.ndarray, np.ndarray]:
    """Variable-length Zipf lists per owner as (offsets, values)."""
    lengths = np.minimum(rng.geometric(1.0 / (1.0 + mean_extra), owners), MAX_LIST)
    lengths[rng.random(owners) < empty] = 0
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return offsets, draw(rng, zipf_cdf(size, 1.0), int(offsets[-1]))


def gather(offsets: np.ndarray, values: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, ...]:
    """Flattened lists of ``owners`` in order: (index into ``owners``, value, position in the list)."""
    lengths = offsets[owners + 1] - offsets[owners]
    row = np.repeat(np.arange(owners.size), lengths)
    position = np.arange(row.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return row, values[np.repeat(offsets[owners], lengths) + position], position


@dataclass
class Impressions:
    """Sampled impressions with everything the text writer and the truth file need."""

    user: np.ndarray
    item: np.ndarray
    position: np.ndarray
    matched: dict[str, np.ndarray]  # cross field -> bool per row
    intents: tuple[np.ndarray, np.ndarray]  # matched intention tokens: (row, intention)
    click_logit: np.ndarray
    purchase_logit: np.ndarray  # of purchase given click


class World:
    """Users, items, effects and intercepts drawn once from the seed."""

    def __init__(self, settings: AliccpSynthetic):
        rng = np.random.default_rng([settings.seed, 1])
        self.sizes = vocab_sizes(settings.vocab_scale)
        s = self.sizes
        users, items = s["101"], s["205"]
        self.user_cdf, self.item_cdf = zipf_cdf(users, 0.9), zipf_cdf(items, 1.0)
        self.position_p = np.array([0.4, 0.3, 0.2, 0.1])
        self.profile = np.stack([draw(rng, zipf_cdf(s[f], 1.0), users) for f in PROFILE], axis=1)
        self.profile[rng.random(users) < 0.3, PROFILE.index("126")] = -1  # often absent, as in the sample
        self.history = {h: ragged(rng, users, s[h], 0.1, 2.5) for h in HISTORIES}
        self.history_keys = {h: self._keys(*self.history[h], s[h]) for h in HISTORIES}
        self.item_field = {
            f: draw(rng, zipf_cdf(s[f], CATEGORY_EXPONENT), items) for f in ("206", "207", "216")
        }
        self.item_intents = ragged(rng, items, s["210"], 0.0, 1.0)
        self.items_by_category = np.argsort(self.item_field["206"], kind="stable")
        self.category_start = np.searchsorted(
            self.item_field["206"][self.items_by_category], np.arange(s["206"] + 1)
        )
        # Effects, per task (click, purchase given click). Main effects of fields a one-hot logistic
        # regression can learn; small per-id effects (most ids are seen a handful of times); and a user x
        # item affinity both tasks share: a low-rank product of a user taste vector (profile latents plus
        # the mean latent of the categories in the user's history) and the item's category latent. No
        # single field carries it: a model must learn it from the fields' embeddings together.
        e = EFFECTS
        self.user_effect = rng.normal(0, e["user"], (users, 2))
        for j, f in enumerate(PROFILE):
            table = rng.normal(0, e["profile"], (s[f], 2))
            present = self.profile[:, j] >= 0
            self.user_effect[present] += table[self.profile[present, j]]
        item_effect = rng.normal(0, e["item"], (items, 2))
        for f in ("206", "207", "216"):
            item_effect += rng.normal(0, e[f], (s[f], 2))[self.item_field[f]]
        self.item_effect = item_effect
        self.position_effect = np.array(e["position"])
        self.match_effect = e["match"]

        def latent(size: int, scale: float) -> np.ndarray:
            return rng.normal(0, scale, (size, RANK))

        taste = sum(latent(s[f], e["taste"])[self.profile[:, PROFILE.index(f)]] for f in TASTE)
        offsets, seen = self.history["109_14"]
        owner = np.repeat(np.arange(users), np.diff(offsets))
        history_latent = latent(s["109_14"], e["history_taste"])
        counts = np.maximum(np.diff(offsets), 1)[:, None]
        taste = (
            taste
            + np.stack([np.bincount(owner, history_latent[seen, r], users) for r in range(RANK)], 1) / counts
        )
        self.user_latent = np.stack(
            [taste, sum(latent(s[f], e["cvr_taste"])[self.profile[:, PROFILE.index(f)]] for f in CVR_TASTE)]
        )
        self.category_latent = np.stack([latent(s["206"], 1.0), latent(s["206"], 1.0)])
        self.affinity_weight = np.array(
            [[e["affinity"], 0.0], [e["purchase_share"] * e["affinity"], e["cvr_affinity"]]]
        )
        pilot = self.impressions(np.random.default_rng([settings.seed, 2]), PILOT_ROWS)
        self.click_intercept = _calibrate(pilot.click_logit, settings.click_rate)
        p_click = _sigmoid(self.click_intercept + pilot.click_logit)
        self.purchase_intercept = _calibrate(
            pilot.purchase_logit, settings.purchase_given_click_rate, p_click
        )

    @staticmethod
    def _keys(offsets: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
        owner = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
        return np.unique(owner * size + values)

    def _in_history(self, history: str, users: np.ndarray, values: np.ndarray) -> np.ndarray:
        keys = self.history_keys[history]
        query = users * self.sizes[history] + values
        position = np.minimum(np.searchsorted(keys, query), max(keys.size - 1, 0))
        return keys[position] == query if keys.size else np.zeros(query.size, dtype=bool)

    def impressions(self, rng: np.random.Generator, n: int) -> Impressions:
        """Draw ``n`` impressions and their true logits (without intercepts)."""
        user = draw(rng, self.user_cdf, n)
        item = draw(rng, self.item_cdf, n)
        # Often the item comes from a category the user has looked at before.
        offsets, categories = self.history["109_14"]
        length = offsets[user + 1] - offsets[user]
        wanted = (rng.random(n) < 0.35) & (length > 0)
        slot = offsets[user] + (rng.random(n) * np.maximum(length, 1)).astype(np.int64)
        liked = categories[np.minimum(slot, max(categories.size - 1, 0))] if categories.size else user * 0
        start, stop = self.category_start[liked], self.category_start[liked + 1]
        wanted &= stop > start
        pick = start + (rng.random(n) * np.maximum(stop - start, 1)).astype(np.int64)
        item = np.where(
            wanted, self.items_by_category[np.minimum(pick, self.items_by_category.size - 1)], item
        )
        position = rng.choice(4, size=n, p=self.position_p)

        matched = {c: self._in_history(h, user, self.item_field[f][item]) for c, (h, f) in CROSSES.items()}
        row, intent, _ = gather(*self.item_intents, item)
        hit = self._in_history("150_14", user[row], intent)
        row, intent = row[hit], intent[hit]
        first = np.r_[True, row[1:] != row[:-1]] if row.size else np.zeros(0, dtype=bool)
        rank = np.arange(row.size) - np.maximum.accumulate(np.where(first, np.arange(row.size), 0))
        row, intent = row[rank < 3], intent[rank < 3]
        matched_intents = np.bincount(row, minlength=n)

        logits = self.user_effect[user] + self.item_effect[item] + self.position_effect[position][:, None]
        category = self.item_field["206"][item]
        terms = np.stack(
            [
                np.einsum("nr,nr->n", self.user_latent[k][user], self.category_latent[k][category])
                for k in range(2)
            ],
            axis=1,
        )
        logits += terms @ self.affinity_weight.T
        for c, effects in self.match_effect.items():
            amount = matched_intents if c == "853" else matched[c]
            logits += np.outer(amount, effects)
        logits *= SIGNAL
        return Impressions(user, item, position, matched, (row, intent), logits[:, 0], logits[:, 1])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _calibrate(logits: np.ndarray, rate: float, weights: np.ndarray | None = None) -> float:
    """The intercept b with weighted mean sigmoid(b + logits) == rate (bisection; the mean is monotone)."""
    weights = np.ones_like(logits) if weights is None else weights
    low, high = -30.0, 30.0
    for _ in range(60):
        middle = (low + high) / 2
        if np.average(_sigmoid(middle + logits), weights=weights) < rate:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def probabilities(world: World, sample: Impressions) -> tuple[np.ndarray, np.ndarray]:
    """True P(click) and P(purchase | click) of each impression."""
    return (
        _sigmoid(world.click_intercept + sample.click_logit),
        _sigmoid(world.purchase_intercept + sample.purchase_logit),
    )
