"""Fetch the public calibration and benchmark data into a data directory (``$EDGEROUTE_DATA_DIR``).

Every file comes unchanged from a public repository pinned at the commit the project was measured
with. Files that the shared data folder *derives* (joins, hash splits, reformatting) are listed with
the recipe instead of being fetched; the routing benchmark does not need them.

    cloud-hub data download TARGET_DIR [--dry-run] [--force] [--only PREFIX]

``--dry-run`` prints what would be fetched (path and URL) without touching the network.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROUTELLM = ("lm-sys/RouteLLM", "0b64fdaf")
ROUTERDC = ("shuhao02/RouterDC", "0e63989c")
LLMROUTER = ("ulab-uiuc/LLMRouter", "4e7a7969")
MMLU_SUBJECTS = [
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
]
ROUTERDC_FILES = [
    "MATH_prealgebra.json",
    "arc_challenge_train.json",
    "arc_easy_train.json",
    "ceval.json",
    "cmmlu_train.json",
    "gsm8k-train.json",
    "humaneval_train.json",
    "javascript.json",
    "mbpp.json",
    "mmlu_train.json",
]
DERIVED = {
    "routing/routellm/routellm_mmlu_with_gold.csv": "RouteLLM's mmlu_*.csv joined to MMLU test on text",
    "text_eval/mmlu/{test,dev}/*.csv": "hendrycks/test data.tar reformatted with a header row (answer 0-3)",
    "paraphrase/qqp/qqp_pairs_dev.jsonl.gz": "80% hash split of GPTCache's similiar_qqp_full.json.gz",
}


@dataclass(frozen=True)
class Item:
    target: str  # path under the data directory
    url: str


def _gh(repo_commit: tuple[str, str], path: str) -> str:
    # github.com/<repo>/raw/<commit> resolves abbreviated commits, unlike raw.githubusercontent.com
    repo, commit = repo_commit
    return f"https://github.com/{repo}/raw/{commit}/{path}"


def manifest() -> list[Item]:
    items: list[Item] = []
    rl = "routing/routellm"
    for rel in (
        "LICENSE",
        "routellm/evals/gsm8k/gsm8k_responses.csv",
        "routellm/evals/mt_bench/question.jsonl",
        "routellm/evals/mt_bench/judgements.jsonl",
        *(f"routellm/evals/{d}/contaminated_prompts.jsonl" for d in ("gsm8k", "mmlu", "mt_bench")),
        *(f"routellm/evals/mmlu/responses/mmlu_{s}.csv" for s in MMLU_SUBJECTS),
        *(f"benchmarks/mt-bench/{n}.jsonl" for n in ("gpt-4_single", "martian", "unify")),
    ):
        items.append(Item(f"{rl}/{rel}", _gh(ROUTELLM, rel)))
    for name in ("arc_challenge_train.csv", "mbpp_train.csv", "winograde_train.csv"):
        items.append(Item(f"routing/routerbench/{name}", _gh(ROUTERDC, f"datasets/routerbench_zs/{name}")))
    for name in ROUTERDC_FILES:
        items.append(Item(f"routing/routerdc_model7/{name}", _gh(ROUTERDC, f"datasets/split2_model7/{name}")))
    items += [
        Item("routing/llmrouter/LICENSE", _gh(LLMROUTER, "LICENSE")),
        Item("routing/llmrouter/train.json", _gh(LLMROUTER, "data/dcrouter_preprocessed/train.json")),
        Item(
            "routing/llmrouter/default_llm.json",
            _gh(LLMROUTER, "data/example_data/llm_candidates/default_llm.json"),
        ),
    ]
    gsm = ("openai/grade-school-math", "3101c7d5")
    items += [
        Item(f"text_eval/gsm8k/{n}.jsonl", _gh(gsm, f"grade_school_math/data/{n}.jsonl"))
        for n in ("train", "test")
    ]
    items += [
        Item("text_eval/gsm8k/LICENSE", _gh(gsm, "LICENSE")),
        Item(
            "text_eval/humaneval/HumanEval.jsonl.gz",
            _gh(("openai/human-eval", "6d43fb98"), "data/HumanEval.jsonl.gz"),
        ),
        Item("text_eval/humaneval/LICENSE", _gh(("openai/human-eval", "6d43fb98"), "LICENSE")),
        Item(
            "text_eval/mbpp/mbpp.jsonl", _gh(("google-research/google-research", "master"), "mbpp/mbpp.jsonl")
        ),
    ]
    fastchat = ("lm-sys/FastChat", "0e6d3e4b")
    mt = "fastchat/llm_judge/data/mt_bench"
    items += [
        Item("text_eval/mt_bench/question.jsonl", _gh(fastchat, f"{mt}/question.jsonl")),
        Item(
            "text_eval/mt_bench/reference_answer_gpt-4.jsonl",
            _gh(fastchat, f"{mt}/reference_answer/gpt-4.jsonl"),
        ),
    ]
    sts = ("brmson/dataset-sts", "e1d3375f")
    items += [
        Item(f"paraphrase/mrpc/{n}", _gh(sts, f"data/para/msr/{n}"))
        for n in ("msr-para-train.tsv", "msr-para-val.tsv", "LICENCE.html", "README.md")
    ]
    items += [
        Item(
            "image_prompts/parti/PartiPrompts.tsv",
            _gh(("google-research/parti", "5a657978"), "PartiPrompts.tsv"),
        ),
        Item("image_prompts/parti/LICENSE", _gh(("google-research/parti", "5a657978"), "LICENSE")),
        Item(
            "image_prompts/krea_open_prompts/1k.csv", _gh(("krea-ai/open-prompts", "84d1628e"), "data/1k.csv")
        ),
    ]
    return items


def fetch(item: Item, root: Path, timeout: float = 60.0) -> int:
    """Download to ``<target>.part`` then rename, so an interrupted run never leaves a truncated file."""
    dest = root / item.target
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    request = urllib.request.Request(item.url, headers={"User-Agent": "edgeroute-download-data"})
    with urllib.request.urlopen(request, timeout=timeout) as resp, part.open("wb") as fh:
        size = 0
        while chunk := resp.read(1 << 16):
            fh.write(chunk)
            size += len(chunk)
    part.replace(dest)
    return size


HELP = "data download DIR: fetch the public calibration/benchmark data from its pinned origins"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dl = sub.add_parser("download", help=HELP)
    dl.add_argument("target", type=Path, help="data directory to fill")
    dl.add_argument("--dry-run", action="store_true", help="list what would be fetched and exit")
    dl.add_argument("--force", action="store_true", help="fetch files that already exist")
    dl.add_argument("--only", default="", help="only targets starting with this prefix, e.g. routing/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    items = [i for i in manifest() if i.target.startswith(args.only)]
    todo = [i for i in items if args.force or not (args.target / i.target).is_file()]
    if args.dry_run:
        for i in items:
            state = "fetch" if i in todo else "have"
            print(f"{state}\t{i.target}\t{i.url}")
        for path, recipe in DERIVED.items():
            print(f"derived\t{path}\t{recipe}")
        return 0
    from rich.progress import Progress

    failed = []
    with Progress() as bar:
        task = bar.add_task("downloading", total=len(todo))
        for item in todo:
            try:
                fetch(item, args.target)
            except OSError as exc:
                failed.append(f"{item.target}: {exc}")
            bar.advance(task)
    for line in failed:
        print(f"failed\t{line}", file=sys.stderr)
    for path, recipe in DERIVED.items():
        print(f"not fetched (derived)\t{path}\t{recipe}", file=sys.stderr)
    return 1 if failed else 0
