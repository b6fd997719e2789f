"""Summaries of py-spy's collapsed stacks (`--format raw`, as `--py-spy` records them):
`python -m bench.profiles FILE [--top N] [--match TEXT]` prints the functions with
the largest share of samples, inclusive (on the stack) and exclusive (on top)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click


def read_stacks(path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks[tuple(frames.split(";"))] += int(count)
    return stacks


def _function(frame: str) -> str:
    # "name (path/to/file.py:123)": the line number varies per sample, the function does not.
    name, _, where = frame.partition(" (")
    location = where.rstrip(")").rpartition(":")[0]
    short = "/".join(Path(location).parts[-3:]) if location else ""
    return f"{name} ({short})" if short else name


def shares(stacks: Counter[tuple[str, ...]], match: str = "") -> tuple[Counter[str], Counter[str], int]:
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    total = 0
    for frames, count in stacks.items():
        names = [_function(frame) for frame in frames]
        if match and not any(match in name for name in names):
            continue
        total += count
        for name in set(names):
            inclusive[name] += count
        exclusive[names[-1]] += count
    return inclusive, exclusive, total


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--top", default=25, show_default=True)
@click.option("--match", default="", help="Only stacks with a frame containing this text.")
def main(path: Path, top: int, match: str) -> None:
    inclusive, exclusive, total = shares(read_stacks(path), match)
    if not total:
        raise click.ClickException("no samples")
    for title, counter in (("inclusive", inclusive), ("exclusive", exclusive)):
        click.echo(f"{title} ({total} samples)")
        for name, count in counter.most_common(top):
            click.echo(f"  {100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
