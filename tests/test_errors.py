"""Messages stay one short printable line (mnist_jax.errors)."""

import os

from mnist_jax.errors import finite, one_line, quoted


def test_one_line_escapes_what_a_terminal_would_break_on_and_cuts_the_middle():
    name = os.fsdecode(b"a\xffb\nc\x1b\td\xc3\xa9.png")  # as os.listdir gives a name that is not UTF-8
    assert one_line(name) == "a\\xffb\\nc\\x1b\\td\u00e9.png"
    one_line(name).encode("utf-8")  # strict: nothing a UTF-8 terminal refuses
    cut = one_line("x" * 10_000 + " fix this", limit=400)
    assert len(cut) <= 400 and cut.endswith("x fix this") and "(9,649 characters left out)" in cut
    assert one_line("short", limit=400) == "short"


def test_a_quoted_value_is_short_whatever_its_size():
    assert quoted("abc") == "'abc'"
    assert quoted("1" * 1_000_000) == "'" + "1" * 49 + "... (1,000,002 characters)"
    assert quoted(10**5000) == "an integer of thousands of digits"  # past what Python converts to text
    assert finite(1e308) and not finite(float("inf")) and not finite(10**400) and finite(10**300)
