"""The progress bar appears on stderr only for scans that run longer than the delay."""

from __future__ import annotations

import io

from rich.console import Console

from deadrelu.cli.common import DelayedProgress


def _progress(delay: float) -> tuple[DelayedProgress, io.StringIO]:
    p = DelayedProgress(delay=delay)
    buffer = io.StringIO()
    p.console = Console(file=buffer, force_terminal=True, width=100)
    p.enabled = True
    return p, buffer


def test_bar_appears_after_the_delay_with_rate_and_count() -> None:
    p, buffer = _progress(delay=0.0)
    p.on_start(96)
    for _ in range(3):
        p.on_batch(32)
    p.close()
    text = buffer.getvalue()
    assert "scanning" in text and "96/96" in text and "samples/s" in text


def test_short_scans_print_nothing() -> None:
    p, buffer = _progress(delay=60.0)
    p.on_start(96)
    p.on_batch(96)
    p.close()
    assert buffer.getvalue() == ""


def test_no_bar_when_stderr_is_not_a_terminal(capsys) -> None:
    p = DelayedProgress(delay=0.0)  # pytest captures stderr: not a terminal
    p.on_start(10)
    p.on_batch(10)
    p.close()
    assert not p.enabled and p._progress is None
    assert capsys.readouterr().err == ""
