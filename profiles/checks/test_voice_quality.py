"""Example site checks. Run them with:

    pytest --cutover-profile profiles/demo.yaml profiles/checks/

or list the folder in the profile (``checks: ./checks``) so ``cutover check``
runs them after the built-in suite.
"""

import pytest

from harness.sitecheck import expect_loss, expect_mos, expect_rtt


def test_voice_stream_quality(circuit, probe, thresholds):
    """A 3 s G.711 stream meets the profile's MOS and loss thresholds."""
    r = probe("stream", duration_s=3)
    expect_mos(circuit, r, thresholds.mos_min)
    expect_loss(circuit, r, thresholds.loss_pct)


@pytest.mark.cutover(role="new")
def test_new_circuit_latency(circuit, probe):
    """The new circuit answers pings within 100 ms round trip."""
    expect_rtt(circuit, probe("latency", count=5), 100.0)
