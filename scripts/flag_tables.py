"""Write the flag tables of docs/command-line.md anew from the fields of mnist_jax/config.py.

    python scripts/flag_tables.py            # after adding or changing a setting; prints what it did

tests/test_cli.py checks that the page holds the tables this writes.
"""

from pathlib import Path

from mnist_jax import cli

PAGE = Path(__file__).resolve().parent.parent / "docs" / "command-line.md"

if __name__ == "__main__":
    before = PAGE.read_text()
    after = cli.with_flag_tables(before)
    PAGE.write_text(after)
    print(f"{PAGE}: {'flag tables rewritten' if after != before else 'flag tables already up to date'}")
