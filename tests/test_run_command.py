"""The one command-line error wrapper (engine.errors.run_command) every command uses."""
import pytest

from engine.errors import InspectError, run_command
from engine.train import TrainingCancelled


def test_exit_status_of_the_command_itself():
    assert run_command(lambda argv: 3, []) == 3
    assert run_command(lambda argv: None, []) == 0


def test_user_error_is_one_line_and_status_2(capsys):
    def fails(argv):
        raise InspectError("The folder x has no images.")
    assert run_command(fails, []) == 2
    assert capsys.readouterr().err == "error: The folder x has no images.\n"


def test_stopped_training_is_status_130(capsys):
    def stopped(argv):
        raise TrainingCancelled("interrupted")
    assert run_command(stopped, []) == 130
    assert capsys.readouterr().err.startswith("stopped: interrupted; run the same command again")


def test_a_bug_is_not_swallowed():
    def bug(argv):
        raise ZeroDivisionError("bug")
    with pytest.raises(ZeroDivisionError):
        run_command(bug, [])
