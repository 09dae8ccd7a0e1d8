"""bans.bulk.batches: on SQLite, statements come in a few lengths only, whatever a read brings."""

from __future__ import annotations

import pytest

from bans.bulk import ROWS_PER_STATEMENT, batches


@pytest.mark.parametrize("count", [0, 1, 2, 3, 5, 100, 511, 512, 513, 700, 1023, 1024, 5000])
def test_batches_cover_every_item_once_in_order(count: int) -> None:
    items = list(range(count))
    for few_lengths in (True, False):
        assert [item for batch in batches(items, few_lengths=few_lengths) for item in batch] == items


def test_batches_come_in_at_most_ten_lengths_for_every_count_up_to_the_limit_and_beyond() -> None:
    lengths = {len(batch) for count in range(1, 3 * ROWS_PER_STATEMENT)
               for batch in batches(list(range(count)), few_lengths=True)}
    assert lengths == {1 << bit for bit in range(10)}  # 1, 2, 4, ... 512: one statement text each
    assert max(lengths) == ROWS_PER_STATEMENT


def test_batches_are_full_first_then_halving() -> None:
    assert [len(batch) for batch in batches(list(range(1100)), few_lengths=True)] == [512, 512, 64, 8, 4]


def test_postgresql_keeps_plain_batches_each_a_round_trip() -> None:
    assert [len(batch) for batch in batches(list(range(1100)), few_lengths=False)] == [512, 512, 76]


def test_batches_refuse_a_limit_that_is_not_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        list(batches([1, 2, 3], 500))
