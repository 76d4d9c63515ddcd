"""Category values of the UCI Census-Income (KDD) file, with rough frequencies, for the generator.

Values are spelled as in ``census-income.names`` (without the leading space the files add). Weights are
approximate shares among the people a distribution applies to (they are normalised when drawn).
"""

from __future__ import annotations

# education -> years of schooling (drives occupation and income)
EDUCATION_YEARS = {
    "Children": 0.0,
    "Less than 1st grade": 0.5,
    "1st 2nd 3rd or 4th grade": 2.5,
    "5th or 6th grade": 5.5,
    "7th and 8th grade": 7.5,
    "9th grade": 9.0,
    "10th grade": 10.0,
    "11th grade": 11.0,
    "12th grade no diploma": 11.5,
    "High school graduate": 12.0,
    "Some college but no degree": 13.0,
    "Associates degree-occup /vocational": 14.0,
    "Associates degree-academic program": 14.0,
    "Bachelors degree(BA AB BS)": 16.0,
    "Masters degree(MA MS MEng MEd MSW MBA)": 18.0,
    "Prof school degree (MD DDS DVM LLB JD)": 19.0,
    "Doctorate degree(PhD EdD)": 20.0,
}
ADULT_EDUCATION = {
    "Less than 1st grade": 0.5, "1st 2nd 3rd or 4th grade": 1.2, "5th or 6th grade": 2.0,
    "7th and 8th grade": 3.5, "9th grade": 2.5, "10th grade": 3.0, "11th grade": 3.0,
    "12th grade no diploma": 1.5, "High school graduate": 32.0, "Some college but no degree": 19.0,
    "Associates degree-occup /vocational": 3.5, "Associates degree-academic program": 2.8,
    "Bachelors degree(BA AB BS)": 14.0, "Masters degree(MA MS MEng MEd MSW MBA)": 4.5,
    "Prof school degree (MD DDS DVM LLB JD)": 1.3, "Doctorate degree(PhD EdD)": 0.9,
}  # fmt: skip

# major occupation -> (weight, affinity to years of schooling, block of detailed occupation codes)
OCCUPATIONS = {
    "Professional specialty": (14.0, 1.3, (1, 7)),
    "Executive admin and managerial": (13.0, 0.9, (7, 12)),
    "Technicians and related support": (3.5, 0.6, (12, 15)),
    "Sales": (12.0, 0.2, (15, 20)),
    "Adm support including clerical": (15.0, 0.2, (20, 27)),
    "Protective services": (1.8, 0.0, (27, 29)),
    "Private household services": (0.5, -0.8, (29, 30)),
    "Other service": (12.0, -0.6, (30, 34)),
    "Precision production craft & repair": (11.0, -0.3, (34, 38)),
    "Machine operators assmblrs & inspctrs": (6.5, -0.7, (38, 40)),
    "Transportation and material moving": (4.0, -0.6, (40, 42)),
    "Handlers equip cleaners etc": (4.0, -0.8, (42, 44)),
    "Farming forestry and fishing": (3.0, -0.7, (44, 46)),
    "Armed Forces": (0.1, 0.0, (46, 47)),
}
HIGH_PAY_OCCUPATIONS = ("Professional specialty", "Executive admin and managerial")
MID_PAY_OCCUPATIONS = ("Technicians and related support", "Sales", "Precision production craft & repair")

# major industry -> (weight, block of detailed industry codes)
INDUSTRIES = {
    "Agriculture": (3.0, (1, 3)), "Mining and quarrying": (0.6, (3, 4)), "Construction": (6.0, (4, 5)),
    "Manufacturing-durable goods": (9.0, (5, 15)), "Manufacturing-nondurable goods": (7.0, (15, 24)),
    "Transportation": (4.0, (24, 28)), "Communications": (1.2, (28, 29)),
    "Utilities and sanitary services": (1.2, (29, 30)), "Wholesale trade": (3.6, (30, 32)),
    "Retail trade": (17.0, (32, 34)), "Finance insurance and real estate": (6.2, (34, 37)),
    "Private household services": (0.9, (37, 38)), "Business and repair services": (5.6, (38, 40)),
    "Personal services except private HH": (3.0, (40, 41)), "Entertainment": (1.7, (41, 42)),
    "Hospital services": (4.0, (42, 43)), "Medical except hospital": (4.8, (43, 44)),
    "Education": (8.5, (44, 45)), "Social services": (2.6, (45, 46)),
    "Other professional services": (4.5, (46, 48)), "Forestry and fisheries": (0.2, (48, 49)),
    "Public administration": (4.7, (49, 51)), "Armed Forces": (0.1, (51, 52)),
}  # fmt: skip

CLASS_OF_WORKER = {
    "Private": 72.0, "Self-employed-not incorporated": 8.5, "Local government": 7.8,
    "State government": 4.2, "Federal government": 2.9, "Self-employed-incorporated": 3.3,
    "Without pay": 0.2,
}  # fmt: skip
FULL_OR_PART_TIME = {
    "Full-time schedules": 62.0, "PT for non-econ reasons usually FT": 17.0,
    "PT for econ reasons usually PT": 4.0, "PT for econ reasons usually FT": 1.0,
    "Children or Armed Forces": 16.0,
}  # fmt: skip
UNEMPLOYMENT_REASONS = {
    "Other job loser": 30.0, "Re-entrant": 33.0, "Job loser - on layoff": 15.0, "Job leaver": 9.0,
    "New entrant": 13.0,
}  # fmt: skip

