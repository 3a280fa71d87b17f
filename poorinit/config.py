"""Settings: command line, then environment, then config file, then built-in defaults.

A CI job sets its gate once, in ``[tool.poorinit]`` of the nearest
pyproject.toml (or a file named with ``--config``), and overrides one value per
job with ``POORINIT_<OPTION>`` or an option. Every resolved value remembers
where it came from, so ``poorinit config`` can show it and an invalid value is
reported with its source: "threshold must be a number, not 'x' (from
POORINIT_THRESHOLD)" says what to fix, a bare message in a CI log does not.

Kept free of numpy and h5py: resolving settings must not cost an analysis.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ParameterError, PoorinitError
from .params import DEFAULT_ACTIVATION_INPUTS_REGEX
from .records import record

ENV_PREFIX = "POORINIT_"
TABLE = "tool.poorinit"
PYPROJECT = "pyproject.toml"

COMMAND_LINE = "command line"
BUILT_IN = "built-in default"

FORMATS = ("table", "json", "jsonl", "junit", "github", "markdown")


class ConfigError(PoorinitError):
    """A config file cannot be read, or names a setting poorinit does not have."""


def _rule_value(name: str) -> Callable[[Any], Any]:
    """Validate one rule parameter the way the rule will, alone; return it typed."""

    def parse(value: Any) -> Any:
        from .params import RuleParams

        typed = getattr(RuleParams.from_values(**{name: value}), name)
        return list(typed) if isinstance(typed, tuple) else typed

    return parse


def _choice(name: str, choices: tuple[str, ...]) -> Callable[[Any], Any]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ParameterError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return str(value)

    return parse


def _positive(name: str, kind: type) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not number > 0 or (kind is int and not number.is_integer()) or isinstance(value, bool):
            what = "a whole number >= 1" if kind is int else "a number > 0"
            raise ParameterError(f"{name} must be {what}, not {value!r}")
        return kind(number)

    return parse


# The longest wait a setting may ask for: sleeps and timers refuse larger numbers (1e300 s overflows them).
MAX_SECONDS = 7 * 24 * 3600.0


def _seconds(name: str) -> Callable[[Any], Any]:
    """A duration: a number of seconds > 0, at most MAX_SECONDS (a week)."""
    positive = _positive(name, float)

    def parse(value: Any) -> float:
        seconds = positive(value)
        if not seconds <= MAX_SECONDS:
            raise ParameterError(f"{name} must be at most {MAX_SECONDS:g} seconds (a week), not {value!r}")
        return float(seconds)

    return parse


def _names(name: str) -> Callable[[Any], Any]:
    """Criterion names: a list, or one comma-separated string (as on the command line)."""

    def parse(value: Any) -> list[str]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
            raise ParameterError(f"{name} must be criterion names (a list, or a comma-separated string), not {value!r}")
        return [item.strip().replace("-", "_") for item in items if item.strip()]

    return parse


def _flag(name: str) -> Callable[[Any], Any]:
    """A boolean: true/false in TOML; 1/0, true/false, yes/no, on/off in the environment."""

    def parse(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ParameterError(f"{name} must be true or false (1/0, yes/no), not {value!r}")

    return parse


def _text(name: str) -> Callable[[Any], Any]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ParameterError(f"{name} must be a non-empty string, not {value!r}")
        return value.strip()

    return parse


@record
class Setting:
    """One setting: its TOML key (the option in snake case) and how to check a value."""

    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


RULE = (
    Setting("activation_inputs_regex", DEFAULT_ACTIVATION_INPUTS_REGEX, _rule_value("activation_inputs_regex"),
            "Activation inputs to compare; regexes matched from the start of the name."),
    Setting("threshold", 10.0, _rule_value("threshold"),
            "Fire when largest/smallest layer variance exceeds this at a step."),
    Setting("distribution_range", 0.001, _rule_value("distribution_range"),
            "Fire when the 5th-95th percentile spread of the gradients is below this."),
    Setting("patience", 5, _rule_value("patience"), "Steps per window when judging whether the loss decreases."),
    Setting("steps", 10, _rule_value("steps"), "How many of the first steps to analyse."),
    Setting("gradient_regex", None, _rule_value("gradient_regex"),
            "Gradients to judge (default: the 'gradients' collection)."),
    Setting("loss_regex", None, _rule_value("loss_regex"), "Losses to judge (default: the 'losses' collection)."),
    Setting("mode", "train", _rule_value("mode"), "Which steps to analyse: train, eval or predict."),
    Setting("num_classes", None, _rule_value("num_classes"),
            "Classes K of a cross-entropy loss, for the initial-loss criterion (default: the trial's "
            "num_classes attribute)."),
)
RUN = (
    Setting("format", "table", _choice("format", FORMATS), "Report format."),
    Setting("jobs", None, _positive("jobs", int), "Trials analysed in parallel (default: the CPU count)."),
    Setting("scheduler", None, _text("scheduler"),
            "Run the scan on the Dask scheduler at this address (extra 'dask')."),
    Setting("timeout", None, _seconds("timeout"),
            "With --follow: give up (exit 2) after this many seconds (default: wait until the trial is finished)."),
    Setting("poll_interval", 1.0, _seconds("poll_interval"),
            "With --follow: seconds between looks at the trial directory."),
    Setting("trial_timeout", 600.0, _seconds("trial_timeout"),
            "With scan: report a trial not analysed within this many seconds as timed out; the others go on."),
    Setting("select", None, _names("select"),
            "Only these criteria (comma-separated names, see `poorinit checks`; default: all)."),
    Setting("ignore", None, _names("ignore"), "Leave out these criteria (comma-separated names)."),
    Setting("strict", False, _flag("strict"),
            "Fail (exit 1) also when a criterion is not applicable or the verdict has a warning."),
    Setting("exit_zero", False, _flag("exit_zero"),
            "Exit 0 even when the rule fires (report only); 2 still means not analysed."),
)
SETTINGS: dict[str, Setting] = {s.name: s for s in (*RULE, *RUN)}
RULE_NAMES = tuple(s.name for s in RULE)


@record
class Resolved:
    """A setting's value and where it came from (the command line, the environment, a file, the default)."""

    value: Any
    source: str


