"""One escaping function per medium poorinit writes to.

Tensor names, trial directory names and file names come from files a user
may have downloaded (a bucket, a pull request's artefact): they are
attacker-controlled. Written raw, a name holding a newline starts a GitHub
workflow command (``::error``, ``::add-mask::``) on a line of its own; an
escape sequence clears the screen or writes the clipboard (OSC 52); a control
character makes JUnit XML invalid; backticks break out of a Markdown code
span. So every string that reaches an output goes through the function for
that output, here, and nowhere else is escaping done by hand.

Every function is total (any ``str``, including lone surrogates from file
names that are not UTF-8) and idempotent in effect: its result is safe for
its medium and holds no character the medium treats specially. Escapes are
visible (``\\n``, ``\\x1b``, ``\\u202e``), never silent deletions, so a user
can still tell two odd names apart.

=================  ==========================================================
medium             function
=================  ==========================================================
terminal (rich)    :func:`terminal` (and :func:`rich_text` for a table cell)
stderr line        :func:`stderr_line`
GitHub commands    :func:`github_data`, :func:`github_property`
JUnit / XML        :func:`xml`
Markdown           :func:`markdown`, :func:`markdown_code`
HTML (plot page)   :func:`html`
JSON               :func:`json_dumps`
=================  ==========================================================
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# Unicode categories never shown as themselves: controls (C0, DEL, C1: ESC
# starts ANSI and OSC sequences, CR rewrites a line), format characters
# (bidirectional overrides that reorder a line, zero-width characters that
# hide text), line and paragraph separators, and surrogates (a file name that
# is not UTF-8 decodes to lone surrogates, which no UTF-8 stream can hold).
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _hidden(char: str) -> bool:
    if unicodedata.category(char) in _HIDDEN_CATEGORIES:
        return True
    # XML 1.0 forbids the noncharacters U+FFFE and U+FFFF; no medium needs them.
    return char in "\ufffe\uffff"


def _visible(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def terminal(text: object) -> str:
    """Text safe on a terminal: one line, no control, format or separator character.

    Each such character is replaced by a visible escape (``\\n``, ``\\x1b``),
    so nothing a name holds can move the cursor, recolour, retitle, clear the
    screen, write the clipboard, reorder the line or start a new line.
    """
    value = str(text)
    if value.isprintable():  # the common case, in C: nothing hidden (isprintable is stricter)
        return value
    return "".join(_visible(char) if _hidden(char) else char for char in value)


def rich_text(text: object, style: str = "") -> Any:
    """A rich ``Text`` for a table cell or a console line: :func:`terminal`, and
    never read as console markup (``[bold]``, ``[link=...]`` in a name stay text)."""
    from rich.text import Text

    return Text(terminal(text), style=style)


def stderr_line(text: object) -> str:
    """One line for stderr (errors, warnings): :func:`terminal`.

    A name with a newline cannot start a second line (which a CI runner would
    read as ``::error`` or ``::add-mask::``), and nothing can reach the
    terminal as an escape sequence.
    """
    return terminal(text)


def github_data(text: object) -> str:
    """The message of a GitHub Actions workflow command (``::error ...::DATA``).

    Controls are made visible first (the runner renders ANSI colour in its
    log), then ``%`` is escaped as the runner expects, so no sequence in a
    name can be read back as an escaped line break.
    """
    return terminal(text).replace("%", "%25")


def github_property(text: object) -> str:
    """A property value of a workflow command (``title=...``): also ``:`` and ``,``."""
    return github_data(text).replace(":", "%3A").replace(",", "%2C")


def xml(text: object) -> str:
    """Text for an XML attribute or element (JUnit): no character XML 1.0 forbids.

    ElementTree escapes ``&``, ``<``, ``>`` and quotes itself; what it lets
    through is what makes a document invalid (controls, surrogates, U+FFFE,
    U+FFFF), and those are made visible here.
    """
    return terminal(text)


# The characters that open markup anywhere in a line: emphasis, code, links
# and images (without "[" no "![" or "](" can form), HTML and autolinks,
# entities, table cells, and the escape itself. Characters that open markup
# only at the start of a line ("#", "-", "1.") are left alone: poorinit never
# starts a line with a name, and escaping them would litter every reason.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_~\[\]<&|])")


def markdown(text: object) -> str:
    """Text for Markdown (a paragraph or a table cell): no markup, no HTML, one line.

    Every character that opens markup within a line is backslash-escaped
    (CommonMark allows it for all ASCII punctuation), so ``<img onerror=...>``,
    ``**``, ``[link](...)``, ``&lt;`` entities and ``|`` cell breaks all render
    as the characters they are.
    """
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", terminal(text))


def markdown_code(text: object) -> str:
    """An inline code span holding ``text`` literally, safe in a GFM table cell.

    The fence is one backtick longer than the longest run of backticks in the
    text, so none can close it; ``|`` is escaped (GFM splits table cells on
    it even inside code spans); controls are made visible.
    """
    value = terminal(text).replace("|", "\\|")
    runs = re.findall(r"`+", value)
    fence = "`" * (max((len(run) for run in runs), default=0) + 1)
    # A space on each side keeps a leading or trailing backtick off the fence;
    # CommonMark strips one such space from each end when both are present.
    padded = f" {value} " if value.startswith("`") or value.endswith("`") or value.startswith(" ") else value
    return f"{fence}{padded or ' '}{fence}"


def html(text: object) -> str:
    """Text for HTML element content or a quoted attribute (the plot's page): no tag, no
    entity, no hidden character. ``<``, ``>``, ``&`` and quotes become entities; controls,
    bidirectional overrides and separators are made visible first, as on a terminal."""
    import html as _html

    return _html.escape(terminal(text), quote=True)


# Candidates only (anything outside printable ASCII and the newlines of indent=2);
# _json_escape decides.
_JSON_CANDIDATE = re.compile("[^\x20-\x7e\n]")


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    if not _hidden(char):
        return char
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON spells characters beyond the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` with non-ASCII kept readable, and every hidden character
    escaped as ``\\uXXXX``: JSON itself escapes only C0 controls, and lets
    through C1 controls (``\\x9b`` is a terminal escape), bidirectional
    overrides, U+2028/U+2029 (line breaks to JavaScript) and lone surrogates
    (file names that are not UTF-8, which no UTF-8 stream can hold). The
    document means the same; ``jq`` on a terminal shows nothing hidden.
    ``NaN`` and ``Infinity`` are refused (``allow_nan=False``): they are not JSON.
    """
    import json  # here, not at import: the table of `analyze` (every run into a pipe) escapes names, never JSON

    options.setdefault("ensure_ascii", False)
    options.setdefault("allow_nan", False)
    text = json.dumps(value, **options)
    # Outside printable ASCII, characters can only occur inside JSON strings,
    # where \\uXXXX means them.
    return _JSON_CANDIDATE.sub(_json_escape, text)
