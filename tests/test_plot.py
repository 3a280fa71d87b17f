"""`poorinit plot`: every sample trial renders, as an image of the right size, with no empty panel."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from poorinit import TrialWriter, analyze

pytest.importorskip("matplotlib", reason="the plot tests need the extra 'plot' (in 'test')")
import matplotlib.image  # noqa: E402

from poorinit.plot import DPI, PANELS, SIZE_INCHES, empty_panels, figure, render  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "sample_trials"
TRIALS = sorted(p.name for p in SAMPLES.iterdir() if p.is_dir())
WIDTH, HEIGHT = int(SIZE_INCHES[0] * DPI), int(SIZE_INCHES[1] * DPI)


def poorinit(*args: object, cwd: object = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["poorinit", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("trial", TRIALS)
def test_every_sample_trial_renders_a_png_of_the_right_size_with_no_empty_panel(trial: str) -> None:
    import io

    import matplotlib.pyplot as plt

    verdict = analyze(SAMPLES / trial, explain=True)
    fig = figure(verdict)
    try:
        assert len(fig.axes) == len(PANELS)
        assert empty_panels(fig) == []
    finally:
        plt.close(fig)
    image = matplotlib.image.imread(io.BytesIO(render(verdict, f"{trial}.png")), format="png")
    assert image.shape[:2] == (HEIGHT, WIDTH)
    assert image.std() > 0  # not a blank canvas


@pytest.mark.parametrize("trial, code", [("moon-he", 0), ("probe-large-tanh", 1)])
def test_the_command_writes_the_file_and_exits_as_analyze(trial: str, code: int, tmp_path: Path) -> None:
    out = tmp_path / f"{trial}.png"
    result = poorinit("plot", SAMPLES / trial, "-o", out)
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"poorinit: {'fired' if code else 'passed'}: plot written to {out}\n"
    assert matplotlib.image.imread(out).shape[:2] == (HEIGHT, WIDTH)


def test_a_trial_without_a_loss_has_an_empty_loss_panel(tmp_path: Path) -> None:
    """The emptiness check can fail: with no loss recorded, the loss panel only says why."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    with TrialWriter(tmp_path / "t") as writer:
        for step in range(3):
            writer.write_step(
                step,
                activation_inputs={f"net.{i}.relu_input": rng.normal(size=(16, 8)) for i in (1, 3)},
                gradients={"gradient/net.0.weight": rng.normal(size=(8, 8))},
                weights={"net.0.weight": rng.normal(size=(8, 8)), "net.2.weight": rng.normal(size=(8, 8))},
            )
    fig = figure(analyze(tmp_path / "t", explain=True))
    try:
        assert empty_panels(fig) == ["loss"]
        texts = [t.get_text() for t in fig.axes[2].texts]
        assert any(t.startswith("not evaluated") for t in texts)
    finally:
        plt.close(fig)


def test_svg_is_well_formed_and_html_holds_plot_and_table(tmp_path: Path) -> None:
    verdict = analyze(SAMPLES / "moon-zeros", explain=True)
    svg = render(verdict, tmp_path / "p.svg")
    assert ET.fromstring(svg).tag.endswith("svg")
    page = render(verdict, tmp_path / "p.html").decode("utf-8")
    assert "<svg" in page and "<table>" in page
    assert "symmetric: all 64 units of net.2 are identical" in page
    assert "remedy: break the symmetry" in page


def test_markdown_links_or_embeds_the_png(tmp_path: Path) -> None:
    linked = poorinit("plot", SAMPLES / "probe-tiny-relu", "-o", "report.png", "--format", "markdown", cwd=tmp_path)
    assert linked.returncode == 1
    assert linked.stdout.rstrip().endswith("(report.png)")
    assert "collapses here" in linked.stdout  # the diagnosis table is part of the comment
    embedded = poorinit("plot", SAMPLES / "probe-tiny-relu", "-o", "report.png", "--format", "markdown", "--embed",
                        cwd=tmp_path)
    assert "](data:image/png;base64," in embedded.stdout


def test_without_matplotlib_the_error_names_the_extra(tmp_path: Path) -> None:
    """matplotlib hidden from the import system, as on a machine without the extra."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from poorinit.cli import main\n"
        f"sys.exit(main(['plot', {str(SAMPLES / 'moon-he')!r}, '-o', 'x.png']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "poorinit: error: poorinit plot needs matplotlib, which is not installed: pip install 'poorinit[plot]'"
    )
    assert not (tmp_path / "x.png").exists()


def test_the_python_api_refuses_an_unknown_suffix(tmp_path: Path) -> None:
    from poorinit.errors import PoorinitError

    with pytest.raises(PoorinitError, match=r"written as \.png, \.svg or \.html, not '\.gif'"):
        render(analyze(SAMPLES / "moon-he", explain=True), tmp_path / "p.gif")
