"""Progress bar visibility and the scoped Ctrl-C handler of the sweep loop."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading

import pytest

from labnr.measure.progress import FinishPoint, progress_bar, show_progress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_only_on_a_terminal_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not show_progress(None) and show_progress(True)
    with progress_bar(3, "kind") as bar:
        assert bar.disable
    monkeypatch.setattr(sys, "stderr", FakeTTY())
    assert show_progress(None) and not show_progress(False)
    with progress_bar(3, "kind") as bar:
        assert not bar.disable
        bar.update()
    assert "kind" in sys.stderr.getvalue()


def test_first_ctrl_c_waits_for_the_block_second_one_does_not() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt):
        with FinishPoint():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("finished")  # the block ran to its end
    assert done == ["finished"]
    with pytest.raises(KeyboardInterrupt):
        with FinishPoint():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # raises here
            done.append("not reached")
    assert done == ["finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_outside_the_main_thread_the_handler_is_left_alone() -> None:
    seen = []

    def work() -> None:
        with FinishPoint():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == [signal.default_int_handler]
