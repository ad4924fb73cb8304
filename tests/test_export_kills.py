"""SIGKILL real `pocketgan export` runs (slow, a few minutes): each kill leaves the old or the
new bundle, verified, and the next export leaves no stray. The full set (>= 100 kills, with
the swap driver) is tests/reliability/kills.py, run by `make fuzz`."""

from __future__ import annotations

import random

import pytest

from reliability import kills


@pytest.mark.slow
def test_killed_exports_leave_old_or_new_and_no_stray(tmp_path):
    part, _ = kills.export_part(tmp_path, 10, random.Random(kills.SEED))
    assert part.failures == []
    assert part.kills == 10
    assert set(part.left) <= {"old", "new", "missing", "new (finished)"}
    assert part.cleanup_checked > 0, "no kill landed after an export's recovery step"
    assert "0 after; dest new" in part.final and "--verify` exit 0" in part.final, part.final
