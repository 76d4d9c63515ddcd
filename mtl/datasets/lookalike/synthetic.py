"""Synthetic look-alike data in the published MetaHeac pickle format, with known probabilities.

Users carry a mixture over ``THEMES`` latent interest themes, which decides the interest/kw/topic tokens
they hold (each field's ids are laid out theme by theme), plus skewed demographic categoricals. A
campaign has a *primary* theme, visible through its ad features (adCategoryId, advertiserId, its
productId and productType follow it), and a *secondary* theme and an age targeting that only its own
rows reveal (its campaignId is its own, so no other campaign's targeting reaches it through that id).
The probability that a user belongs to a campaign's audience is

    sigmoid(intercept_c + shared(u, c) + specific(u, c))

* shared   = the user's general propensity (demographics, theme popularity)
             + PRIMARY_WEIGHT x the user's weight on the campaign's primary theme;
* specific = SECONDARY_WEIGHT x the user's weight on the secondary theme + the campaign's age effect;
* intercept_c solves mean probability = the campaign's target rate.

A global model can learn ``shared`` from user and ad features; only adaptation to a campaign's own
stage1 rows can learn ``specific`` -- the signal MetaHeac's per-campaign fine-tuning is meant to find.
Train, hot and cold campaigns are disjoint draws from one distribution; stage1 and stage2 rows of a test
campaign are disjoint users of the same campaign.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mtl.config import LookalikeSynthetic
from mtl.datasets.lookalike import (
    AD_FIELDS,
    ARCHIVE,
    ARCHIVE_FOLDER,
    CAMPAIGN_GROUPS,
    COLUMNS,
    DYNAMIC_FIELDS,
    GROUP,
    LABEL,
    LENGTH_SUFFIX,
    SPLIT_FILES,
    SPLITS,
    STATIC_FIELDS,
    TRUTH,
)
from mtl.datasets.lookalike.legacy_pickle import dumps_legacy_dataframe
from mtl.datasets.prepared import replacing

THEMES = 12
THEME_CONCENTRATION = 0.3  # Dirichlet parameter: most users lean on two or three themes
PRIMARY_WEIGHT = 5.0
SECONDARY_WEIGHT = 5.0
AGE_TARGETING_SD = 0.7
USER_EFFECT_SD = 0.4
# the real data's static cardinalities; token counts of kw/topic scaled down from 263k/50k/10k
STATIC_CARDINALITY = {
    "carrier": 4,
    "consumptionAbility": 3,
    "LBS": 856,
    "age": 6,
    "education": 8,
    "gender": 3,
    "house": 2,
}
TOKENS = {
    "interest1": 122,
    "interest2": 80,
    "interest3": 10,
    "kw1": 4000,
    "kw2": 2000,
    "topic1": 1000,
    "topic2": 1000,
}
MISSING_RATE = {
    "interest1": 0.05,
    "interest2": 0.2,
    "interest3": 0.85,
    "kw1": 0.1,
    "kw2": 0.15,
    "topic1": 0.1,
    "topic2": 0.15,
}
PROPENSITY_FIELDS = ("age", "consumptionAbility", "education", "gender", "LBS")
ADVERTISERS_PER_THEME = 3
PRODUCTS_PER_ADVERTISER = 2
STAGE2_REDRAWS = 200  # attempts to give a test campaign's stage2 both classes


@dataclass
class Users:
    themes: np.ndarray  # (users, THEMES) mixture weights
    columns: dict[str, np.ndarray]  # static ids, token matrices (users, width) and *_length per user
    propensity: np.ndarray  # (users,) shared logit part independent of the campaign


@dataclass
class SyntheticLookalike:
    frames: dict[str, pd.DataFrame]  # split -> frame in the published layout (index = row position)
    truth: pd.DataFrame  # split, row_id, aid, probability and its logit components


def generate_lookalike(settings: LookalikeSynthetic) -> SyntheticLookalike:
    """Draw users, campaigns and labelled rows deterministically from ``settings.seed``."""
    user_rng, campaign_rng, row_rng, order_rng = np.random.default_rng(settings.seed).spawn(4)
    users = _draw_users(settings.users, user_rng)
    groups = (
        ["train"] * settings.train_campaigns
        + ["test_hot"] * settings.hot_campaigns
        + ["test_cold"] * settings.cold_campaigns
    )
    sizes = {"train": settings.train_rows, "test_hot": settings.hot_rows, "test_cold": settings.cold_rows}
    aids = campaign_rng.permutation(len(groups))  # label-encoded campaign ids, groups interleaved
    themes = np.array([campaign_rng.choice(THEMES, size=2, replace=False) for _ in groups])
    parts = []
    for number, (group, rng) in enumerate(zip(groups, row_rng.spawn(len(groups)))):
        stage1 = _log_uniform(campaign_rng, *sizes[group])
        # train campaigns contribute stage1 rows only, as in the published files
        stage2 = 0 if group == "train" else max(1, round(settings.stage2_fraction * stage1))
        splits = CAMPAIGN_GROUPS[group]
        split_of_row = np.array([splits[0]] * stage1 + [splits[-1]] * stage2, dtype=object)
        parts.append(
            {
                "campaign": np.full(stage1 + stage2, number),
                "aid": np.full(stage1 + stage2, aids[number], dtype=np.int64),
                "split": split_of_row,
                **_audience(stage1, stage2, themes[number], users, settings.positive_rate, rng),
            }
        )
    rows = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    ads = _ad_features(themes[:, 0], campaign_rng)
    position = order_rng.permutation(len(rows["user"]))  # each row's place in a virtual source table
    frames, truth = {}, []
    for split in SPLITS:
        chosen = np.flatnonzero(rows["split"] == split)
        chosen = chosen[np.argsort(position[chosen])]
        frames[split] = _frame(rows, chosen, position[chosen], users, ads)
        truth.append(
            pd.DataFrame(
                {
                    "split": split,
                    "row_id": position[chosen],
                    GROUP: rows["aid"][chosen],
                    "probability": rows["probability"][chosen],
                    "shared_logit": rows["shared"][chosen],
                    "specific_logit": rows["specific"][chosen],
                    "intercept": rows["intercept"][chosen],
                }
            )
        )
    return SyntheticLookalike(frames=frames, truth=pd.concat(truth, ignore_index=True))


def _draw_users(count: int, rng: np.random.Generator) -> Users:
    themes = rng.dirichlet(np.full(THEMES, THEME_CONCENTRATION), size=count)
    columns: dict[str, np.ndarray] = {}
    propensity = themes @ rng.normal(0.0, 1.0, THEMES)  # some themes respond more to everything
    for field, cardinality in STATIC_CARDINALITY.items():
        columns[field] = rng.choice(cardinality, size=count, p=rng.dirichlet(np.full(cardinality, 2.0)))
        if field in PROPENSITY_FIELDS:
            propensity += rng.normal(0.0, USER_EFFECT_SD, cardinality)[columns[field]]
    cumulative = np.cumsum(themes, axis=1)
    for field, width in DYNAMIC_FIELDS.items():
        tokens = TOKENS[field]
        draws = rng.random((count, width))
        theme = np.minimum((draws[:, :, None] > cumulative[:, None, :]).sum(axis=2), THEMES - 1)
        # theme k owns ids [k*tokens/THEMES, (k+1)*tokens/THEMES): embeddings can learn the themes
        ids = np.minimum(
            ((theme + rng.random((count, width))) * tokens / THEMES).astype(np.int64), tokens - 1
        )
        lengths = np.where(rng.random(count) < MISSING_RATE[field], 0, rng.integers(1, width + 1, count))
        # slots past the length hold the field's pad id, the largest index, as in the published files
        columns[field] = np.where(np.arange(width) < lengths[:, None], ids, tokens)
        columns[field + LENGTH_SUFFIX] = lengths.astype(np.int64)
    return Users(themes=themes, columns=columns, propensity=propensity)


def _log_uniform(rng: np.random.Generator, low: int, high: int) -> int:
    return round(float(np.exp(rng.uniform(np.log(low), np.log(high)))))


def _audience(
    stage1: int, stage2: int, themes: np.ndarray, users: Users, positive_rate: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One campaign's rows: distinct users where the pool allows, true probabilities, drawn labels."""
    n = stage1 + stage2
    primary, secondary = themes
    age_effect = rng.normal(0.0, AGE_TARGETING_SD, STATIC_CARDINALITY["age"])
    user = rng.choice(len(users.propensity), size=n, replace=n > len(users.propensity))
    shared = users.propensity[user] + PRIMARY_WEIGHT * users.themes[user, primary]
    specific = SECONDARY_WEIGHT * users.themes[user, secondary] + age_effect[users.columns["age"][user]]
    rate = float(np.clip(positive_rate * np.exp(rng.normal(0.0, 0.35)), 0.02, 0.8))
    intercept = _solve_intercept(shared + specific, rate)
    probability = 1.0 / (1.0 + np.exp(-(intercept + shared + specific)))
    label = (rng.random(n) < probability).astype(np.int64)
    tail = slice(stage1, n)
    for _ in range(STAGE2_REDRAWS):  # per-campaign AUC needs both classes; rarely needed
        if stage2 < 2 or 0 < label[tail].sum() < stage2:
            break
        label[tail] = rng.random(stage2) < probability[tail]
    return {
        "user": user,
        "label": label,
        "probability": probability,
        "shared": shared,
        "specific": specific,
        "intercept": np.full(n, intercept),
    }


