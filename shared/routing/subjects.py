"""MMLU's 57 subjects folded into ``shared.taxonomy.Domain`` groups (the usual four MMLU categories,
with medicine and business/law split out because tenants set different quality targets for them)."""

from __future__ import annotations

from shared.taxonomy import Domain

_GROUPS: dict[Domain, list[str]] = {
    Domain.STEM: [
        "abstract_algebra",
        "astronomy",
        "college_biology",
        "college_chemistry",
        "college_computer_science",
        "college_mathematics",
        "college_physics",
        "computer_security",
        "conceptual_physics",
        "electrical_engineering",
        "elementary_mathematics",
        "high_school_biology",
        "high_school_chemistry",
        "high_school_computer_science",
        "high_school_mathematics",
        "high_school_physics",
        "high_school_statistics",
        "machine_learning",
        "formal_logic",
    ],
    Domain.HUMANITIES: [
        "high_school_european_history",
        "high_school_us_history",
        "high_school_world_history",
        "logical_fallacies",
        "moral_disputes",
        "moral_scenarios",
        "philosophy",
        "prehistory",
        "world_religions",
        "global_facts",
        "miscellaneous",
    ],
    Domain.SOCIAL_SCIENCES: [
        "econometrics",
        "high_school_geography",
        "high_school_government_and_politics",
        "high_school_macroeconomics",
        "high_school_microeconomics",
        "high_school_psychology",
        "human_sexuality",
        "professional_psychology",
        "public_relations",
        "security_studies",
        "sociology",
        "us_foreign_policy",
    ],
    Domain.MEDICINE: [
        "anatomy",
        "clinical_knowledge",
        "college_medicine",
        "human_aging",
        "medical_genetics",
        "nutrition",
        "professional_medicine",
        "virology",
    ],
    Domain.BUSINESS_LAW: [
        "business_ethics",
        "international_law",
        "jurisprudence",
        "management",
        "marketing",
        "professional_accounting",
        "professional_law",
    ],
}

SUBJECT_DOMAIN: dict[str, Domain] = {s: d for d, subjects in _GROUPS.items() for s in subjects}


def subject_domain(subject: str) -> Domain:
    """The domain of an MMLU subject; unknown subjects are ``GENERAL`` rather than an error."""
    return SUBJECT_DOMAIN.get(subject, Domain.GENERAL)
