"""The one codec table: packet sizes for planning and E-model constants.

Everything that needs to know a codec (planning math, the stream engine's
packet size, the E-model, capture analysis) reads it from here.

E-model constants come from ITU-T G.113 Appendix I (narrowband):
  - ``ie``: equipment impairment factor of the codec with no loss.
  - ``bpl``: packet-loss robustness factor (how gracefully quality drops with
    random loss; higher is more robust). G.711 with packet loss concealment
    (Appendix I of G.711) has Bpl 25.1; without PLC it is 4.3.
Wideband codecs (G.722, Opus) are scored with the wideband E-model of
ITU-T G.107.1 (:mod:`probes.voice.emodel`) and its own constants (:class:`Wideband`):

  - ``ie_wb``: wideband equipment impairment on the 0..129 scale. G.722 at
    64 kbit/s: 13, ITU-T G.113 (11/2007) Appendix IV, Table IV.1.
  - ``bpl``: packet-loss robustness under loss. No wideband Bpl for G.722 is
    tabulated in G.113; we use G.711's PLC value (25.1): both are
    waveform codecs concealed by repetition-based PLC. A score under loss
    is then flagged provisional.
  - Opus: ITU-T publishes no Ie,WB or Bpl. It is scored with G.722's values
    as a stand-in and every Opus score is flagged provisional.

A provisional score is computed all the same, with the reason in its
``note``: an engineer needs a figure, and needs to know how much to trust it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Header sizes in bytes, per packet.
RTP_HEADER_B = 12
UDP_HEADER_B = 8
IPV4_HEADER_B = 20
IPV6_HEADER_B = 40
ETHERNET_B = 18          # 14 header + 4 FCS
WIRE_EXTRA_B = 20        # 8 preamble/SFD + 12 inter-frame gap
VLAN_TAG_B = 4           # 802.1Q
SRTP_AUTH_TAG_B = 10     # AES_CM_128_HMAC_SHA1_80 authentication tag


@dataclass(frozen=True)
class Wideband:
    """G.107.1 constants of a wideband codec; a note says why a value is not published."""
    ie_wb: float
    bpl: float
    ie_note: str = ""     # non-empty: Ie,WB is not published (every score provisional)
    bpl_note: str = ""    # non-empty: Bpl is not published (scores under loss provisional)


@dataclass(frozen=True)
class Codec:
    name: str
    title: str
    bitrate_kbps: float          # codec payload bit rate
    clock_hz: int                # RTP timestamp clock
    payload_type: int | None     # static RTP payload type, None when dynamic
    ptimes_ms: tuple[int, ...]   # packetisation intervals it is used with
    ie: float                    # G.113 equipment impairment
    bpl: float                   # G.113 packet-loss robustness
    wideband: Wideband | None = None   # G.107.1 constants; None: a narrowband codec (G.107)

    def score_caveats(self) -> list[str]:
        """Why this codec's scores may be provisional (empty for a fully published codec)."""
        wb = self.wideband
        return [n for n in ((wb.ie_note, wb.bpl_note) if wb else ()) if n]

    def payload_bytes(self, ptime_ms: int) -> int:
        """Codec payload per packet (bytes) at this ptime."""
        return round(self.bitrate_kbps * ptime_ms / 8)

    def rtp_bytes(self, ptime_ms: int) -> int:
        """RTP header + payload: the UDP payload of a real call's packet."""
        return RTP_HEADER_B + self.payload_bytes(ptime_ms)


_G722_BPL_NOTE = ("no wideband Bpl is published for G.722: loss scored with G.711's PLC "
                  "robustness (25.1)")
_OPUS_NOTE = ("ITU-T publishes no Ie,WB or Bpl for Opus: scored with G.722's values "
              "(Ie,WB 13, Bpl 25.1) as a stand-in")

CODECS: dict[str, Codec] = {
    "g711": Codec("g711", "G.711 (PCMU/PCMA) with PLC", 64.0, 8000, 0,
                  (10, 20, 30, 40), ie=0.0, bpl=25.1),
    "g729": Codec("g729", "G.729A", 8.0, 8000, 18,
                  (10, 20, 30, 40), ie=11.0, bpl=19.0),
    # G.722 RTP clock is 8000 by RFC 3551's historical error, though it samples at 16 kHz.
    "g722": Codec("g722", "G.722 (wideband)", 64.0, 8000, 9,
                  (10, 20, 30, 40), ie=0.0, bpl=25.1,
                  wideband=Wideband(ie_wb=13.0, bpl=25.1, bpl_note=_G722_BPL_NOTE)),
    # Opus at the 24 kbit/s voice rate most softphones use (RFC 7587: clock 48000).
    "opus": Codec("opus", "Opus 24 kbit/s (wideband)", 24.0, 48000, None,
                  (10, 20, 40, 60), ie=0.0, bpl=25.1,
                  wideband=Wideband(ie_wb=13.0, bpl=25.1, ie_note=_OPUS_NOTE)),
}

ALIASES = {"pcmu": "g711", "pcma": "g711", "g711u": "g711", "g711a": "g711",
           "g729a": "g729", "g.711": "g711", "g.729": "g729", "g.722": "g722"}


def get_codec(name: str) -> Codec:
    """Look up a codec by name or alias; KeyError names the known ones."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    try:
        return CODECS[key]
    except KeyError:
        from probes.names import unknown_name
        raise KeyError(unknown_name("codec", name, CODECS, lead="unknown")) from None


# RFC 3551 table 4: the static audio payload types whose codec this table covers,
# with the encoding name the RFC (and SDP's a=rtpmap) gives them. PCMU and PCMA
# are the same codec for planning and the E-model (G.711 mu-law / A-law); the
# encoding name tells a capture's streams apart. G723 (4), GSM (3) and the
# others are not in CODECS, so they are not claimed here.
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, str]] = {
    0: ("g711", "PCMU"),
    8: ("g711", "PCMA"),
    9: ("g722", "G722"),
    18: ("g729", "G729"),
}


def codec_for_payload_type(pt: int) -> Codec | None:
    """The codec of a static RTP payload type (RFC 3551), None when dynamic or not covered."""
    entry = STATIC_PAYLOAD_TYPES.get(pt)
    return CODECS[entry[0]] if entry else None


def encoding_for_payload_type(pt: int) -> str | None:
    """RFC 3551 encoding name of a static payload type ("PCMA" for 8), None when not covered."""
    entry = STATIC_PAYLOAD_TYPES.get(pt)
    return entry[1] if entry else None
