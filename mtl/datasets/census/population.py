"""The synthetic population behind ``synthetic.py``: raw Census values with a planted, known signal.

People are drawn column by column with realistic UCI values and dependencies (children do not work,
schooling drives occupation, partners live as householder/spouse and file jointly, migration is asked in
1994 only). The true probabilities are functions of the drawn features, in log-odds (intercepts solved
so that the base rates match the parameters):

* income > 50k: years of schooling, professional/executive occupation, an inverted-U in age, weeks
  worked, sex, capital gains and dividends, and a schooling x full-year-work interaction; ~0 for
  children.
* never married: mostly age (children almost surely), then the household fields (spouse/householder,
  "never marr"/"ever marr" in the detailed status) and joint tax filing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mtl.config import CensusSynthetic
from mtl.datasets.census import raw_values as rv

NIU = "Not in universe"


def _draw(rng: np.random.Generator, weights: Mapping[str, float], n: int) -> np.ndarray:
    values = np.array(list(weights), dtype=object)
    p = np.array(list(weights.values()), dtype=np.float64)
    return values[rng.choice(len(values), size=n, p=p / p.sum())]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _calibrated(logit: np.ndarray, rate: float) -> np.ndarray:
    """sigmoid(logit + b) with the intercept b solved (bisection) so that the mean equals ``rate``."""
    low, high = -40.0, 40.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if _sigmoid(logit + mid).mean() < rate else (low, mid)
    return _sigmoid(logit + (low + high) / 2)


def _fill(out: np.ndarray, mask: np.ndarray, values: Any) -> None:
    out[mask] = values[mask] if isinstance(values, np.ndarray) else values


def draw_people(n: int, rng: np.random.Generator, settings: CensusSynthetic) -> dict[str, np.ndarray]:
    """All 42 raw columns (stripped values) plus ``p_income`` / ``p_marital`` for ``n`` people."""
    c: dict[str, np.ndarray] = {}
    child = rng.random(n) < 0.26
    age = np.where(child, rng.integers(0, 18, n), np.clip(18 + rng.gamma(2.0, 14.0, n), 18, 90)).astype(int)
    kid, minor, adult = age < 15, age < 18, age >= 18
    c["age"] = age
    c["sex"] = _draw(rng, {"Female": 52, "Male": 48}, n)
    male = c["sex"] == "Male"
    c["race"] = _draw(rng, rv.RACE, n)
    c["hisp_origin"] = _draw(rng, rv.HISPANIC_ORIGIN, n)
    c["country_self"] = country = _draw(rng, rv.COUNTRIES, n)
    for parent in ("country_father", "country_mother"):
        c[parent] = np.where(rng.random(n) < 0.85, country, _draw(rng, rv.COUNTRIES, n))
    citizenship = np.where(rng.random(n) < 0.98, rv.NATIVE, rv.CITIZEN_BORN_ABROAD).astype(object)
    foreign = ~np.isin(country, ["United-States", "Puerto-Rico", "Outlying-U S (Guam USVI etc)"])
    _fill(citizenship, foreign, _draw(rng, rv.FOREIGN, n))
    _fill(citizenship, np.isin(country, ["Puerto-Rico", "Outlying-U S (Guam USVI etc)"]), rv.CITIZEN_OUTLYING)
    c["citizenship"] = citizenship

    # Schooling: children by age, adults from the UCI mix.
    education = _draw(rng, rv.ADULT_EDUCATION, n)
    grades = np.array(["9th grade", "10th grade", "11th grade"], dtype=object)
    _fill(education, minor, grades[np.clip(age - 15, 0, 2)])
    _fill(education, kid, "Children")
    c["education"] = education
    years = np.vectorize(rv.EDUCATION_YEARS.get, otypes=[float])(education)
    hs_college = np.full(n, NIU, dtype=object)
    _fill(hs_college, minor & ~kid, "High school")
    _fill(
        hs_college, (age >= 18) & (age < 25) & (years >= 12) & (rng.random(n) < 0.4), "College or university"
    )
    c["hs_college"] = hs_college

    # Work: who works, how much, in which occupation and industry.
    p_work = np.select([kid, minor, age <= 60, age <= 65], [0.0, 0.3, 0.85, 0.45], 0.12)
    works = rng.random(n) < p_work
    unemployed = ~works & adult & (age < 65) & (rng.random(n) < 0.08)
    in_labor = works | unemployed
    weeks = np.where(rng.random(n) < 0.62, 52, rng.integers(1, 52, n))
    c["weeks_worked"] = np.select([works, unemployed], [weeks, rng.integers(0, 30, n)], 0)
    names = list(rv.OCCUPATIONS)
    base = np.log([rv.OCCUPATIONS[o][0] for o in names])
    affinity = np.array([rv.OCCUPATIONS[o][1] for o in names])
    logits = base + np.outer((years - 12.0) / 2.0, affinity)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True)).cumsum(axis=1)
    pick = (rng.random(n)[:, None] * weights[:, -1:] > weights).sum(axis=1)
    occupation = np.where(in_labor, np.array(names, dtype=object)[pick], NIU)
    c["major_occ_code"] = occupation
    c["det_occ_code"] = _codes(rng, occupation, {o: v[2] for o, v in rv.OCCUPATIONS.items()})
    industry = np.where(in_labor, _draw(rng, {k: v[0] for k, v in rv.INDUSTRIES.items()}, n), "")
    c["det_ind_code"] = _codes(rng, industry, {k: v[1] for k, v in rv.INDUSTRIES.items()})
    c["major_ind_code"] = np.where(in_labor, industry, "Not in universe or children")
    class_worker = np.where(adult & (rng.random(n) < 0.03), "Never worked", NIU).astype(object)
    _fill(class_worker, in_labor, _draw(rng, rv.CLASS_OF_WORKER, n))
    c["class_worker"] = class_worker
    c["own_or_self"] = np.where(works, np.where(rng.random(n) < 0.1, 1, 2), 0)
    c["num_emp"] = np.where(works, rng.integers(1, 7, n), 0)
    hourly = works & (rng.random(n) < 0.15)
    c["wage_per_hour"] = np.where(hourly, np.clip(np.exp(rng.normal(6.8, 0.5, n)), 100, 9999), 0).astype(int)
    union = np.where(rng.random(n) < 0.15, "Yes", "No")
    c["union_member"] = np.where(works & (rng.random(n) < 0.35), union, NIU)
    c["unemp_reason"] = np.where(unemployed, _draw(rng, rv.UNEMPLOYMENT_REASONS, n), NIU)
    employment = np.where(minor, "Children or Armed Forces", "Not in labor force").astype(object)
    _fill(employment, works, _draw(rng, rv.FULL_OR_PART_TIME, n))
    _fill(
        employment, unemployed, np.where(rng.random(n) < 0.7, "Unemployed full-time", "Unemployed part- time")
    )
    c["full_or_part_emp"] = employment

    # Money: mostly zero, long tails, more likely with schooling and age.
    edu_z, age_z = (years - 12.0) / 3.0, (age - 45.0) / 15.0
    gains = adult & (rng.random(n) < _sigmoid(-3.6 + 0.6 * edu_z + 0.4 * age_z))
    c["capital_gains"] = np.where(gains, np.clip(np.exp(rng.normal(8.2, 1.1, n)), 1, 99999), 0).astype(int)
    losses = adult & (rng.random(n) < 0.02)
    c["capital_losses"] = np.where(losses, np.clip(rng.normal(1800, 400, n), 1, 4608), 0).astype(int)
    dividends = adult & (rng.random(n) < _sigmoid(-2.4 + 0.6 * edu_z + 0.5 * age_z))
    c["stock_dividends"] = np.where(dividends, np.clip(np.exp(rng.normal(5.5, 1.6, n)), 1, 99999), 0).astype(
        int
    )

    partner = adult & (rng.random(n) < 0.72 * _sigmoid((age - 26.0) / 3.5) - 0.005 * np.maximum(age - 70, 0))
    _household(c, rng, age, partner, works)
    _migration(c, rng, age)
    c["fam_under_18"] = np.where(minor, _draw(rng, rv.FAMILY_UNDER_18, n), NIU)
    c["vet_question"] = np.where(
        adult & (rng.random(n) < 0.01), np.where(rng.random(n) < 0.2, "Yes", "No"), NIU
    )
    c["vet_benefits"] = np.where(minor, 0, np.where(rng.random(n) < 0.02, 1, 2))
    c["instance_weight"] = np.round(np.clip(np.exp(rng.normal(7.35, 0.55, n)), 37.87, 18656.3), 2)

    # The planted signal.
    high = np.isin(occupation, rv.HIGH_PAY_OCCUPATIONS)
    mid = np.isin(occupation, rv.MID_PAY_OCCUPATIONS)
    full_year = c["weeks_worked"] >= 50
    income = (
        1.0 * edu_z + 1.1 * high + 0.45 * mid - 1.3 * age_z**2 + 0.035 * c["weeks_worked"] + 0.6 * male
        + 1.7 * gains + 0.12 * np.log1p(c["capital_gains"]) + 0.7 * dividends + 0.5 * edu_z * full_year
    )  # fmt: skip
    c["p_income"] = _calibrated(np.where(age < 16, -12.0, income), settings.income_rate)
    status = c["det_hh_fam_stat"]
    marital = (
        -0.09 * (np.maximum(age, 18) - 30) + 3.2 * kid + 2.0 * (minor & ~kid)
        - 2.0 * (c["det_hh_summ"] == "Spouse of householder") - 1.5 * (status == "Householder")
        + 0.4 * (status == rv.NONFAMILY_HOUSEHOLDER) + 1.0 * _contains(status, "never marr")
        - 1.5 * _contains(status, " ever marr") - 1.5 * _contains(status, "spouse of subfamily")
        - 1.5 * _contains(c["tax_filer_stat"], "Joint") + 0.3 * male
    )  # fmt: skip
    c["p_marital"] = _calibrated(marital, settings.never_married_rate)
    return c


def _contains(values: np.ndarray, text: str) -> np.ndarray:
    """Whether each value contains ``text`` (evaluated once per distinct value)."""
    codes, distinct = pd.factorize(values)
    return np.array([text in str(value) for value in distinct], dtype=bool)[codes]


def _codes(rng: np.random.Generator, labels: np.ndarray, blocks: Mapping[str, tuple[int, int]]) -> np.ndarray:
    """Detailed codes drawn uniformly from each major label's block of codes; 0 outside every block."""
    codes = np.zeros(len(labels), dtype=int)
    for label, (low, high) in blocks.items():
        mask = labels == label
        codes[mask] = rng.integers(low, high, int(mask.sum()))
    return codes


