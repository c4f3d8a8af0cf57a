"""Voice math, pure: the codec table (``codecs``), the E-model of ITU-T G.107 and
G.107.1 (``emodel``), the metric functions (``stats``: RFC 3550 jitter, IPDV,
percentiles) and loss in time (``losstime``: gaps, windows, RFC 3611 bursts,
the burst ratio)."""
