"""The per-layer diagnosis (``--explain``) escapes every string from a file for its medium.

Layer and weight names, the activation kind and the notes quoting them come
from step files. Whatever they hold (newlines, escape sequences, Markdown,
HTML, lone surrogates), the terminal table holds no hidden character, the
Markdown table keeps its columns and renders no markup, the plot's HTML page
holds no tag of theirs, and JSON round-trips them. The properties run over
arbitrary Unicode, as tests/test_escape.py does for the functions alone; the
last test runs the CLI on a real trial with such names.
"""

from __future__ import annotations

import html
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
from hypothesis import example, given, settings
from markdown_it import MarkdownIt

from poorinit import TrialWriter, escape
from poorinit.diagnosis import Diagnosis, LayerRow, WeightFigures
from poorinit.report.diagnosis import COLUMNS, document, markdown, renderable

from .test_errors_doc import run
from .test_escape import ATTACKS, hidden, texts


def diagnosis_of(name: str, kind: str, weight: str, note: str) -> Diagnosis:
    """One layer whose every string is ``name``/``kind``/``weight``/``note``; a finding quotes the weight."""
    figures = WeightFigures(name=weight, shape=(4, 4), std=0.1, fan_in=4, fan_out=4, gradient_std=0.01, units=4,
                            identical_units=4, note=note)
    row = LayerRow(name=name, kind=kind, std=1.0, variance_ratio=2.0, zero_share=0.5, dead_share=0.25,
                   saturated_share=None, weight=figures, mark="collapse", note=note)
    return Diagnosis(step=0, ordered_by="name", rows=(row,), findings=(f"symmetric: {weight} has 4 identical units",))


def terminal_output(diagnosis: Diagnosis) -> str:
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=120, color_system=None, force_terminal=False, legacy_windows=False).print(
        renderable(diagnosis))
    return out.getvalue()


@given(texts, texts, texts, texts)
@example(*ATTACKS[:4])
@example("a\n::error title=x::pwned", "\x1b]52;c;cHduZWQ=\x07", "\x1b[2J\x1b[H", "\u202e")
@settings(max_examples=150, deadline=None)
def test_the_terminal_table_shows_no_hidden_character(name: str, kind: str, weight: str, note: str) -> None:
    shown = terminal_output(diagnosis_of(name, kind, weight, note))
    assert not any(hidden(c) for c in shown.replace("\n", "")), repr(shown)
    # Lines are the table's own: no line starts with what a name held after a newline.
    assert not any(line.startswith("::") for line in shown.splitlines())


def render_markdown(source: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(source)


@given(texts, texts, texts, texts)
@example("x`` <img src=x onerror=alert(1)> ``", "a|b", "[link](http://x)", "**bold** &lt; <b>")
@settings(max_examples=150, deadline=None)
def test_the_markdown_table_keeps_its_columns_and_renders_no_markup(name: str, kind: str, weight: str,
                                                                    note: str) -> None:
    rendered = render_markdown("\n".join(markdown(diagnosis_of(name, kind, weight, note))) + "\n")
    tags = set(re.findall(r"</?([a-zA-Z0-9]+)", rendered))
    # The table, the bold heading and mark, the list of notes: nothing a name could add (img, a, em, code...).
    assert tags <= {"p", "strong", "table", "thead", "tbody", "tr", "th", "td", "ul", "li"}, rendered
    body = rendered.split("<tbody>")[1]
    assert len(re.findall(r"<td>", body)) == len(COLUMNS), rendered
    first = html.unescape(re.findall(r"<td>(.*?)</td>", body, re.DOTALL)[0])
    assert " ".join(first.split()) == " ".join(escape.terminal(name).split())


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@given(texts)
@example("<img src=x onerror=alert(1)>")
@example("</td><script>alert(1)</script>")
@example("&amp; \" ' \x1b[2J")
@settings(max_examples=300)
def test_html_text_is_one_text_node(text: str) -> None:
    parser = _Tags()
    parser.feed(f"<td>{escape.html(text)}</td>")
    parser.close()
    assert parser.tags == ["td"]
    assert "".join(parser.text) == escape.terminal(text)


@given(texts, texts, texts, texts)
@settings(max_examples=100, deadline=None)
def test_json_round_trips_every_name(name: str, kind: str, weight: str, note: str) -> None:
    text = escape.json_dumps(document(diagnosis_of(name, kind, weight, note)), indent=2)
    assert not any(hidden(c) for c in text.replace("\n", ""))
    layer = json.loads(text)["layers"][0]
    assert (layer["name"], layer["kind"], layer["weight"]["name"], layer["note"]) == (name, kind, weight, note)


def test_explain_on_a_trial_with_hostile_names(tmp_path) -> None:
    """A real trial whose layer names and activation kind hold newlines, escapes and HTML."""
    # The rule's regexes match from the start of a name (`.*relu_input`): the attack follows the match.
    layer = "net.0.relu_input\n::error title=x::pwned\x1b]52;c;cHduZWQ=\x07<img src=x onerror=alert(1)>"
    rng = np.random.default_rng(0)
    with TrialWriter(tmp_path, fsync=False) as writer:
        for step in range(6):
            writer.write_step(
                step,
                activation_inputs={layer: rng.normal(0, 1, (16, 16)), "net.2.relu_input": rng.normal(0, 1, (16, 16))},
                gradients={"gradient/w": rng.normal(0, 0.05, (16, 16))},
                weights={"net.0\x1b[2J.weight": rng.normal(0, 0.2, (16, 16))},
                losses={"loss": 2.0 - 0.1 * step},
                attrs={layer: {"activation": "relu\n::warning::x\x1b[31m"}},
            )
    table = run("analyze", tmp_path, "--explain", "--steps", "6")
    assert table.returncode in (0, 1), table.stderr
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout
    assert not any(line.lstrip("│ ").startswith("::") for line in table.stdout.splitlines()), table.stdout
    report = run("analyze", tmp_path, "--explain", "--steps", "6", "--format", "markdown")
    rendered = render_markdown(report.stdout)
    assert "<img" not in rendered and "\x1b" not in report.stdout
    as_json = run("analyze", tmp_path, "--explain", "--steps", "6", "--format", "json")
    names = [entry["name"] for entry in json.loads(as_json.stdout)["diagnosis"]["layers"]]
    assert layer in names
