"""prefetched(): order, look-ahead bound, errors at their item, early close stops the thread."""

from __future__ import annotations

import threading
import time

import pytest

from secure_trainer.data.prefetch import prefetched
from secure_trainer.errors import DataRejected


@pytest.mark.parametrize("depth", [0, 1, 2, 5])
def test_results_come_in_item_order(depth: int) -> None:
    items = list(range(20))
    assert list(prefetched(items, lambda i: i * i, depth)) == [(i, i * i) for i in items]


def test_loads_run_ahead_in_another_thread_but_stay_bounded() -> None:
    started: list[int] = []
    threads: set[int] = set()

    def load(i: int) -> int:
        started.append(i)
        threads.add(threading.get_ident())
        return i

    stream = prefetched(list(range(50)), load, 2)
    assert next(stream) == (0, 0)
    time.sleep(0.3)  # let the worker fill its queue
    # Item 0 was consumed; at most `depth` results wait in the queue plus one being loaded.
    assert 3 <= len(started) <= 4
    assert threading.get_ident() not in threads
    stream.close()


def test_an_error_surfaces_at_its_item_after_the_earlier_ones() -> None:
    def load(i: int) -> int:
        if i == 3:
            raise DataRejected("image #3 could not be decoded")
        return i

    got: list[int] = []
    with pytest.raises(DataRejected, match="#3"):
        for _item, value in prefetched(list(range(10)), load, 2):
            got.append(value)
    assert got == [0, 1, 2]


def test_closing_early_stops_the_worker() -> None:
    before = {t.ident for t in threading.enumerate()}
    stream = prefetched(list(range(1000)), lambda i: i, 2)
    for item, _value in stream:
        if item == 2:
            break
    stream.close()
    left = [t for t in threading.enumerate() if t.ident not in before and t.name == "prefetch"]
    assert not left