def _solve_intercept(logits: np.ndarray, rate: float) -> float:
    """The intercept whose mean sigmoid over ``logits`` is ``rate`` (bisection)."""
    low, high = -30.0, 30.0
    for _ in range(60):
        middle = (low + high) / 2.0
        if np.mean(1.0 / (1.0 + np.exp(-(middle + logits)))) > rate:
            high = middle
        else:
            low = middle
    return (low + high) / 2.0


def _ad_features(primary: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-campaign ad ids: category, advertiser, its products and product type follow the primary
    theme; the campaign id is the campaign's own (no two campaigns share one, so no train campaign's own
    targeting leaks into an unrelated test campaign through it); the creative size is unrelated."""
    n = len(primary)
    advertiser = primary + THEMES * rng.integers(0, ADVERTISERS_PER_THEME, n)
    return {
        "advertiserId": advertiser,
        "campaignId": rng.permutation(n),
        "creativeSize": rng.integers(0, 10, n),
        "adCategoryId": 2 * primary + rng.integers(0, 2, n),
        "productId": PRODUCTS_PER_ADVERTISER * advertiser + rng.integers(0, PRODUCTS_PER_ADVERTISER, n),
        "productType": primary % 4,
    }


def _frame(
    rows: dict[str, np.ndarray],
    chosen: np.ndarray,
    index: np.ndarray,
    users: Users,
    ads: dict[str, np.ndarray],
) -> pd.DataFrame:
    """The published 29-column layout; multi-valued cells are int64 arrays of the slot width."""
    user, campaign = rows["user"][chosen], rows["campaign"][chosen]
    data: dict[str, np.ndarray] = {LABEL: rows["label"][chosen], GROUP: rows["aid"][chosen]}
    for field in STATIC_FIELDS:
        data[field] = users.columns[field][user]
    for field in DYNAMIC_FIELDS:
        cells = np.empty(len(chosen), dtype=object)
        cells[:] = list(users.columns[field][user])
        data[field] = cells
    for field in DYNAMIC_FIELDS:
        data[field + LENGTH_SUFFIX] = users.columns[field + LENGTH_SUFFIX][user]
    for field in AD_FIELDS:
        data[field] = ads[field][campaign]
    frame = pd.DataFrame({column: data[column] for column in COLUMNS}, index=pd.Index(index, dtype=np.int64))
    int_columns = [c for c in COLUMNS if c not in DYNAMIC_FIELDS]
    return frame.astype({c: np.int64 for c in int_columns})


def generate(raw_dir: Path, settings: LookalikeSynthetic) -> None:
    """Write ``metaheac_data.zip`` (five legacy-format pickles) and ``synthetic_truth.parquet``."""
    data = generate_lookalike(settings)
    raw_dir.mkdir(parents=True, exist_ok=True)
    with replacing(raw_dir / ARCHIVE) as partial, zipfile.ZipFile(partial, "w") as archive:
        for split, frame in data.frames.items():
            # a fixed timestamp keeps the archive byte-identical for a given seed
            member = zipfile.ZipInfo(
                f"{ARCHIVE_FOLDER}/{SPLIT_FILES[split]}", date_time=(1980, 1, 1, 0, 0, 0)
            )
            archive.writestr(member, dumps_legacy_dataframe(frame), zipfile.ZIP_DEFLATED, compresslevel=1)
    with replacing(raw_dir / TRUTH.name) as partial:
        data.truth.to_parquet(partial, index=False)