def _household(
    c: dict[str, np.ndarray],
    rng: np.random.Generator,
    age: np.ndarray,
    partner: np.ndarray,
    works: np.ndarray,
) -> None:
    """Household summary and detailed status, and tax filing, consistent with age and a partner."""
    n = len(age)
    minor, adult = age < 18, age >= 18
    young = {
        "Child 18 or older": 45, "Householder": 25, "Nonrelative of householder": 18,
        "Other relative of householder": 10, "Group Quarters- Secondary individual": 2,
    }  # fmt: skip
    older = {
        "Householder": 70, "Other relative of householder": 12, "Nonrelative of householder": 10,
        "Child 18 or older": 6, "Group Quarters- Secondary individual": 2,
    }  # fmt: skip
    summary = np.where(age < 30, _draw(rng, young, n), _draw(rng, older, n))
    _fill(summary, partner, np.where(rng.random(n) < 0.55, "Householder", "Spouse of householder"))
    kids = {"Child under 18 never married": 93, "Other relative of householder": 5,
            "Nonrelative of householder": 1.5, "Child under 18 ever married": 0.5}  # fmt: skip
    _fill(summary, minor, _draw(rng, kids, n))
    status = np.empty(n, dtype=object)
    for value, details in rv.HOUSEHOLD_DETAIL.items():
        mask = summary == value
        status[mask] = _draw(rng, details, int(mask.sum()))
    _fill(status, minor & (summary == "Other relative of householder"), rv.MINOR_OTHER_RELATIVE)
    _fill(
        status, minor & (summary == "Nonrelative of householder"), "Child under 18 of RP of unrel subfamily"
    )
    _fill(
        status,
        adult & ~partner & (summary == "Householder") & (rng.random(n) < 0.6),
        rv.NONFAMILY_HOUSEHOLDER,
    )
    c["det_hh_summ"], c["det_hh_fam_stat"] = summary, status
    joint = np.select(
        [age >= 65, rng.random(n) < 0.9],
        ["Joint both 65+", "Joint both under 65"],
        "Joint one under 65 & one 65+",
    )
    single = np.where(works, np.where(rng.random(n) < 0.75, "Single", "Head of household"),
                      np.where(rng.random(n) < 0.6, "Nonfiler", "Single"))  # fmt: skip
    c["tax_filer_stat"] = np.select([minor & ~works, partner], ["Nonfiler", joint], single).astype(object)


