"""The README tells the truth: every command is documented, every YAML example loads, CI runs its test line."""

from __future__ import annotations

import re
from pathlib import Path

import click
import click.testing
import pytest

from monitor.cli import cli
from monitor.config import load_config
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in sorted(group.commands.items()):
        names.append(f"{prefix}{name}")
        if isinstance(command, click.Group):
            names.extend(_commands(command, f"{prefix}{name} "))
    return names


@pytest.mark.parametrize("command", _commands(cli))
def test_every_command_is_in_the_readme_and_has_help(command: str) -> None:
    assert f"`diplowatch {command}" in README, f"README does not document `diplowatch {command}`"
    result = click.testing.CliRunner().invoke(cli, [*command.split(), "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


@pytest.mark.parametrize("block", re.findall(r"```yaml\n(.*?)```", README, re.S))
def test_yaml_examples_in_the_readme_load(block: str, tmp_path: Path) -> None:
    text = block if re.search(r"^sources:", block, re.M) else "sources: []\n" + block
    path = tmp_path / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    load_config(path)


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S).group(1).splitlines()
    install_and_run, test_line = (line.split("#")[0].strip() for line in first_block[:2])
    assert install_and_run.startswith("pip install .") and "diplowatch run" in install_and_run
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert test_line in ci, f"{test_line!r} is not what .ci/run runs"
    assert '"$rc" -eq 5' in ci  # pytest's "no tests ran" is a failure
