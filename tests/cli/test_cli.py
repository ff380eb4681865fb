from click.testing import CliRunner

from vse import __version__
from vse.cli.main import main


def test_help_lists_the_tool():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Explain single neurons" in result.output


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"vse, version {__version__}"


def test_unknown_command_fails():
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code != 0


def test_reproduce_unknown_experiment_names_the_known_ones():
    result = CliRunner().invoke(main, ["reproduce", "--experiment", "nope"])
    assert result.exit_code == 2  # a usage error: one line on stderr, no traceback (see test_cli_errors.py)
    assert "unknown experiment 'nope'" in result.output
    assert "power-study" in result.output
