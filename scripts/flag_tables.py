"""Write the flag tables of docs/command-line.md anew from the fields of mnist_jax/config.py.

    python scripts/flag_tables.py            # after adding or changing a setting; prints what it did

tests/test_cli.py checks that the page holds the tables this writes.
"""

from pathlib import Path

from mnist_jax import config as cfg
from mnist_jax.cli.flags import metavar

PAGE = Path(__file__).resolve().parent.parent / "docs" / "command-line.md"
TABLE_MARKS = ("<!-- flag table of {} (python scripts/flag_tables.py writes it) -->", "<!-- end of the flag table -->")


def flag_table(cls: type) -> str:
    """The flags of a config class as a Markdown table, as docs/command-line.md shows them."""
    rows = ["| flag | default | meaning |", "| --- | --- | --- |"]
    for f in cfg.fields(cls):
        value = "" if f.kind is bool else f" {{{','.join(f.choices)}}}" if f.choices else f" {metavar(f)}"
        flags = ", ".join(f"`{flag}{value}`" for flag in (f.flag, *f.aliases))
        rows.append(f"| {flags} | {f.shown_default()} | {f.help} |")
    return "\n".join(rows)


def with_flag_tables(markdown: str) -> str:
    """`markdown` with each marked flag table (see TABLE_MARKS) written anew from the config."""
    for cls in (cfg.TrainConfig, cfg.RunOptions):
        begin, end = TABLE_MARKS[0].format(cls.__name__), TABLE_MARKS[1]
        if begin not in markdown:
            raise ValueError(f"no {begin!r} in the page")
        head, rest = markdown.split(begin, 1)
        markdown = f"{head}{begin}\n{flag_table(cls)}\n{end}{rest.split(end, 1)[1]}"
    return markdown


if __name__ == "__main__":
    before = PAGE.read_text()
    after = with_flag_tables(before)
    PAGE.write_text(after)
    print(f"{PAGE}: {'flag tables rewritten' if after != before else 'flag tables already up to date'}")
