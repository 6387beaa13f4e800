"""Render the command-line reference (``docs/cli.md``) from the argparse parser itself.

    python -m pygestor.clidoc > docs/cli.md

A test compares the file with this output, so the guide cannot drift from the parser.
"""

from __future__ import annotations

import argparse
import functools

from pygestor.cli import build_parser

INTRO = """# Command-line reference

Generated from the parser by `python -m pygestor.clidoc > docs/cli.md` (a test checks it is
current). Every command accepts the global options. Errors are one line on stderr, starting
with `pygestor: error:`; the exit code is 2 for bad usage or configuration and 1 for other
errors (`PYGESTOR_DEBUG=1` adds a traceback).

References name a dataset, a subset or a partition: `toy`, `toy/train`,
`wikimedia/wikipedia/20231101.en`, `toy/train/part-00000.parquet`.
"""


def _options(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            names = ", ".join(f"`{o}`" for o in action.option_strings)
            if action.metavar or (action.nargs != 0 and not isinstance(
                    action, (argparse._StoreTrueAction, argparse._VersionAction))):
                names += f" `{action.metavar or action.dest.upper()}`"
        else:
            names = f"`{action.metavar or action.dest}`" + (" (optional)"
                                                            if action.nargs == "?" else "")
        text = (action.help or "").replace("%(default)s", str(action.default))
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            text += f" (one of: {', '.join(map(str, action.choices))})"
        lines.append(f"| {names} | {text} |")
    return lines


def render() -> str:
    parser = build_parser()
    out = [INTRO, "## Global options", "", "| option | meaning |", "| --- | --- |",
           *_options(parser), ""]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in subparsers._choices_actions}
    for name, sub in subparsers.choices.items():
        sub.formatter_class = functools.partial(argparse.HelpFormatter, width=100)
        out += [f"## `pygestor {name}`", "", helps.get(name) or "", "", "```",
                sub.format_usage().replace("usage: ", "").strip(), "```", ""]
        rows = _options(sub)
        if rows:
            out += ["| argument | meaning |", "| --- | --- |", *rows, ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
