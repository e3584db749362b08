"""The LLM judge's prompts: what the model is asked about a grey-zone candidate.

Kept apart from ``judge_llm`` (which loads llama.cpp) so that benchmarks and the CLI can name and
compare prompts without loading a model library. A prompt's digest is part of the judge's name:
thresholds fitted on one prompt's scores mean nothing for another's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cloud_hub.cache.judge import JudgeItem

# v1 asks about the two questions; v2 asks whether the stored answer serves the new question, with
# few-shot examples of the traps the edge's guards look for (the examples are invented, never
# pairs from a benchmark). Both are kept so that ``cloud-hub bench judge --llm-prompt`` can compare them.
SYSTEM_V1 = (
    "You check a question-answering cache. An answer was stored for an earlier question; a user "
    "now asks a new question. Reply Yes only if the stored answer is also a correct and complete "
    "answer to the new question: the same request, about the same things, with the same details. "
    "Reply No if the new question asks about something else, adds or drops a condition, or changes a "
    "name, number, date, or whose it is. Reply with one word: Yes or No."
)
SYSTEM_V2 = (
    "You check a question-answering cache. An answer was stored for an earlier question; a user now "
    "asks a new question. Decide whether the stored answer would fully and correctly answer the new "
    "question, as if the user had asked the earlier question word for word.\n"
    "Reply Yes only when both questions ask for exactly the same information: rewording, synonyms and "
    "word order do not matter.\n"
    "Reply No when the new question asks about a different thing, person, place, product, number, date "
    "or amount; adds, drops or negates a condition; narrows or widens the scope; or asks about someone "
    "else (my vs. my colleague's). When unsure, reply No: a wrong answer costs more than a new one.\n\n"
    "Examples:\n"
    "Earlier: Why is the sky blue? | New: Why does the sky look blue? -> Yes\n"
    "Earlier: What is the capital of Australia? | New: What is the capital of Austria? -> No\n"
    "Earlier: How can I lose weight fast? | New: How can I lose weight fast without dieting? -> No\n"
    "Earlier: Which books should everyone read once in life? | New: What are the best books to read in "
    "a lifetime? -> Yes\n"
    "Earlier: How do I reset my password? | New: How do I reset my colleague's password? -> No\n"
    "Earlier: What happened in 1998? | New: What happened in 1999? -> No\n"
    "Earlier: Why is coffee good for you? | New: Why is coffee bad for you? -> No\n"
    "Earlier: How do I learn Python quickly? | New: What is the fastest way to learn Python? -> Yes\n"
    "Earlier: What is the best phone under $300? | New: What is the best phone? -> No\n\n"
    "Reply with one word: Yes or No."
)
YES = ("Yes", "yes", "YES")
NO = ("No", "no", "NO")
# answers longer than this are cut: the questions decide most verdicts, and prompt cost is linear
MAX_ANSWER_CHARS = 1200


@dataclass(frozen=True)
class JudgePrompt:
    """The system text and the question asked of each candidate; its digest names the judge's scores."""

    system: str
    ask: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.system}\x00{self.ask}".encode()).hexdigest()[:8]

    def user(self, item: JudgeItem) -> str:
        parts = [f"Earlier question: {item.cached}", f"New question: {item.query}"]
        if item.answer:
            parts.append(f"Stored answer: {item.answer[:MAX_ANSWER_CHARS]}")
        parts.append(self.ask)
        return "\n".join(parts)


PROMPTS = {
    "v1": JudgePrompt(
        SYSTEM_V1, "Is the stored answer to the earlier question a correct answer to the new question?"
    ),
    "v2": JudgePrompt(SYSTEM_V2, "Would the stored answer fully and correctly answer the new question?"),
}
DEFAULT_PROMPT = "v1"


def user_prompt(item: JudgeItem, prompt: JudgePrompt = PROMPTS[DEFAULT_PROMPT]) -> str:
    return prompt.user(item)
