"""The CLI reference (docs/cli.md), written from the commands' own help: `python -m assay.reference`.

tests/test_docs.py fails when docs/cli.md is not what this prints (`make docs-cli` regenerates it).
"""

from __future__ import annotations

import click

from assay.cli import cli

HEADER = """# `assay` command reference

Generated from the commands' own `--help` by `make docs-cli` (`python -m assay.reference`); a test fails
when it is stale. Settings that have no flag are set in `assay.toml` or `ASSAY_*` variables
(docs/operations.md).
"""


def _help(command: click.Command, name: str, parent: click.Context) -> str:
    context = click.Context(command, info_name=name, parent=parent, terminal_width=100, max_content_width=100)
    return command.get_help(context)


def render() -> str:
    """The reference as Markdown: the group's help, then every command's, in the order `assay --help` lists them."""
    root = click.Context(cli, info_name="assay", terminal_width=100, max_content_width=100)
    parts = [HEADER, "## assay\n", "```text\n" + cli.get_help(root) + "\n```\n"]
    assert isinstance(cli, click.Group)
    for name in cli.list_commands(root):
        command = cli.get_command(root, name)
        assert command is not None
        parts += [f"## assay {name}\n", "```text\n" + _help(command, name, root) + "\n```\n"]
        if isinstance(command, click.Group):  # `assay config show`: each subcommand's own help too
            group = click.Context(command, info_name=name, parent=root, terminal_width=100, max_content_width=100)
            for sub_name in command.list_commands(group):
                sub = command.get_command(group, sub_name)
                assert sub is not None
                parts += [f"### assay {name} {sub_name}\n", "```text\n" + _help(sub, sub_name, group) + "\n```\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
