"""The event subscription matcher: the answers of ``re.search`` on its subset, bounded work on any pattern."""

from __future__ import annotations

import random
import re

import pytest

from alchemy_gym.server.eventfilter import ALLOWED, MAX_GROUP_DEPTH, MAX_PATTERN_LENGTH, FilterError, compile_filter
from alchemy_gym.server.service import EVENT_NAMES

#: What clients send (dm_alchemy and our envs: ``DeepMind/.*``), and other patterns a user may write.
CLIENT_PATTERNS = [
    "DeepMind/.*",
    ".*",
    "",
    "DeepMind/Alchemy/.*",
    "^DeepMind/Trial/",
    "Trial",
    "Used$",
    "^DeepMind/Alchemy/(PotionUsed|StoneUsed)$",
    "(?:Potion|Stone)Created",
    "[A-Z][a-z]+Used",
    "[^/]*Ended$",
    "\\w+/\\w+/Stone\\w*",
    "DeepMind\\/Alchemy\\/ChemistryCreated",
    "Chemistry|Cauldron",
    "nothing matches this",
    "|".join(EVENT_NAMES),
    "^(" + "|".join(EVENT_NAMES) + ")$",
]


@pytest.mark.parametrize("pattern", CLIENT_PATTERNS)
def test_client_patterns_select_what_re_selects(pattern):
    expected = frozenset(name for name in EVENT_NAMES if re.search(pattern, name))
    assert compile_filter(pattern).select(EVENT_NAMES) == expected


def test_deepmind_prefix_selects_every_event():
    assert compile_filter("DeepMind/.*").select(EVENT_NAMES) == frozenset(EVENT_NAMES)
    assert compile_filter("Trial").select(EVENT_NAMES) == {"DeepMind/Trial/TrialStarted", "DeepMind/Trial/TrialEnded"}


_QUANTIFIERS = ["*", "+", "?", "*?", "+?", "??"]


def _random_pattern(rng: random.Random, depth: int = 0) -> str:
    """A pattern of the accepted subset (grammar of eventfilter's docstring).

    A group is repeated only if nothing inside it is: ``re`` itself would backtrack for minutes on
    nested repeats (that is what the matcher is for), and ``re`` is the reference here.
    """
    atoms = ["a", "D", "e", "/", "T", "Z", ".", "\\.", "\\/", "\\w", "\\d", "\\S", "[a-e]", "[^/]", "[A-Z/]", "[]a]"]
    parts = []
    for _ in range(rng.randint(0, 4)):
        roll = rng.random()
        if roll < 0.15 and depth < 3:
            inner = "|".join(_random_pattern(rng, depth + 1) for _ in range(rng.randint(1, 3)))
            atom = ("(?:" if rng.random() < 0.5 else "(") + inner + ")"
            repeatable = not any(q in inner for q in "*+?")
        elif roll < 0.22:
            parts.append(rng.choice("^$"))
            continue
        else:
            atom, repeatable = rng.choice(atoms), True
        if repeatable and rng.random() < 0.4:
            atom += rng.choice(_QUANTIFIERS)
        parts.append(atom)
    return "".join(parts)


def test_random_patterns_of_the_subset_agree_with_re():
    rng = random.Random(1234)
    alphabet = "aDeZT/.\n9_"
    texts = (
        list(EVENT_NAMES)
        + ["", "\n", "a\n", "ZZ"]
        + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(30)]
    )
    checked = 0
    for _ in range(1500):
        pattern = _random_pattern(rng)
        compiled = compile_filter(pattern)  # everything the generator makes is accepted
        expected_re = re.compile(pattern)
        for text in texts:
            assert compiled.search(text) == (expected_re.search(text) is not None), (pattern, text)
            checked += 1
        assert compiled.select(texts) == {t for t in texts if expected_re.search(t)}, pattern
    assert checked == 1500 * len(texts)


#: Patterns that make ``re`` backtrack for seconds to minutes on a non-matching text; accepted here.
CATASTROPHIC = ["(.*.*)*Z", "(a|a)*Z", "(.|.)*Z", "(x+x+)+y", "((.*)*)*Q", "(.*)*" * 40 + "Q", "(?:.?)*" * 30 + "Q"]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_patterns_are_matched_in_bounded_steps(pattern):
    compiled = compile_filter(pattern)
    assert compiled.num_states <= len(pattern) + 1
    texts = list(EVENT_NAMES) + ["D" * 200]
    assert compiled.select(texts) == frozenset()
    # each position of each text visits every state at most twice (closure, then the step over a character)
    bound = 2 * compiled.num_states * sum(len(t) + 1 for t in texts)
    assert 0 < compiled.steps <= bound


def test_select_shares_the_work_of_common_prefixes():
    pattern = "(.*)*" * 40 + "Q"
    shared, separate = compile_filter(pattern), compile_filter(pattern)
    assert shared.select(EVENT_NAMES) == frozenset()
    for name in EVENT_NAMES:
        assert not separate.search(name)
    assert shared.steps < separate.steps


@pytest.mark.parametrize(
    "pattern, fragment",
    [
        ("^(.|.){0,25}Z", "counted repetition"),
        ("a{2}", "counted repetition"),
        ("(" * 1000, f"at most {MAX_PATTERN_LENGTH}"),
        ("x" * (MAX_PATTERN_LENGTH + 1), f"at most {MAX_PATTERN_LENGTH}"),
        ("(" * (MAX_GROUP_DEPTH + 1) + ")" * (MAX_GROUP_DEPTH + 1), f"more than {MAX_GROUP_DEPTH} deep"),
        ("(" * 20, f"more than {MAX_GROUP_DEPTH} deep"),
        ("(?=a)", "group extensions"),
        ("(?i)deepmind", "group extensions"),
        ("(?P<x>a)", "group extensions"),
        ("(a)\\1", "escape \\1"),
        ("\\bTrial", "escape \\b"),
        ("a*+", "multiple or possessive repeat"),
        ("a**", "multiple or possessive repeat"),
        ("*a", "nothing to repeat"),
        ("^*", "nothing to repeat"),
        ("[[:alpha:]]", "nested character classes"),
        ("[a--]", "set operations"),
        ("[z-a]", "bad character range"),
        ("[\\w-z]", "bad character range"),
        ("[abc", "unterminated character class"),
        ("(abc", "missing ')'"),
        ("abc)", "unbalanced parenthesis"),
        ("abc\\", "bad escape"),
    ],
)
def test_patterns_outside_the_subset_are_refused_naming_what_is_allowed(pattern, fragment):
    with pytest.raises(FilterError) as info:
        compile_filter(pattern)
    message = str(info.value)
    assert fragment in message
    assert len(message) < 600  # short, whatever the pattern
    if "characters: at most" not in message:
        assert message.endswith(ALLOWED)


def test_nested_groups_up_to_the_limit_are_accepted():
    depth = MAX_GROUP_DEPTH
    compiled = compile_filter("(" * depth + "Trial" + ")" * depth)
    assert compiled.select(EVENT_NAMES) == {"DeepMind/Trial/TrialStarted", "DeepMind/Trial/TrialEnded"}


def test_a_non_string_pattern_is_refused():
    with pytest.raises(FilterError, match="must be a string"):
        compile_filter(b"DeepMind/.*")
