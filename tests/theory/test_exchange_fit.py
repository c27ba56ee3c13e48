"""Exchange = t0 + a * messages + b * bytes, recovered from synthetic timings; growth attribution."""

import numpy as np
import pytest

from theory import InputError
from theory.exchange_fit import all_to_all_messages, attribute_growth, fit_exchange

T0, A, B = 2e-4, 5e-5, 1e-9  # 200 us launch, 50 us per message, 1 GB/s


def test_fit_recovers_latency_and_bandwidth_with_intervals():
    rng = np.random.default_rng(0)
    experts = np.array([2, 4, 8, 16, 32])
    rows = [(m, nb) for m in all_to_all_messages(experts) for nb in (2**16, 2**18, 2**20)]
    messages, bytes_ = (np.repeat(np.array(col, dtype=float), 6) for col in zip(*rows))
    seconds = (T0 + A * messages + B * bytes_) * (1 + 0.03 * rng.standard_normal(messages.size))
    fit = fit_exchange(messages, bytes_, seconds, bootstrap=200)
    assert fit.a == pytest.approx(A, rel=0.1) and fit.b == pytest.approx(B, rel=0.1)
    for name, truth in (("t0", T0), ("a", A), ("b", B)):
        assert fit.ci[name][0] <= truth <= fit.ci[name][1]
    assert fit.predict(3, 2**20) == pytest.approx(T0 + 3 * A + B * 2**20, rel=0.1)


def test_one_payload_size_cannot_separate_a_from_b():
    with pytest.raises(InputError, match="2 payload sizes"):
        fit_exchange([1, 3, 7], [100, 100, 100], [1.0, 2.0, 3.0])


def test_attribution_splits_the_step_growth():
    step = {"const": 0.1, "inv_e": 0.4, "beta": 0.003}
    exchange = {"const": 1e-3, "beta": 0.001}
    experts = {"const": 0.01, "inv_e": 0.4, "alpha": 1e-4}
    rows = attribute_growth([1, 4, 16], step, exchange, experts)
    assert rows[0]["step_growth_s"] == 0 and rows[0]["exchange_share"] is None
    last = rows[-1]
    assert last["step_growth_s"] == pytest.approx(0.045)
    assert last["exchange_share"] == pytest.approx(0.015 / 0.045)
    assert last["expert_compute_growth_s"] == pytest.approx(1e-4 * 255)
    assert last["unexplained_s"] == pytest.approx(0.045 - 0.015 - 0.0255)
