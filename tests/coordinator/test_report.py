"""The report's supply heatmap colours each cell by the authority's rate against the CAG rate for
that client group, so that one large group does not wash out the rest."""

from __future__ import annotations

import pytest

from coordinator.report import relative_to_cag


@pytest.mark.parametrize(
    ("rate", "cag_rate", "expected"),
    [
        (1.5, 1.5, 0.0),  # at the CAG rate
        (3.0, 1.5, 1.0),  # twice
        (0.75, 1.5, -1.0),  # half
        (60.0, 1.5, 2.0),  # held at four times
        (0.0, 1.5, -2.0),  # none at all: the far end, not minus infinity
        (0.0, 0.0, None),  # no supply anywhere in the CAG: no colour
    ],
)
def test_a_cell_is_coloured_by_its_rate_against_the_cag_rate(
    rate: float, cag_rate: float, expected: float | None
) -> None:
    assert relative_to_cag(rate, cag_rate) == expected
