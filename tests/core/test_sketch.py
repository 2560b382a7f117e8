from __future__ import annotations

import random

import numpy as np
import pytest

from core.sketch import RELATIVE_ACCURACY, Sketch, merge_blobs


def _exact(values, q):
    return float(np.quantile(np.array(values), q, method="inverted_cdf"))


@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_quantiles_within_relative_accuracy(q):
    rng = random.Random(7)
    values = [rng.lognormvariate(5, 1.2) for _ in range(20_000)]
    estimate = Sketch().extend(values).quantile(q)
    assert estimate == pytest.approx(_exact(values, q), rel=RELATIVE_ACCURACY)


def test_merging_stored_sketches_equals_one_sketch_of_all_values():
    rng = random.Random(3)
    parts = [[rng.uniform(1, 5000) for _ in range(rng.randint(0, 300))] for _ in range(200)]
    blobs = [Sketch().extend(p).to_bytes() for p in parts]
    merged = merge_blobs(blobs + [None, b""])
    everything = [v for p in parts for v in p]
    direct = Sketch().extend(everything)
    assert merged.count == len(everything)
    assert merged.buckets == direct.buckets
    assert merged.min == min(everything) and merged.max == max(everything)
    assert merged.mean == pytest.approx(sum(everything) / len(everything))
    for q in (0.5, 0.95, 0.99):
        assert merged.quantile(q) == pytest.approx(_exact(everything, q), rel=RELATIVE_ACCURACY)


def test_known_durations():
    sketch = Sketch().extend([100.0] * 50 + [200.0] * 40 + [3000.0] * 10)
    p50, p95, p99 = sketch.quantiles([0.5, 0.95, 0.99])
    assert p50 == pytest.approx(100, rel=0.01)
    assert p95 == pytest.approx(3000, rel=0.01)
    assert p99 == pytest.approx(3000, rel=0.01)


def test_nearest_rank_never_understates_the_tail():
    """At least (100 - q) % of the jobs took at least pq: one job is its own pq, one slow job is the p99."""
    assert Sketch().extend([518.0]).quantiles([0.5, 0.95, 0.99]) == pytest.approx([518.0] * 3, rel=0.01)
    p50, p95, p99 = Sketch().extend([40.0] * 30 + [3000.0]).quantiles([0.5, 0.95, 0.99])
    assert p50 == pytest.approx(40, rel=0.01) and p95 == pytest.approx(40, rel=0.01)
    assert p99 == pytest.approx(3000, rel=0.01)
    p50, p95, p99 = Sketch().extend([675.0, 3014.0, 725.0]).quantiles([0.5, 0.95, 0.99])
    assert (p50, p95, p99) == pytest.approx((725, 3014, 3014), rel=0.01)
    assert Sketch().extend([10.0] * 95 + [20.0] * 5).quantile(0.95) == pytest.approx(10, rel=0.01)


@pytest.mark.parametrize("seed", range(20))
def test_order_and_bounds_hold_for_heavy_tails(seed):
    rng = random.Random(seed)
    values = [rng.paretovariate(1.1) * 10 for _ in range(rng.randint(1, 400))]
    sketch = Sketch().extend(values)
    p50, p95, p99 = sketch.quantiles([0.5, 0.95, 0.99])
    assert sketch.min <= p50 <= p95 <= p99 <= sketch.max
    assert sketch.mean <= sketch.max
    for q, estimate in ((0.5, p50), (0.95, p95), (0.99, p99)):
        exact = _exact(values, q)
        assert estimate == pytest.approx(exact, rel=RELATIVE_ACCURACY)
        share_at_least = sum(v >= exact for v in values) / len(values)
        assert share_at_least >= 1 - q - 1e-12


def test_zero_and_empty():
    assert Sketch().quantile(0.5) is None
    assert merge_blobs([]).count == 0
    sketch = Sketch().extend([0.0, 0.0, 10.0])
    assert sketch.quantile(0.0) == 0.0
    assert Sketch.from_bytes(sketch.to_bytes()).buckets == sketch.buckets


def test_rejects_bad_values():
    with pytest.raises(ValueError):
        Sketch().add(-1)
    with pytest.raises(ValueError):
        Sketch().quantile(1.5)
    with pytest.raises(ValueError):
        merge_blobs([b"not a sketch at all, no magic header here...."])
