"""Printing on terminals that cannot show Unicode: η becomes eta, ≤ becomes <=, never a crash.

Some CI systems and older servers run with an ASCII or Latin-1 stdout (`PYTHONIOENCODING=ascii`,
`LANG=C` without UTF-8 mode). optlab's help, tables and summary lines use Greek letters, maths
symbols and rich's box drawing; written to such a stream they raise UnicodeEncodeError, which
for `run` and `sweep` comes *after* the results were saved, so the promised last line (the run
folder) never appears. Instead of guarding every print, `degrade_to_ascii` gives stdout and
stderr an error handler that writes each character the stream cannot encode as ASCII text.

rich needs no help with its tables: a Console whose stream's encoding does not start with "utf"
is `ascii_only` and draws ASCII boxes and progress bars by itself. Only the text is left to us.
"""

from __future__ import annotations

import codecs
import sys
import unicodedata
from typing import TextIO

HANDLER = "optlab-transliterate"  # the codecs error handler registered below

# Symbols optlab prints whose ASCII spelling is not their compatibility decomposition.
_SPELLED = {
    "≤": "<=", "≥": ">=", "≠": "!=", "≈": "~", "≪": "<<", "≫": ">>", "×": "x", "·": "*", "⊙": "*", "∘": "o",
    "±": "+/-", "→": "->", "←": "<-", "↔": "<->", "⇒": "=>", "↑": "^", "↓": "v", "∇": "grad", "∂": "d",
    "√": "sqrt", "∫": "int", "∞": "inf", "‖": "||", "−": "-", "–": "-", "—": "--", "…": "...", "•": "*",
    "✓": "ok", "✗": "x", "°": "deg", "‘": "'", "’": "'", "“": '"', "”": '"', "«": "<<", "»": ">>",
    "█": "#", "▌": "#", "▐": "#", "░": ".", "▒": ":", "▓": "#", "■": "#", "□": "o",
}
_ACROSS, _DOWN = {"HORIZONTAL", "LEFT", "RIGHT"}, {"VERTICAL", "UP", "DOWN"}  # words of box-drawing names
_GREEK_SPELLING = {"lamda": "lambda"}  # Unicode's names spell it without the b


def ascii_for(text: str) -> str:
    """ASCII spelling of `text`; a run of superscripts or subscripts gets one ^ or _ ("⁻¹" -> "^-1")."""
    out, mode = [], None
    for ch in text:
        kind, plain = _spell(ch)
        if kind is not None and kind != mode:
            out.append("^" if kind == "super" else "_")
        mode = kind
        out.append(plain)
    return "".join(out)


def _spell(ch: str) -> tuple[str | None, str]:
    """(kind, ASCII) for one character; kind is "super", "sub" or None."""
    if ch.isascii():
        return None, ch
    if ch in _SPELLED:
        return None, _SPELLED[ch]
    if 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte that was not valid UTF-8 in a file name (surrogateescape)
        return None, f"\\x{ord(ch) - 0xDC00:02x}"
    decomposition = unicodedata.decomposition(ch)
    for tag, kind in (("<super>", "super"), ("<sub>", "sub")):
        if decomposition.startswith(tag):
            return kind, _decomposed(ch)
    name = unicodedata.name(ch, "")
    if name.startswith("GREEK "):
        word = _GREEK_SPELLING.get(name.split()[-1].lower(), name.split()[-1].lower())
        if " CAPITAL " in name:
            word = word.capitalize()
        return None, word
    if name.startswith("BOX DRAWINGS "):
        ways = set(name.split()) & (_ACROSS | _DOWN)
        return None, "-" if ways <= _ACROSS else "|" if ways <= _DOWN else "+"
    return None, _decomposed(ch)


def _decomposed(ch: str) -> str:
    """é -> e, ² -> 2, ⁻ -> -, ﬁ -> fi; "?" when nothing of the character is ASCII."""
    parts = unicodedata.normalize("NFKD", ch)
    plain = "".join(_SPELLED.get(c, c) for c in parts).encode("ascii", "ignore").decode()
    return plain or "?"


def _transliterate(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return ascii_for(error.object[error.start:error.end]), error.end


codecs.register_error(HANDLER, _transliterate)


# click (under typer.echo) takes a stream whose codec is ASCII for a misconfigured one and writes
# UTF-8 bytes to it instead, bypassing any error handler. The same ASCII codec under another name
# keeps click writing through the stream, so that its text is transliterated like everyone else's.
_ASCII_ALIAS = "optlab-ascii"


def _find_alias(name: str) -> codecs.CodecInfo | None:
    if name.replace("_", "-") != _ASCII_ALIAS:
        return None
    ascii_codec = codecs.lookup("ascii")
    return codecs.CodecInfo(ascii_codec.encode, ascii_codec.decode, ascii_codec.streamreader,
                            ascii_codec.streamwriter, ascii_codec.incrementalencoder,
                            ascii_codec.incrementaldecoder, name=_ASCII_ALIAS)


codecs.register(_find_alias)


def _can_encode_unicode(encoding: str | None) -> bool:
    try:
        "η≤→─".encode(encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def degrade_to_ascii(*streams: TextIO) -> None:
    """Give each stream (default: stdout and stderr) the transliterating error handler where it needs one.

    A stream that cannot encode Unicode gets it whatever its error policy was. A UTF-8 stream
    gets it only in place of "strict" (would crash) and "backslashreplace" (would print
    `\\udcff`), where the one thing it cannot encode is an undecodable byte of a file name;
    an explicit surrogateescape (the raw bytes back out) is left alone.
    """
    for stream in streams or (sys.stdout, sys.stderr):
        errors, encoding = getattr(stream, "errors", None), getattr(stream, "encoding", None)
        if not hasattr(stream, "reconfigure") or errors == HANDLER:
            continue
        if errors in ("strict", "backslashreplace") or not _can_encode_unicode(encoding):
            try:
                if _codec_name(encoding) == "ascii":
                    stream.reconfigure(encoding=_ASCII_ALIAS, errors=HANDLER)
                else:
                    stream.reconfigure(errors=HANDLER)
            except (OSError, ValueError):  # a closed or detached stream: nothing will be printed on it
                pass


def _codec_name(encoding: str | None) -> str | None:
    try:
        return codecs.lookup(encoding or "ascii").name
    except LookupError:
        return None
