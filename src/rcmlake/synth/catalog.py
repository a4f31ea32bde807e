"""Reference vocabularies the synthetic hospitals draw from.

Real CPT and ICD-10-CM codes ship as package data (``data/``) so the
generated encounters validate against the same code sets silver uses.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import pyarrow as pa
import pyarrow.csv as pacsv

DEPARTMENTS = [
    ("Cardiology", "Cardiologist"),
    ("Emergency Medicine", "Emergency Physician"),
    ("Orthopedics", "Orthopedic Surgeon"),
    ("Pediatrics", "Pediatrician"),
    ("Radiology", "Radiologist"),
    ("Oncology", "Oncologist"),
    ("Neurology", "Neurologist"),
    ("Internal Medicine", "Internist"),
    ("Obstetrics and Gynecology", "Obstetrician"),
    ("General Surgery", "General Surgeon"),
]

FIRST_NAMES = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Nancy",
    "Matthew",
    "Lisa",
    "Anthony",
    "Betty",
    "Mark",
    "Sandra",
    "Steven",
    "Ashley",
    "Paul",
    "Emily",
    "Andrew",
    "Donna",
    "Joshua",
    "Michelle",
    "Kenneth",
    "Carol",
    "Kevin",
    "Amanda",
    "Brian",
    "Melissa",
    "Maria",
    "Jose",
    "Wei",
    "Aisha",
    "Omar",
    "Priya",
]
LAST_NAMES = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
]
STREETS = [
    "Main St",
    "Oak Ave",
    "Maple Dr",
    "Cedar Ln",
    "Pine St",
    "Elm St",
    "Lakeview Rd",
    "Hillcrest Ave",
    "Washington Blvd",
    "Park Pl",
    "Sunset Blvd",
    "River Rd",
]
CITIES = [
    ("Springfield", "IL", "627"),
    ("Riverside", "CA", "925"),
    ("Franklin", "TN", "370"),
    ("Greenville", "SC", "296"),
    ("Madison", "WI", "537"),
    ("Salem", "OR", "973"),
]

# payer name, payer type (claims file), line of business, amount type, share of patients,
# allowed / billed ratio, typical days from claim to adjudication
PAYERS = [
    ("Medicare", "Government", "Medicare", "Medicare", 0.25, 0.42, 18),
    ("Medicaid", "Government", "Medicaid", "Medicaid", 0.15, 0.36, 30),
    ("BlueCross", "Private", "Commercial", "Insurance", 0.20, 0.62, 24),
    ("Aetna", "Private", "Commercial", "Insurance", 0.15, 0.66, 27),
    ("UnitedHealthcare", "Private", "Commercial", "Insurance", 0.17, 0.64, 33),
    ("Self-Pay", "Self-pay", "Self-Pay", "Self-pay", 0.08, 1.00, 45),
]
ENCOUNTER_TYPES = (
    ["Outpatient", "Routine Checkup", "Emergency", "Inpatient", "Telemedicine"],
    [0.38, 0.22, 0.18, 0.12, 0.10],
)
VISIT_TYPES = (["Routine", "Follow-up", "Emergency", "Consultation"], [0.35, 0.30, 0.18, 0.17])


def _read(name: str) -> pa.Table:
    with resources.files("rcmlake.synth.data").joinpath(name).open("rb") as fh:
        return pacsv.read_csv(
            fh, convert_options=pacsv.ConvertOptions(column_types={"code": pa.string()})
        )


@cache
def cpt_catalog() -> pa.Table:
    """Real CPT codes with category, description and a typical charge in USD."""
    return _read("cpt_codes.csv")


@cache
def icd_catalog() -> pa.Table:
    """A packaged slice of ICD-10-CM (code, description) used offline."""
    return _read("icd10cm_codes.csv")
