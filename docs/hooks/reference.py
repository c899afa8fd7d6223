"""MkDocs hook: the reference pages, generated at build time from the code, so they cannot drift from it.

A page holding ``<!-- generated: hookspecs -->`` gets every hook of ``modelhost.hookspecs`` (its signature and
docstring, in the contract's order); one holding ``<!-- generated: cli -->`` gets ``modelhost``'s ``--help`` and each
command's, from the parser ``modelhost`` itself runs. Docstrings are reStructuredText: the markup they use is double
backticks and Sphinx's roles (``:class:`modelhost.Response```), both made Markdown's code here. mkdocs.yml names this
file under ``hooks:``.
"""

import argparse
import inspect
import os
import re

HOOKSPECS = "<!-- generated: hookspecs -->"
CLI = "<!-- generated: cli -->"
HELP_WIDTH = "100"  # argparse wraps to $COLUMNS: a fixed width, so the page is the same on every machine


def markdown_of_docstring(docstring: str) -> str:
    text = re.sub(r"``(.+?)``", r"`\1`", inspect.cleandoc(docstring), flags=re.S)
    return re.sub(r":[a-z]+:`([^`]+)`", r"`\1`", text)  # :class:`X` -> `X`


def hookspecs_reference() -> str:
    from modelhost import hookspecs
    from modelhost.plugins import HOOK_NAMES

    parts = [markdown_of_docstring(hookspecs.__doc__)]
    for name in HOOK_NAMES:
        spec = getattr(hookspecs, name)
        if not spec.__doc__:
            raise ValueError(f"hookspec {name!r} has no docstring: the reference would be empty for it")
        options = getattr(spec, "modelhost_spec", {}) or {}
        first = "\n\nThe first answer that is not None wins (pluggy's `firstresult`)." if options.get("firstresult") \
            else ""
        signature = f"def {name}{inspect.signature(spec)}"
        parts.append(f"## `{name}`\n\n```text\n{signature}\n```\n\n{markdown_of_docstring(spec.__doc__)}{first}")
    return "\n\n".join(parts)


def command_line_reference() -> str:
    from modelhost.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        parser = build_parser()
        parts = [f"## `modelhost`\n\n```text\n{parser.format_help()}```"]
        [commands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
        for name, command in commands.choices.items():
            parts.append(f"## `modelhost {name}`\n\n```text\n{command.format_help()}```")
        return "\n\n".join(parts)
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def on_page_markdown(markdown, page, config, files):
    if HOOKSPECS in markdown:
        markdown = markdown.replace(HOOKSPECS, hookspecs_reference())
    if CLI in markdown:
        markdown = markdown.replace(CLI, command_line_reference())
    return markdown
