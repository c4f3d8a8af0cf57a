"""Wire and file formats: STAMP packets (RFC 8762/8972), SIP text, pcap/pcapng."""
