"""`deferred_signals`: a SIGTERM inside the section is held, then re-delivered once it ends."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from entrypoint.errors import Interrupted
from entrypoint.run.signals import deferred_signals


@pytest.fixture()
def raising_handler() -> Iterator[None]:
    """The CLI's behaviour: SIGTERM raises Interrupted."""

    def _raise(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_signal_is_held_until_the_section_ends(raising_handler: None) -> None:
    steps = []
    with pytest.raises(Interrupted) as err, deferred_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        steps.append("after kill")  # still running: the signal is only noted
        with deferred_signals():  # nested sections defer into the outer one
            steps.append("inner")
        steps.append("end")
    assert steps == ["after kill", "inner", "end"]
    assert err.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is not None
    with pytest.raises(Interrupted):  # the original handler is back in place
        os.kill(os.getpid(), signal.SIGTERM)


def test_no_signal_no_effect(raising_handler: None) -> None:
    with deferred_signals():
        value = 1
    assert value == 1
