import pytest

from probes.addr import AddressError, dscp_value, parse_hostport


@pytest.mark.parametrize("text,host,port", [
    ("192.0.2.10:862", "192.0.2.10", 862), ("192.0.2.10", "192.0.2.10", 862),
    ("[2001:db8::7]:4000", "2001:db8::7", 4000), ("[2001:db8::7]", "2001:db8::7", 862),
    ("2001:db8::7", "2001:db8::7", 862), ("reflector.example:9000", "reflector.example", 9000),
    ("localhost", "localhost", 862),
])
def test_parse(text, host, port):
    hp = parse_hostport(text)
    assert (hp.host, hp.port) == (host, port)


@pytest.mark.parametrize("text,words", [
    ("", "empty"), ("host:port", "not a number"), ("1.2.3.4:70000", "out of range"),
    ("[2001:db8::7", "missing ']'"), ("2001:db8::7:99999x", "brackets"),
    ("999.1.1.1:862", "neither"), ("bad_host!:1", "neither"),
])
def test_parse_errors(text, words):
    with pytest.raises(AddressError) as exc:
        parse_hostport(text)
    assert words in str(exc.value)


def test_str_roundtrip():
    assert str(parse_hostport("[::1]:862")) == "[::1]:862"


@pytest.mark.parametrize("name,value", [("ef", 46), ("af41", 34), ("cs5", 40), ("be", 0), ("46", 46), (26, 26)])
def test_dscp(name, value):
    assert dscp_value(name) == value


def test_dscp_bad():
    with pytest.raises(AddressError):
        dscp_value("64")
