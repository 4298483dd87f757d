"""The help of ``minireptile sweep``: its own flags with their defaults, and a command's flags after them."""

from __future__ import annotations

import textwrap


def flags_help(parser, owned) -> str:
    """The flags of ``parser`` (the sweep's own) as a help section, and which run flags the sweep sets."""
    formatter = parser._get_formatter()
    formatter.start_section("sweep flags (after COMMAND, mixed with the command's flags)")
    formatter.add_arguments(parser._actions)
    formatter.end_section()
    per_run = [flag for flag in owned if flag not in ("--workers", "--scheduler")]
    note = textwrap.fill(f"The sweep sets {', '.join(per_run[:-1])} and {per_run[-1]} of each run: leave them "
                         "out (--workers and --scheduler are the sweep's own).", 78)
    return f"{formatter.format_help()}\n{note}\n"


def command_help(command: str, module, sweep_help: str) -> str:
    """``minireptile sweep COMMAND --help``: usage, the sweep's flags, then the flags of COMMAND's runs."""
    from .common import Parser

    root = Parser(prog="minireptile")
    sub = root.add_subparsers(dest="command", parser_class=Parser)
    module.add_parser(sub)
    return (f"usage: minireptile sweep {command} [sweep flags] [{command} flags]\n\n"
            f"Run `minireptile {command}` once per seed and grid point (see `minireptile sweep --help`).\n\n"
            f"{sweep_help}\nflags of each run (minireptile {command}):\n\n{sub.choices[command].format_help()}")
