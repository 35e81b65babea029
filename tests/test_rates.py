from agents.rates import CounterRates


def test_rate_needs_two_reads_and_divides_by_time():
    r = CounterRates()
    assert r.rate("k", 100, 10.0) is None
    assert r.rate("k", 250, 20.0) == 15.0


def test_reset_or_wrap_gives_no_rate_never_negative():
    r = CounterRates()
    r.rate("k", 1_000, 0.0)
    assert r.rate("k", 10, 10.0) is None  # counter went down: reset
    assert r.rate("k", 40, 20.0) == 3.0  # the new reading is the base


def test_same_timestamp_gives_no_rate():
    r = CounterRates()
    r.rate("k", 1, 5.0)
    assert r.rate("k", 2, 5.0) is None


def test_sweep_forgets_series_not_seen():
    r = CounterRates()
    r.rate("a", 1, 0.0)
    r.rate("b", 1, 0.0)
    r.sweep()
    r.rate("a", 2, 1.0)
    r.sweep()
    assert len(r) == 1
    assert r.rate("b", 5, 2.0) is None  # b was forgotten: first read again


def test_delta():
    r = CounterRates()
    assert r.delta("x", 5) is None
    assert r.delta("x", 8) == 3
    assert r.delta("x", 2) is None
