"""The README's set-up commands are the ones CI runs."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def test_ci_runs_the_readme_setup_commands_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up", 1)[1].split("## Quick start", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", setup)
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci
