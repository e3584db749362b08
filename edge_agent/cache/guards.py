"""Hard guards and pair features for semantic matches.

Embeddings place "enable 2FA" next to "disable 2FA" and "2+2" next to "2+3"; a cached answer for
one is wrong for the other. The guards veto any pair whose numbers, negations, operators or named
entities differ, whatever the similarity; the features feed the learned verifier.

Two vetoes come from the near-misses that top the verifier's ranking on the QQP training split:
a named entity on one side only ("distance MBA in India" / "distance MBA in IT in India", "New
York" / "New York City") narrows the question, and two shared names in a different order swap its
roles ("import from Canada and sell in India" / "import from India and sell in Canada").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_'.+#-]*[A-Za-z0-9+#]|[A-Za-z]|\d+(?:[.,]\d+)*")
_NUMBER = re.compile(r"(?<![A-Za-z])[-+]?\d+(?:[.,]\d+)*")
_OPERATOR = re.compile(r"(?<=[\s\d)])([-+*/^%=<>]|\*\*|<=|>=|!=)(?=[\s\d(])")
_NEGATIONS = frozenset(
    [
        "not",
        "no",
        "never",
        "none",
        "nothing",
        "nobody",
        "nowhere",
        "neither",
        "nor",
        "without",
        "cannot",
        "cant",
        "dont",
        "doesnt",
        "didnt",
        "isnt",
        "arent",
        "wasnt",
        "werent",
        "wont",
        "wouldnt",
        "shouldnt",
        "couldnt",
        "hasnt",
        "havent",
        "hadnt",
    ]
)
# Pairs of opposites; a word from one side that the other text swaps for its antonym flips the answer.
_ANTONYMS = (
    ("enable", "disable"),
    ("enabled", "disabled"),
    ("allow", "deny"),
    ("allow", "block"),
    ("add", "remove"),
    ("increase", "decrease"),
    ("before", "after"),
    ("max", "min"),
    ("maximum", "minimum"),
    ("true", "false"),
    ("on", "off"),
    ("import", "export"),
    ("encrypt", "decrypt"),
    ("start", "stop"),
    ("open", "close"),
    ("install", "uninstall"),
    ("buy", "sell"),
    ("lock", "unlock"),
    ("up", "down"),
    ("upload", "download"),
    ("push", "pull"),
    ("win", "lose"),
    ("more", "less"),
    ("best", "worst"),
    ("good", "bad"),
    ("pros", "cons"),
    ("advantages", "disadvantages"),
    ("legal", "illegal"),
    ("first", "last"),
    ("positive", "negative"),
    ("higher", "lower"),
    ("above", "below"),
    ("male", "female"),
    ("encode", "decode"),
    ("compress", "decompress"),
    ("ascending", "descending"),
    ("give", "receive"),
    ("given", "received"),
    ("gave", "received"),
    ("send", "receive"),
    ("sent", "received"),
    ("teach", "learn"),
    ("lend", "borrow"),
    ("left", "right"),
    ("input", "output"),
    ("inside", "outside"),
    ("include", "exclude"),
    ("for", "against"),
)
_OPPOSITE: dict[str, str] = {}
for _a, _b in _ANTONYMS:
    _OPPOSITE[_a] = _b
    _OPPOSITE[_b] = _a
_WH = frozenset(["what", "why", "how", "when", "where", "who", "whom", "whose", "which"])
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "from",
        "by",
        "with",
        "and",
        "or",
        "as",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "i",
        "you",
        "he",
        "she",
        "we",
        "they",
        "me",
        "him",
        "her",
        "us",
        "them",
        "can",
        "could",
        "should",
        "would",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "what",
        "why",
        "how",
        "when",
        "where",
        "who",
        "which",
        "there",
        "here",
        "about",
        "into",
        "than",
        "then",
        "so",
        "if",
        "some",
        "any",
    ]
)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _words(text: str) -> list[str]:
    return [t.lower().replace("'", "") for t in tokens(text)]


def numbers(text: str) -> list[str]:
    out = []
    for raw in _NUMBER.findall(text):
        cleaned = raw.replace(",", "")
        try:
            out.append(repr(float(cleaned)))
        except ValueError:
            out.append(cleaned)
    return sorted(out)


def operators(text: str) -> list[str]:
    return sorted(_OPERATOR.findall(f" {text} "))


def negation_count(words: list[str]) -> int:
    return sum(1 for w in words if w in _NEGATIONS or (w.endswith("nt") and w[:-2] in _NEG_STEMS))


_NEG_STEMS = frozenset(
    [
        "do",
        "does",
        "did",
        "is",
        "are",
        "was",
        "were",
        "wo",
        "would",
        "should",
        "could",
        "has",
        "have",
        "had",
        "ca",
    ]
)


def entities(text: str) -> set[str]:
    """Capitalised words not at a sentence start, acronyms and quoted spans, lower-cased."""
    out: set[str] = set()
    for sentence in re.split(r"(?<=[.?!:;])\s+|\n+", text):
        toks = tokens(sentence)
        for i, tok in enumerate(toks):
            if not tok[:1].isalpha():
                continue
            if (
                (tok.isupper() and len(tok) >= 2)
                or any(c.isupper() for c in tok[1:])
                or (i > 0 and tok[0].isupper() and tok.lower() not in STOPWORDS)
            ):
                out.add(tok.lower())
    for quoted in re.findall(r"[\"`“]([^\"`”]{1,60})[\"`”]", text):
        out.add(quoted.strip().lower())
    return out


def _entity_missing(ents: set[str], other_words: set[str], other_text: str) -> int:
    # whole words only: a substring test finds "IT" inside "university" and "Go" inside "good"
    spaced = f" {' '.join(_words(other_text))} "
    return sum(1 for e in ents if e not in other_words and f" {' '.join(_words(e))} " not in spaced)


# "this video", "this JEE advanced question": the answer depends on something the text does not
# hold, so two such questions are never the same question, whatever their words (a colon or a new
# line after the phrase means the thing follows inline, and the words can be compared)
_DEICTIC = re.compile(
    r"\b(?:this|these|the following|attached|above)\s+(?:[\w-]+\s+){0,2}?"
    r"(?:questions?|problems?|pictures?|images?|photos?|pics?|videos?|songs?|codes?|equations?|"
    r"sentences?|paragraphs?|passages?|poems?|graphs?|diagrams?|screenshots?|puzzles?|riddles?|"
    r"links?|websites?|sites?|pages?|articles?|files?|errors?|texts?|clips?|gifs?|memes?|quotes?)\b"
    r"(?![^\n]*[:\n])",
    re.IGNORECASE,
)


# a demonstrative in a standalone question ("this logo", "is this normal?") points outside it too
_DEMONSTRATIVE = re.compile(r"\b(?:this|these)\b(?![^\n]*[:\n])|\b(?:that|those)\s*[?.!]*\s*$", re.IGNORECASE)


def deictic(text: str) -> bool:
    """Whether ``text`` points at content it does not contain ("the song in this video", "fix this?")."""
    return _DEICTIC.search(text) is not None or _DEMONSTRATIVE.search(text) is not None


_DIRECTION = frozenset(["to", "into", "from", "than", "vs", "versus", "over", "onto", "toward", "towards"])


def direction_swapped(a: list[str], b: list[str], shared: set[str]) -> bool:
    """Shared words that trade sides of the same "to"/"than"/"into" ("convert X to Y" / "Y to X")."""
    for d in _DIRECTION & set(a) & set(b):
        for ia in (i for i, w in enumerate(a) if w == d):
            before_a, after_a = set(a[:ia]) & shared, set(a[ia + 1 :]) & shared
            for ib in (i for i, w in enumerate(b) if w == d):
                if (before_a & set(b[ib + 1 :])) and (after_a & set(b[:ib])):
                    return True
    return False


def antonym_clash(wa: set[str], wb: set[str]) -> bool:
    """One text uses a word whose opposite only the other text uses."""
    for w in wa ^ wb:
        opp = _OPPOSITE.get(w)
        if opp is not None and ((w in wa and opp in wb and opp not in wa) or (w in wb and opp in wa)):
            return True
    return False


@dataclass(frozen=True)
class PairCheck:
    """Why a pair was vetoed (empty when it passed) and the verifier's lexical features."""

    veto: str
    features: dict[str, float]


