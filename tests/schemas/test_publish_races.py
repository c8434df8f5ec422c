"""Concurrent publishes by real processes, released at the same instant, on a local directory and on
moto S3: first publishes of a new table, then later publishes on it. Every visible version is
exactly one publish, and every publish reported successful is exactly one visible version.
(benchmarks/publish_races.py runs the same race for many rounds.)"""
from __future__ import annotations

import pytest

from tests.helpers.publishers import one_publish_per_version, race, serving_publishers
from tests.helpers.tables import STORES

pytestmark = pytest.mark.slow
ROUNDS, PUBLISHERS = 3, 3


@pytest.mark.parametrize("store_fixture", STORES)
def test_concurrent_first_and_later_publishes_make_one_version_each(store_fixture, request):
    store = request.getfixturevalue(store_fixture)
    with serving_publishers(store, PUBLISHERS) as processes:
        for round_ in range(ROUNDS):
            name, rows_by_seed = f"race-{round_}", {}
            for phase in range(2):  # 0: the table's first publishes; 1: later publishes on top of them
                # rows differ by publisher, so a version mixing two publishes could not pass as one
                racing = {100 * round_ + 10 * phase + k: 20 + 3 * phase + k for k in range(PUBLISHERS)}
                rows_by_seed |= racing
                results = race(processes, name, racing)
                assert all("version" in result for result in results.values()), results  # 3 racers: <= 3 attempts
                seeds = one_publish_per_version(store, name, rows_by_seed)
                assert {results[seed]["version"]: seed for seed in racing} == {
                    v: s for v, s in seeds.items() if v >= PUBLISHERS * phase}
                assert sorted(seeds) == list(range(PUBLISHERS * (phase + 1)))