class Settings(Mapping[str, Resolved]):
    """The effective value of every setting and where it came from."""

    def __init__(self, values: dict[str, Resolved], config_file: Path | None) -> None:
        self._values = values
        self.config_file = config_file

    def __getitem__(self, name: str) -> Resolved:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def value(self, name: str) -> Any:
        return self._values[name].value

    def rule_values(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`RuleParams.from_values`."""
        return {name: self._values[name].value for name in RULE_NAMES}

    def rule_params(self) -> Any:
        from .params import RuleParams

        return RuleParams.from_values(**self.rule_values())


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ConfigError(f"{path}: reading TOML on Python 3.10 needs the 'tomli' package") from None
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror or error})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: is not valid TOML ({error})") from None
    except RecursionError:  # the parser recurses once per level: thousands of nested arrays or tables
        reason = "values nested too deeply for the parser"
        raise ConfigError(f"{path}: is not valid TOML ({reason})") from None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing when none is close."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for ``POORINIT_*`` variables that set nothing (a typo would silently keep the default)."""
    environ = os.environ if environ is None else environ
    known = {setting.env for setting in SETTINGS.values()}
    found = []
    for variable in sorted(environ):
        if variable.startswith(ENV_PREFIX) and variable not in known:
            hint = did_you_mean(variable, known)
            found.append(f"environment variable {variable} is not a poorinit setting{hint}")
    return found


def choose_checks(select: Iterable[str] | None, ignore: Iterable[str] | None, available: Sequence[Any]) -> list[Any]:
    """The check classes that ``select`` (default: all) and ``ignore`` leave, in the rule's order.

    An unknown name is an error, not a no-op: ``--ignore saturaton`` must not
    leave the criterion in while the gate's author believes it out.
    """
    names = [check.name for check in available]
    for option, given in (("select", select), ("ignore", ignore)):
        for name in given or ():
            if name not in names:
                raise ParameterError(f"{option}: no criterion named {name!r}{did_you_mean(name, names)} "
                                     f"(known: {', '.join(names)})")
    chosen = [check for check in available if (select is None or check.name in select)
              and check.name not in (ignore or ())]
    if not chosen:
        raise ParameterError("select and ignore leave no criterion to evaluate")
    return chosen


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above ``start``."""
    for directory in (start, *start.parents):
        candidate = directory / PYPROJECT
        if candidate.is_file():
            return candidate
    return None


def read_config(path: Path, *, explicit: bool) -> dict[str, Any]:
    """The poorinit table of a config file, keys in snake case.

    A pyproject.toml (or any file with a ``[tool.poorinit]`` table) contributes
    that table; another file named with ``--config`` is a poorinit table as a
    whole. An unknown key is an error: a misspelt setting in a CI gate must not
    silently fall back to its default.
    """
    document = _load_toml(path)
    tool = document.get("tool", {})
    if isinstance(tool, dict) and "poorinit" in tool:
        table = tool["poorinit"]
    elif path.name == PYPROJECT or not explicit:
        if explicit:
            raise ConfigError(f"{path}: has no [{TABLE}] table")
        return {}
    else:
        table = document
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{TABLE}] must be a table")
    settings = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in SETTINGS:
            known = ", ".join(SETTINGS)
            raise ConfigError(f"{path}: unknown setting {key!r}{did_you_mean(name, SETTINGS)} (known: {known})")
        settings[name] = value
    return settings


def resolve(
    command_line: Mapping[str, Any] | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Settings:
    """Every setting's effective value: command line > environment > config file > default.

    ``command_line`` holds option values, None for an option not given.
    ``config_file`` replaces the search for the nearest pyproject.toml.
    """
    command_line = command_line or {}
    environ = os.environ if environ is None else environ
    if config_file is not None:
        path: Path | None = Path(config_file)
        if not path.is_file():  # type: ignore[union-attr]
            raise ConfigError(f"{path}: no such config file")
        from_file = read_config(path, explicit=True)  # type: ignore[arg-type]
    else:
        path = find_pyproject(Path(cwd) if cwd is not None else Path.cwd())
        from_file = read_config(path, explicit=False) if path else {}
    if path is not None and not from_file and config_file is None:
        path = None
    file_source = f"{path} [{TABLE}]" if path is not None and path.name == PYPROJECT else str(path)

    values: dict[str, Resolved] = {}
    for name, setting in SETTINGS.items():
        if command_line.get(name) is not None:
            raw, source = command_line[name], COMMAND_LINE
        elif environ.get(setting.env, "") != "":
            raw, source = environ[setting.env], f"environment {setting.env}"
        elif name in from_file:
            raw, source = from_file[name], file_source
        else:
            raw, source = setting.default, BUILT_IN
        try:
            value = None if raw is None else setting.parse(raw)
        except ParameterError as error:
            if source == COMMAND_LINE:
                raise
            raise ParameterError(f"{error} (from {source})") from None
        values[name] = Resolved(value, source)
    return Settings(values, path)


def render_toml(settings: Settings) -> str:
    """The effective settings as a ``[tool.poorinit]`` table, each source as a comment."""
    import json

    lines = [
        "# effective poorinit settings; precedence: command line > environment > config file > built-in default",
        f"# config file: {settings.config_file or 'none found'}",
        f"[{TABLE}]",
    ]
    for name, resolved in settings.items():
        value = resolved.value
        if value is None:
            lines.append(f"# {name} is unset  # {resolved.source}")
            continue
        text = json.dumps(value)
        lines.append(f"{name} = {text}  # {resolved.source}")
    return "\n".join(lines) + "\n"


def render_json(settings: Settings) -> str:
    import json

    document = {
        "config_file": None if settings.config_file is None else str(settings.config_file),
        "settings": {name: {"value": r.value, "source": r.source} for name, r in settings.items()},
    }
    return json.dumps(document, indent=2) + "\n"