RACE = {
    "White": 83.9, "Black": 10.2, "Asian or Pacific Islander": 2.9, "Other": 1.8,
    "Amer Indian Aleut or Eskimo": 1.2,
}  # fmt: skip
HISPANIC_ORIGIN = {
    "All other": 86.2, "Mexican-American": 4.1, "Mexican (Mexicano)": 3.6, "Central or South American": 2.0,
    "Puerto Rican": 1.7, "Other Spanish": 1.2, "Cuban": 0.6, "NA": 0.4, "Do not know": 0.1, "Chicano": 0.1,
}  # fmt: skip
COUNTRIES = {
    "United-States": 88.6, "Mexico": 2.9, "?": 1.7, "Puerto-Rico": 0.7, "Germany": 0.4, "Philippines": 0.4,
    "Cuba": 0.4, "El-Salvador": 0.3, "Dominican-Republic": 0.3, "Canada": 0.4, "China": 0.2,
    "South Korea": 0.2, "Jamaica": 0.2, "India": 0.2, "Italy": 0.2, "England": 0.2, "Columbia": 0.2,
    "Vietnam": 0.2, "Japan": 0.2, "Poland": 0.2, "Guatemala": 0.1, "Haiti": 0.1, "Ecuador": 0.1,
    "Peru": 0.1, "Nicaragua": 0.1, "Iran": 0.1, "Taiwan": 0.1, "Portugal": 0.1, "Greece": 0.1,
    "Honduras": 0.1, "Outlying-U S (Guam USVI etc)": 0.1, "Ireland": 0.05, "France": 0.05,
    "Cambodia": 0.05, "Laos": 0.05, "Thailand": 0.05, "Yugoslavia": 0.05, "Scotland": 0.05,
    "Hungary": 0.05, "Trinadad&Tobago": 0.05, "Hong Kong": 0.05, "Panama": 0.03, "Holand-Netherlands": 0.01,
}  # fmt: skip
NATIVE = "Native- Born in the United States"
CITIZEN_BORN_ABROAD = "Native- Born abroad of American Parent(s)"
CITIZEN_OUTLYING = "Native- Born in Puerto Rico or U S Outlying"
FOREIGN = {"Foreign born- Not a citizen of U S": 60.0, "Foreign born- U S citizen by naturalization": 40.0}

FAMILY_UNDER_18 = {
    "Both parents present": 69.0, "Mother only present": 21.0, "Neither parent present": 7.0,
    "Father only present": 3.0,
}  # fmt: skip

# Household summary -> detailed household/family status, for children (<18) and adults.
HOUSEHOLD_DETAIL = {
    "Child under 18 never married": {
        "Child <18 never marr not in subfamily": 90.0, "Grandchild <18 never marr not in subfamily": 7.0,
        "Child <18 never marr RP of subfamily": 3.0,
    },
    "Child under 18 ever married": {"Child <18 ever marr not in subfamily": 1.0},
    "Other relative of householder": {
        "Other Rel 18+ never marr not in subfamily": 45.0, "Other Rel 18+ ever marr not in subfamily": 40.0,
        "Other Rel 18+ spouse of subfamily RP": 15.0,
    },
    "Nonrelative of householder": {"Secondary individual": 80.0, "RP of unrelated subfamily": 20.0},
    "Householder": {"Householder": 1.0},
    "Spouse of householder": {"Spouse of householder": 1.0},
    "Child 18 or older": {
        "Child 18+ never marr Not in a subfamily": 80.0, "Child 18+ ever marr Not in a subfamily": 15.0,
        "Child 18+ spouse of subfamily RP": 5.0,
    },
    "Group Quarters- Secondary individual": {"In group quarters": 1.0},
}  # fmt: skip
MINOR_OTHER_RELATIVE = "Other Rel <18 never marr not in subfamily"
NONFAMILY_HOUSEHOLDER = "Nonfamily householder"

MIGRATION_MSA = {
    "MSA to MSA": 53.0, "NonMSA to nonMSA": 14.0, "MSA to nonMSA": 4.0, "NonMSA to MSA": 3.0,
    "Abroad to MSA": 2.0, "Not identifiable": 23.0, "Abroad to nonMSA": 1.0,
}  # fmt: skip
MIGRATION_REGION = {
    "Same county": 70.0, "Different county same state": 14.0, "Different region": 6.0,
    "Different state same division": 5.0, "Different division same region": 4.0, "Abroad": 1.0,
}  # fmt: skip
OUT_OF_STATE_MOVES = {"South": 5.0, "West": 4.0, "Midwest": 3.0, "Northeast": 3.0}  # by destination region
MIGRATION_WITHIN_REGION = {
    "Same county": 70.0,
    "Different county same state": 14.0,
    **{f"Different state in {region}": share for region, share in OUT_OF_STATE_MOVES.items()},
    "Abroad": 1.0,
}
REGIONS = {"South": 35.0, "West": 25.0, "Midwest": 20.0, "Northeast": 15.0, "Abroad": 5.0}
STATES = (
    "California", "Utah", "Florida", "North Carolina", "Abroad", "Oklahoma", "Minnesota", "Indiana",
    "North Dakota", "New Mexico", "Michigan", "Alaska", "Kentucky", "Arizona", "New Hampshire", "Wyoming",
    "Colorado", "Oregon", "West Virginia", "Georgia", "Montana", "Alabama", "Nevada", "Texas",
    "Pennsylvania", "Ohio", "Iowa", "Maine", "Louisiana", "Kansas", "New York", "Illinois", "Virginia",
    "Tennessee", "Vermont", "Arkansas", "Missouri", "Massachusetts", "Connecticut", "Nebraska",
    "South Carolina", "Idaho", "Maryland", "Wisconsin", "Delaware", "New Jersey", "Mississippi",
    "District of Columbia", "South Dakota", "?",
)  # fmt: skip
