"""Escaping user data for each output medium, in one place per medium.

Site names, circuit names, sign-off notes and reasons that quote them are typed
by many people and end up in XML (junit.xml), Markdown (report.md) and on the
terminal. Each medium has characters that break it or act on the reader:

* XML 1.0 forbids most C0 control characters even as character references: one
  ESC in a site name made junit.xml not well-formed, and a CI system then fails
  to read any result. :func:`xml_text` replaces every character XML cannot
  carry with a visible ``\\xNN`` (``\\x1b`` for ESC), so the file always parses and
  the reader still sees what was there. ``<``, ``&`` and quotes are left to the
  XML serializer (ElementTree), which escapes them in text and attributes.
* Markdown passes raw HTML through, and most viewers render it: ``<script>`` or
  ``<img onerror=...>`` in a site name ran in the viewer. :func:`markdown_text`
  turns ``<``, ``>``, ``&`` and quotes into entities, backslash-escapes the
  characters that make Markdown markup inline (emphasis, code, links/images:
  ``* _ ` [ ] ~ \\``) and the table pipe ``|``, and folds line breaks into
  spaces (a newline would end a table row or start a heading).
* A terminal acts on escape sequences: ESC ``[2J`` clears the screen, OSC
  sequences set the window title or write hyperlinks, BEL rings, a carriage
  return overwrites the line. :func:`terminal_text` shows every C0/C1 control
  character, DEL and the Unicode bidirectional overrides ("Trojan Source") as
  visible ``\\xNN`` / ``\\u202e`` text, so nothing from the data reaches the
  terminal raw. :func:`rich_text` does the same and also escapes Rich console
  markup (``[bold]``), for text printed through Rich.

The stored data is never changed: escaping happens where a medium is written.
"""

from __future__ import annotations

import html
import re

# XML 1.0 Char production: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
# C1 controls (#x7F-#x9F) are allowed but "discouraged" (XML 1.0 section 2.2): replaced too,
# some parsers (and every terminal that later prints the file) treat them as controls.
_XML_BAD = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# terminal: C0 controls (tab and newline only where allowed), DEL, C1 controls, and the
# bidirectional embedding/override/isolate characters that reorder what is shown
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_TERM_BAD = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_TERM_BAD_KEEP_LINES = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")

_MD_INLINE = re.compile(r"([\\`*_\[\]~|])")
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\u2028\u2029\x85]")


def _visible(m: re.Match) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" if c < 0x10000 else f"\\U{c:08x}"


def xml_text(text: str) -> str:
    """``text`` with every character XML 1.0 cannot carry shown as ``\\xNN``; the XML
    serializer still escapes ``<``, ``&`` and quotes."""
    return _XML_BAD.sub(_visible, text)


def markdown_text(text: str) -> str:
    """``text`` as inert Markdown: HTML-significant characters as entities, inline markup
    and table pipes backslash-escaped, line breaks folded into spaces, control characters
    shown as ``\\xNN``."""
    text = _LINE_BREAKS.sub(" ", text)
    text = _TERM_BAD.sub(_visible, text)
    text = _MD_INLINE.sub(r"\\\1", text)
    return html.escape(text, quote=True)


def terminal_text(text: str, keep_lines: bool = False) -> str:
    """``text`` with control characters, escape sequences and bidi overrides shown as
    ``\\xNN``; ``keep_lines`` lets newlines and tabs through (our own multi-line messages)."""
    return (_TERM_BAD_KEEP_LINES if keep_lines else _TERM_BAD).sub(_visible, text)


def rich_text(text: str) -> str:
    """``text`` for Rich's console markup: :func:`terminal_text`, then ``[`` escaped."""
    from rich.markup import escape
    return escape(terminal_text(text))
