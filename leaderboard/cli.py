"""``xrobust leaderboard``: plugged into the CLI through the ``xrobust.commands`` entry-point group."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.cli import command


def _args(p) -> None:
    p.add_argument("--results", default="results", help="results root (default: results/)")
    p.add_argument("--user", default=None, metavar="DIR",
                   help="also show your own results from DIR (e.g. runs/results), marked '(yours)'; "
                        "the site and Markdown then go next to DIR")
    p.add_argument("--out", default=None, help="site folder (default: site/ next to the results folder)")
    p.add_argument("--markdown", default=None, help="Markdown leaderboard path (default: <results>/LEADERBOARD.md)")
    p.add_argument("--quiet", action="store_true", help="only print problems")


def cmd_leaderboard(args) -> int:
    """Build from ``args.results`` into ``args.out`` (None = default). Exit 2 when a file had to be left out."""
    from leaderboard.build import build

    user = getattr(args, "user", None)
    built = build(args.results, args.out, getattr(args, "markdown", None), user)
    for line in built.collection.problems:  # a user folder's lines already start with its path
        mine = user is not None and line.startswith(f"{Path(user).as_posix()}/")
        print(line if mine else f"{args.results}/{line}", file=sys.stderr)
    if not args.quiet:
        print(f"{len(built.collection.frame)} results -> {built.site / 'index.html'} "
              f"({len(built.pages)} pages, {len(built.images)} plots), {built.markdown}, {built.csv}",
              file=sys.stderr)
    return 2 if built.collection.problems else 0


cmd_leaderboard.add_arguments = _args  # before registering: command() reads it
command("leaderboard", "build the leaderboard (Markdown, CSV, static site with plots) from results/")(cmd_leaderboard)


def _args_docs(p) -> None:
    p.add_argument("--results", default="results", help="results root (default: results/)")
    p.add_argument("--root", default=".", help="project root holding README.md and docs/ (default: .)")


def cmd_docs(args) -> int:
    """Regenerate the marked result tables of README.md and docs/*.md from ``args.results``."""
    from leaderboard.docs import update

    for path in update(args.results, args.root):
        print(f"updated {path}", file=sys.stderr)
    return 0


cmd_docs.add_arguments = _args_docs
command("docs", "regenerate the result tables marked in README.md and docs/*.md from results/")(cmd_docs)
