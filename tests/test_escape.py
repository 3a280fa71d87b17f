"""poorinit/escape.py: every medium's escaping holds for any string at all.

The properties run over arbitrary Unicode, control characters, lone
surrogates (file names that are not UTF-8) and the characters each medium
treats specially, and judge the result with the medium's own reader where
there is one: ElementTree's parser for XML, markdown-it (CommonMark with GFM
tables, what rich itself uses) for Markdown, ``json.loads`` for JSON.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
import xml.etree.ElementTree as ET

from hypothesis import example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from poorinit import escape

# Every code point, surrogates included, with the dangerous ones drawn often.
SPECIAL = "\n\r\t\x00\x07\x08\x1b\x7f\x85\x9b\u2028\u2029\u202e\u2066\u200b\ufeff\ufffe\uffff\ud800\udcff"
MARKUP = "`|*_~[]()<>&!#\\%:,=@"
texts = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0, max_codepoint=0x10FFFF),  # surrogates included
        st.sampled_from(SPECIAL + MARKUP),
    ),
    max_size=60,
)
ATTACKS = [
    "a\n::error title=x::pwned",
    "a\r\n::add-mask::secret",
    "\x1b]52;c;cHduZWQ=\x07",  # OSC 52: write the clipboard
    "\x1b[2J\x1b[H",  # clear the screen
    "x`` <img src=x onerror=alert(1)> ``",
    "a|b\u202egnp.exe",
    "\udcff\udcfe not UTF-8",
    "%0A::error::x",
]


def hidden(char: str) -> bool:
    return unicodedata.category(char) in {"Cc", "Cf", "Cs", "Zl", "Zp"} or char in "\ufffe\uffff"


@given(texts)
@example("")
def test_terminal_text_holds_no_hidden_character_and_stays_one_line(text):
    shown = escape.terminal(text)
    assert not any(hidden(c) for c in shown)
    assert len(shown.splitlines()) <= 1
    shown.encode("utf-8")  # a UTF-8 terminal can take it


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), max_size=40))
def test_terminal_leaves_printable_text_alone(text):
    if "\ufffe" not in text and "\uffff" not in text:
        assert escape.terminal(text) == text


def test_terminal_escapes_are_visible_and_distinct():
    assert escape.terminal("a\nb") == "a\\nb"
    assert escape.terminal("\x1b[2J") == "\\x1b[2J"
    assert escape.terminal("\u202e") == "\\u202e"
    assert escape.terminal("\udcff") == "\\udcff"
    assert escape.terminal("\U000e0041") == "\\U000e0041"  # a tag character (format, invisible)
    assert escape.terminal("a\x07") != escape.terminal("a\x08")


@given(texts)
def test_rich_text_is_never_markup(text):
    from io import StringIO

    from rich.console import Console

    buffer = StringIO()
    Console(file=buffer, width=1000, color_system=None, no_color=True, highlight=False).print(
        escape.rich_text("[bold]" + text), soft_wrap=True
    )
    assert buffer.getvalue() == "[bold]" + escape.terminal(text) + "\n"


@given(texts)
@example("a\n::error::x")
def test_stderr_line_is_one_line(text):
    line = escape.stderr_line(text)
    assert "\n" not in line and "\r" not in line and len(line.splitlines()) <= 1
    assert "\x1b" not in line


@given(texts)
def test_github_workflow_command_data_and_properties(text):
    data, prop = escape.github_data(text), escape.github_property(text)
    for value in (data, prop):
        # The runner reads commands line by line: one line, nothing it unescapes on its own.
        assert len(value.splitlines()) <= 1 and "\n" not in value and "\r" not in value
        assert not re.search(r"%(?!25|3A|2C)", value)
    assert ":" not in prop and "," not in prop
    # The runner's unescaping gives back exactly the terminal text.
    assert data.replace("%25", "%") == escape.terminal(text)
    assert prop.replace("%3A", ":").replace("%2C", ",").replace("%25", "%") == escape.terminal(text)


@given(texts)
def test_xml_text_and_attributes_parse_back(text):
    safe = escape.xml(text)
    element = ET.Element("case", name=safe)
    element.text = safe
    parsed = ET.fromstring(ET.tostring(element, encoding="unicode"))
    assert parsed.get("name") == safe and (parsed.text or "") == safe


def _render(markdown_source: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown_source)


def _text_of(rendered: str) -> str:
    """The text of HTML holding only the tags we expect (checked by the caller)."""
    return html.unescape(re.sub(r"</?(p|code|table|thead|tbody|tr|th|td)>", "", rendered)).strip()


@given(texts)
@example("x`` <img src=x onerror=alert(1)> ``")
@example("**bold** [link](http://x) &lt; <b>")
@settings(max_examples=300)
def test_markdown_renders_as_the_text_itself(text):
    rendered = _render(f"name {escape.markdown(text)} end")
    tags = set(re.findall(r"</?([a-zA-Z0-9]+)", rendered))
    assert tags <= {"p"}, rendered
    expected = " ".join(f"name {escape.terminal(text)} end".split())
    assert " ".join(_text_of(rendered).split()) == expected


@given(texts)
@example("x`` <img src=x onerror=alert(1)> ``")
@example("`")
@example(" ")
@example("a|b")
@settings(max_examples=300)
def test_markdown_code_is_one_code_span_in_one_table_cell(text):
    rendered = _render(f"| tensor | status |\n| --- | --- |\n| {escape.markdown_code(text)} | ok |\n")
    body = rendered.split("<tbody>")[1]
    cells = re.findall(r"<td>(.*?)</td>", body, re.DOTALL)
    assert len(cells) == 2 and cells[1] == "ok", rendered
    tags = set(re.findall(r"</?([a-zA-Z0-9]+)", cells[0]))
    assert tags == {"code"}, rendered
    code = html.unescape(re.fullmatch(r"<code>(.*)</code>", cells[0], re.DOTALL)[1])
    # CommonMark normalises the edges of a code span; the text within is literal.
    assert code.strip() == escape.terminal(text).strip()


@given(st.recursive(texts | st.integers() | st.floats(allow_nan=False, allow_infinity=False),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(texts, kids, max_size=3), max_leaves=8))
def test_json_round_trips_and_encodes(value):
    text = escape.json_dumps(value)
    assert json.loads(text) == value
    text.encode("utf-8")
    assert not any(hidden(c) for c in text)


def test_json_refuses_nan():
    import pytest

    with pytest.raises(ValueError):
        escape.json_dumps(float("nan"))


def test_the_attacks_of_issue_9_are_defused():
    for attack in ATTACKS:
        for line in (escape.stderr_line(attack), escape.github_data(attack), escape.terminal(attack)):
            assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    assert "<img" not in _render(escape.markdown_code("x`` <img src=x onerror=alert(1)> ``"))
    assert "<img" not in _render(escape.markdown("x`` <img src=x onerror=alert(1)> ``"))