def check_pair(a: str, b: str) -> PairCheck:
    wa_list, wb_list = _words(a), _words(b)
    wa, wb = set(wa_list), set(wb_list)
    ca, cb = wa - STOPWORDS, wb - STOPWORDS
    ea, eb = entities(a), entities(b)
    miss_a, miss_b = _entity_missing(ea, wb, b), _entity_missing(eb, wa, a)
    ent_missing = miss_a + miss_b
    na, nb = numbers(a), numbers(b)
    # a number or name on one side only is a detail the verifier weighs; a different one on each
    # side is a different question ("2+2" / "2+3", "France" / "Germany")
    num_diff = bool(na) and bool(nb) and na != nb
    num_one_sided = bool(na) != bool(nb)
    op_diff = operators(a) != operators(b)
    neg_diff = (negation_count(wa_list) % 2) != (negation_count(wb_list) % 2)
    clash = antonym_clash(wa, wb)
    wh_diff = (wa & _WH) != (wb & _WH)
    veto = ""
    if deictic(a) or deictic(b):
        veto = "deictic"
    elif num_diff:
        veto = "numbers_differ"
    elif op_diff:
        veto = "operators_differ"
    elif neg_diff:
        veto = "negation_differs"
    elif clash:
        veto = "antonym"
    elif miss_a and miss_b:
        veto = "entities_differ"
    elif miss_a or miss_b:
        veto = "entity_one_sided"
    elif direction_swapped(wa_list, wb_list, ca & cb):
        veto = "direction_swapped"
    order = _order_agreement([w for w in wa_list if w in ca & cb], [w for w in wb_list if w in ca & cb])
    both = ea & eb
    # modifiers move freely ("list in Python" / "Python list"); two names that swap places do not
    names_a, names_b = [w for w in wa_list if w in both], [w for w in wb_list if w in both]
    if not veto and _order_agreement(names_a, names_b) < 1.0:
        veto = "entity_order_differs"
    la, lb = max(len(wa_list), 1), max(len(wb_list), 1)
    features = {
        "jaccard": len(wa & wb) / max(len(wa | wb), 1),
        "content_jaccard": len(ca & cb) / max(len(ca | cb), 1),
        "content_only_a": len(ca - cb) / max(len(ca), 1),
        "content_only_b": len(cb - ca) / max(len(cb), 1),
        "char3": _char_jaccard(a, b),
        "len_ratio": min(la, lb) / max(la, lb),
        "wh_diff": float(wh_diff),
        "entity_missing": float(min(ent_missing, 3)),
        "entities_shared": float(min(len(ea & eb), 3)),
        "number_one_sided": float(num_one_sided),
        "order": order,
    }
    return PairCheck(veto, features)


def _order_agreement(a: list[str], b: list[str]) -> float:
    """Share of shared content words in the same relative order ("boys about girls" vs "girls about boys")."""
    if len(a) < 2 or len(b) < 2:
        return 1.0
    pos = {w: i for i, w in enumerate(b)}
    pairs = agree = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            if a[i] != a[j]:
                pairs += 1
                agree += pos[a[i]] < pos[a[j]]
    return agree / pairs if pairs else 1.0


def _char_jaccard(a: str, b: str) -> float:
    ga = {a.lower()[i : i + 3] for i in range(max(len(a) - 2, 0))}
    gb = {b.lower()[i : i + 3] for i in range(max(len(b) - 2, 0))}
    return len(ga & gb) / max(len(ga | gb), 1)
