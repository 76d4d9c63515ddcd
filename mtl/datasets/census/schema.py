"""The Census-Income (KDD) schema: the 42 raw columns, which become features, and how labels are read.

Raw UCI files (``census-income.data`` / ``.test``) have 42 comma-separated columns, no header, and every
field after the first starts with a space (``73, Not in universe, 0, ...``). We strip that whitespace on
reading, so the raw label value ``' 50000+.'`` is compared as ``'50000+.'`` (the same string, unpadded).

Features (39): 7 dense numerics and 32 categoricals, in UCI column order. ``instance_weight`` is a
sampling weight, never a feature; ``marital_stat`` and ``income_50k`` are the task labels.
"""

from __future__ import annotations

TASKS = ("income", "marital")
SPLITS = ("train", "valid", "test")

# PaddleRec's short names (from 1010data), in file order.
COLUMNS = (
    "age", "class_worker", "det_ind_code", "det_occ_code", "education", "wage_per_hour", "hs_college",
    "marital_stat", "major_ind_code", "major_occ_code", "race", "hisp_origin", "sex", "union_member",
    "unemp_reason", "full_or_part_emp", "capital_gains", "capital_losses", "stock_dividends",
    "tax_filer_stat", "region_prev_res", "state_prev_res", "det_hh_fam_stat", "det_hh_summ",
    "instance_weight", "mig_chg_msa", "mig_chg_reg", "mig_move_reg", "mig_same", "mig_prev_sunbelt",
    "num_emp", "fam_under_18", "country_father", "country_mother", "country_self", "citizenship",
    "own_or_self", "vet_question", "vet_benefits", "weeks_worked", "year", "income_50k",
)  # fmt: skip

# The long UCI names torch-rechub's 41-column CSV uses (its spelling, typos included).
LONG_NAMES = dict(
    zip(
        COLUMNS,
        (
            "age", "class of worker", "industry code", "occupation code", "education", "wage per hour",
            "enrolled in edu inst last wk", "marital status", "major industry code",
            "major occupation code", "race", "hispanic origin", "sex", "member of a labor union",
            "reason for unemployment", "full or part time employment stat", "capital gains",
            "capital losses", "divdends from stocks", "tax filer status", "region of previous residence",
            "state of previous residence", "detailed household and family stat",
            "detailed household summary in household", "instance weight", "migration code-change in msa",
            "migration code-change in reg", "migration code-move within reg",
            "live in this house 1 year ago", "migration prev res in sunbelt",
            "num persons worked for employer", "family members under 18", "country of birth father",
            "country of birth mother", "country of birth self", "citizenship",
            "own business or self employed", "fill inc questionnaire for veterans admin",
            "veterans benefits", "weeks worked in year", "year", "income",
        ),
        strict=True,
    )
)  # fmt: skip

WEIGHT = "instance_weight"
LABEL_COLUMNS = {"income": "income_50k", "marital": "marital_stat"}  # task -> raw column
POSITIVE = {"income": "50000+.", "marital": "Never married"}  # raw value (stripped) of a positive
INCOME_VALUES = ("- 50000.", "50000+.")
MARITAL_VALUES = (
    "Never married", "Married-civilian spouse present", "Married-spouse absent", "Separated",
    "Divorced", "Widowed", "Married-A F spouse present",
)  # fmt: skip

DENSE = (
    "age", "wage_per_hour", "capital_gains", "capital_losses", "stock_dividends", "num_emp",
    "weeks_worked",
)  # fmt: skip
# Heavy-tailed money columns (mostly 0, a long tail up to 99,999): log1p before standardising.
LOG1P = frozenset({"wage_per_hour", "capital_gains", "capital_losses", "stock_dividends"})
SPARSE = tuple(c for c in COLUMNS if c not in (*DENSE, WEIGHT, *LABEL_COLUMNS.values()))
NUMERIC = (*DENSE, WEIGHT)  # parsed as numbers in the raw files; everything else stays text

# Plausible ranges of the raw numerics (UCI documents age 0-90, weeks 0-52, money capped at 99,999).
RANGES: dict[str, tuple[float, float]] = {
    "age": (0, 120),
    "wage_per_hour": (0, 100_000),
    "capital_gains": (0, 100_000),
    "capital_losses": (0, 100_000),
    "stock_dividends": (0, 100_000),
    "num_emp": (0, 6),
    "weeks_worked": (0, 52),
    "instance_weight": (0, 1_000_000),
}
# Categoricals written as numeric codes in the raw files, with their documented code sets.
CODED = {
    "det_ind_code": tuple(str(i) for i in range(52)),
    "det_occ_code": tuple(str(i) for i in range(47)),
    "own_or_self": ("0", "1", "2"),
    "vet_benefits": ("0", "1", "2"),
    "year": ("94", "95"),
}
