"""``poorinit checks NAME``: one criterion explained, as ``ruff rule NAME`` does.

What it measures, its parameters with their defaults, when it fires, what to
do when it fires, and where docs/rule.md decides its edge cases. The texts of
the built-in criteria live here, beside the command that prints them; a
plugin check is explained from its own class attributes (``description``,
``parameters``, ``fires_when``, ``remedy``, ``url``) and its docstring, so a
third-party criterion is never without an entry.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config import SETTINGS
from .errors import PoorinitError

RULE_DOC = "docs/rule.md"


@dataclass(frozen=True)
class Explanation:
    name: str
    title: str
    measures: str
    parameters: tuple[str, ...]
    fires_when: str
    remedy: str
    link: str
    plugin: bool = False

    def parameter_lines(self) -> list[str]:
        lines = []
        for name in self.parameters:
            setting = SETTINGS.get(name)
            if setting is None:
                lines.append(f"{name}")
                continue
            default = "unset" if setting.default is None else repr(setting.default)
            lines.append(f"{name} (default {default}; {setting.option}, {setting.env}): {setting.help}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "measures": self.measures,
            "parameters": {
                name: (None if name not in SETTINGS else SETTINGS[name].default) for name in self.parameters
            },
            "fires_when": self.fires_when,
            "remedy": self.remedy,
            "link": self.link,
            "plugin": self.plugin,
        }

    def render(self, width: int = 88) -> str:
        import textwrap

        def block(text: str, hanging: str = "  ") -> list[str]:
            return textwrap.wrap(text, width, initial_indent="  ", subsequent_indent=hanging) or ["  -"]

        parameters = self.parameter_lines() or ["none"]
        lines = [
            f"{self.name} ({self.title})" + (" [plugin]" if self.plugin else ""),
            "",
            "What it measures:",
            *block(self.measures),
            "",
            "Parameters (with steps and mode, which choose the analysed steps):",
            *(wrapped for line in parameters for wrapped in block(line, hanging="    ")),
            "",
            "When it fires:",
            *block(self.fires_when),
            "",
            "What to do when it fires:",
            *block(self.remedy),
            "",
            f"Edge cases and why: {self.link}",
        ]
        return "\n".join(lines) + "\n"


BUILTIN: dict[str, Explanation] = {
    "activation_variance": Explanation(
        "activation_variance",
        "activation variance",
        "At each analysed step, the population variance of every activation input selected by "
        "activation_inputs_regex (one per layer), and the ratio of the largest to the smallest.",
        ("activation_inputs_regex", "threshold"),
        "The ratio exceeds threshold at any analysed step; also when a layer is constant (infinite ratio) "
        "or an activation input holds NaN or Inf. Not applicable with fewer than two matched layers.",
        "Variance shrinking with depth means too small a start, growing means too large: use an initialiser "
        "scaled to the layer's fan-in and activation (He/Kaiming for ReLU, Xavier/Glorot for tanh and sigmoid), "
        "or add normalisation layers.",
        f"{RULE_DOC}#criterion-1-activation-variance",
    ),
    "gradient_spread": Explanation(
        "gradient_spread",
        "gradient spread",
        "At each analysed step, the 5th-95th percentile spread of all values of all selected gradients "
        "(the 'gradients' collection, or gradient_regex), pooled over tensors and workers.",
        ("distribution_range", "gradient_regex"),
        "The smallest spread over the analysed steps is below distribution_range; also when a gradient holds "
        "NaN or Inf. Not applicable with fewer than 20 gradient values at every step.",
        "Vanishing gradients: weights started too small or at zero (a symmetric start), or units saturated. "
        "Use a fan-in-scaled random initialiser; if the model's gradients are legitimately tiny, lower "
        "distribution_range.",
        f"{RULE_DOC}#criterion-2-gradient-spread",
    ),
    "loss_decrease": Explanation(
        "loss_decrease",
        "loss decrease",
        "The mean loss of the last patience analysed steps against the mean of the patience steps before "
        "them, as a relative change (-0.25: the loss fell by a quarter).",
        ("patience", "loss_regex"),
        "The later mean is not lower than the earlier one (relative change >= 0), or a loss is NaN or Inf. "
        "Not applicable with fewer than patience + 1 losses.",
        "The network does not learn from its start: check the initialisation first (a symmetric or "
        "saturated start cannot learn), then the learning rate; select one loss with loss_regex when a "
        "part of the loss may legitimately rise.",
        f"{RULE_DOC}#criterion-3-loss-decrease",
    ),
    "saturation": Explanation(
        "saturation",
        "activation saturation",
        "For each input of a bounded activation (names ending in tanh_input, sigmoid_input, hardtanh_input, "
        "hardsigmoid_input or softsign_input), the share of values where the activation's slope has fallen "
        "below a tenth of its peak (|x| > 1.82 for tanh, 3.64 for sigmoid); for each softmax input "
        "(softmax_input: attention logits, recorded with the softmax axis last), the share of rows whose "
        "largest probability exceeds 0.974, where the softmax's slope is under a tenth of its peak.",
        (),
        "More than half of one layer's inputs are saturated at an analysed step. Not applicable when no "
        "bounded activation was recorded (ReLU networks).",
        "Too large a start for tanh/sigmoid units: use Xavier/Glorot initialisation (gain 5/3 for tanh) or "
        "smaller weights, so the pre-activations stay in the activation's steep middle. A saturated "
        "softmax (attention frozen on one position): initialise the query and key projections with "
        "xavier_uniform_ or normal_(std=0.02).",
        f"{RULE_DOC}#criterion-4-poorinits-addition-activation-saturation",
    ),
}


def explain(check: type) -> Explanation:
    """The explanation of a check class: the built-in text, or the plugin's own attributes."""
    name = check.name  # type: ignore[attr-defined]
    if name in BUILTIN and check.__module__.startswith("poorinit."):
        return BUILTIN[name]
    doc = inspect.getdoc(check) or ""
    return Explanation(
        name,
        getattr(check, "title", name),
        getattr(check, "description", "") or doc.split("\n\n")[0] or "(the check does not say)",
        tuple(getattr(check, "parameters", ())),
        getattr(check, "fires_when", "") or "(the check does not say; see its documentation)",
        getattr(check, "remedy", "") or "(the check does not say)",
        getattr(check, "url", "") or f"{RULE_DOC}#checks-are-plugins",
        plugin=not check.__module__.startswith("poorinit."),
    )


def suggestion(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def find_check(name: str, checks: Sequence[type]) -> type:
    by_name = {c.name: c for c in checks}  # type: ignore[attr-defined]
    key = name.strip().replace("-", "_")
    if key in by_name:
        return by_name[key]
    by_title = {c.title: c for c in checks}  # type: ignore[attr-defined]
    if name.strip() in by_title:
        return by_title[name.strip()]
    raise PoorinitError(f"no criterion named {name!r}{suggestion(key, list(by_name))}; "
                        f"known: {', '.join(by_name)} (poorinit checks lists them)")
