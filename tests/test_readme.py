"""The README stays true: its configuration reference is the schema's, its commands exist."""

from pathlib import Path

from engine import config
from engine.cli import build_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_holds_the_configuration_reference():
    assert config.reference_markdown() in README, (
        "README.md's configuration reference differs from the schema: paste "
        "`python -c 'from engine import config; print(config.reference_markdown())'` into it")


def test_readme_shows_the_two_commands_and_every_subcommand():
    assert "make demo" in README and "make test" in README
    subcommands = build_parser()._subparsers._group_actions[0].choices
    for name in subcommands:
        assert f"laida {name}" in README, f"README.md does not document `laida {name}`"


def test_readme_filter_example_runs(capsys):
    section = README.split("## The filter on your own ensemble", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.split()[:2] == ["(20,", "40)"]