def _migration(c: dict[str, np.ndarray], rng: np.random.Generator, age: np.ndarray) -> None:
    """Survey year and the migration block (asked in 1994 only; '?' in 1995, as in the UCI file)."""
    n = len(age)
    year = np.where(rng.random(n) < 0.5, 94, 95)
    asked, baby = year == 94, age == 0
    mover = asked & ~baby & (rng.random(n) < 0.17)
    far = mover & (rng.random(n) < 0.3)

    def block(values: Mapping[str, float], stay: str) -> np.ndarray:
        out = np.where(mover, _draw(rng, values, n), stay).astype(object)
        _fill(out, baby & asked, NIU)
        _fill(out, ~asked, "?")
        return out

    c["year"] = year
    c["mig_chg_msa"] = block(rv.MIGRATION_MSA, "Nonmover")
    c["mig_chg_reg"] = block(rv.MIGRATION_REGION, "Nonmover")
    c["mig_move_reg"] = block(rv.MIGRATION_WITHIN_REGION, "Nonmover")
    c["mig_prev_sunbelt"] = block({"Yes": 40, "No": 60}, NIU)
    c["mig_same"] = np.select([~asked | baby, mover], ["Not in universe under 1 year old", "No"], "Yes")
    c["region_prev_res"] = np.where(far, _draw(rng, rv.REGIONS, n), NIU)
    c["state_prev_res"] = np.where(far, rng.choice(np.array(rv.STATES, dtype=object), n), NIU)


def marital_status(rng: np.random.Generator, people: dict[str, np.ndarray], never: np.ndarray) -> np.ndarray:
    """The raw marital value: 'Never married' for positives, else a married/former status by age."""
    n = len(never)
    married = np.where(rng.random(n) < 0.96, "Married-civilian spouse present", "Married-spouse absent")
    married = np.where(rng.random(n) < 0.01, "Married-A F spouse present", married)
    old = _draw(rng, {"Widowed": 55, "Divorced": 30, "Separated": 5, "Married-spouse absent": 10}, n)
    young = _draw(rng, {"Divorced": 60, "Separated": 20, "Married-spouse absent": 15, "Widowed": 5}, n)
    partnered = np.isin(people["det_hh_summ"], ["Householder", "Spouse of householder"]) & (
        people["det_hh_fam_stat"] != rv.NONFAMILY_HOUSEHOLDER
    )
    former = np.where(people["age"] >= 65, old, young)
    return np.where(never == 1, "Never married", np.where(partnered, married, former))
