"""Progress bars appear on a terminal only."""

import io

import pytest

from bids_synth import progress as progress_module
from bids_synth.progress import progress


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def use_stderr(monkeypatch, stream):
    """Replace stderr; called in the test body, as pytest's capture resets it after fixtures."""
    monkeypatch.setattr(progress_module.sys, "stderr", stream)
    return stream


@pytest.fixture(autouse=True)
def no_environment_override(monkeypatch):
    monkeypatch.delenv(progress_module.NO_PROGRESS_ENV, raising=False)


def test_bar_is_drawn_on_a_terminal(monkeypatch):
    terminal = use_stderr(monkeypatch, FakeTerminal())
    assert list(progress(range(3), desc="epochs")) == [0, 1, 2]
    assert "epochs" in terminal.getvalue()


def test_quiet_when_stderr_is_not_a_terminal(monkeypatch):
    stream = use_stderr(monkeypatch, io.StringIO())
    bar = progress(iter("abc"), total=3, desc="subjects")
    bar.set_postfix(loss=0.5)
    assert list(bar) == ["a", "b", "c"]
    assert stream.getvalue() == ""


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_environment_variable_silences_the_bar(monkeypatch, value):
    terminal = use_stderr(monkeypatch, FakeTerminal())
    monkeypatch.setenv(progress_module.NO_PROGRESS_ENV, value)
    assert list(progress(range(2), desc="epochs")) == [0, 1]
    assert terminal.getvalue() == ""
