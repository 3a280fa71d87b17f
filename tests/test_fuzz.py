"""Fuzzing: damaged or grown step files give a clear answer, never a wrong verdict.

Hypothesis writes a valid trial, damages one step file (truncates it, flips
bytes, drops a required attribute, rewrites a tensor with a dtype the format
does not hold) or grows it (groups that hard-link the next one twice, maybe
closing a cycle; groups nested up to twice the depth budget; a tensor
rewritten with other chunks, compressed or not) and runs ``poorinit
analyze`` in a real subprocess. The answer
must be exit 0, 1 or 2 without a traceback; exit 2 must be one line naming the
file; and exit 0 or 1 must be exactly the verdict of the undamaged trial, so
damage that reached data the rule needed can never pass as a verdict.

CI runs a fixed set of examples; ``POORINIT_FUZZ_EXAMPLES=2000`` runs that
many fresh random ones (docs/errors.md).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poorinit import PoorinitError, TrialWriter, analyze
from poorinit.format import REQUIRED_ATTRS, step_file_name
from poorinit.report.json import document
from poorinit.trial import MAX_DEPTH

EXAMPLES = int(os.environ.get("POORINIT_FUZZ_EXAMPLES", "40"))
# The bounded CI run is the same every time; a long run explores afresh.
DERANDOMIZE = "POORINIT_FUZZ_EXAMPLES" not in os.environ

# Shapes on both sides of the writer's 8 KiB compact limit, so damage hits
# compact data (in the object header) and fletcher32 chunks alike.
SHAPES = [(3,), (8, 4), (16, 40), (40, 64)]
SCALES = {"healthy": (1.0, 0.05), "vanishing": (0.1, 1e-6), "exploding": (10.0, 5.0)}
BAD_DTYPES = {
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
    "bytes": "S8",
    "complex": np.complex64,
    "compound": [("a", "f4"), ("b", "f4")],
}


@st.composite
def trials(draw: st.DrawFn) -> dict:
    return {
        "layers": draw(st.integers(2, 3)),
        "steps": draw(st.integers(3, 5)),
        "dtype": draw(st.sampled_from(["f2", "f4", "f8"])),
        "shape": draw(st.sampled_from(SHAPES)),
        "scale": draw(st.sampled_from(sorted(SCALES))),
        "nan": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


damages = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(
        st.just("flip"),
        st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4),
    ),
    st.tuples(st.just("drop"), st.sampled_from(REQUIRED_ATTRS)),
    st.tuples(
        st.just("dtype"),
        st.sampled_from(sorted(BAD_DTYPES)),
        st.sampled_from(["net.0.relu_input", "gradient/net.1.weight", "loss", "net.0.weight"]),
    ),
    # Growth: what is added is selected by no criterion, so the verdict must
    # not change; a cycle or a depth past the budget must be refused.
    st.tuples(st.just("fan"), st.integers(1, 40), st.booleans()),
    st.tuples(st.just("nest"), st.integers(1, 2 * MAX_DEPTH)),
    st.tuples(
        st.just("rechunk"),
        st.sampled_from(["net.0.relu_input", "gradient/net.1.weight", "net.1.relu_input"]),
        st.integers(1, 64),
        st.booleans(),
    ),
)


def write(path: Path, spec: dict) -> None:
    """``steps`` analysed steps plus one beyond them, which the rule never opens."""
    rng = np.random.default_rng(spec["seed"])
    activation_scale, gradient_scale = SCALES[spec["scale"]]
    writer = TrialWriter(path, fsync=False)
    for step in range(spec["steps"] + 1):
        activations = {
            f"net.{i}.relu_input": (rng.normal(0, activation_scale**i, spec["shape"])).astype(spec["dtype"])
            for i in range(spec["layers"])
        }
        gradients = {
            f"gradient/net.{i}.weight": rng.normal(0, gradient_scale, spec["shape"]).astype(spec["dtype"])
            for i in range(spec["layers"])
        }
        if spec["nan"] and step == 1:
            activations["net.0.relu_input"].flat[0] = np.nan
        writer.write_step(
            step,
            activation_inputs=activations,
            gradients=gradients,
            weights={"net.0.weight": rng.normal(0, 0.1, spec["shape"])},
            losses={"loss": 2.0 - 0.1 * step * (spec["scale"] == "healthy") + rng.normal(0, 0.01)},
        )
    writer.close()


def damage(path: Path, how: tuple) -> None:
    kind = how[0]
    if kind == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: int(how[1] * len(data))])
    elif kind == "flip":
        data = bytearray(path.read_bytes())
        for where, mask in how[1]:
            data[int(where * len(data))] ^= mask
        path.write_bytes(bytes(data))
    elif kind == "drop":
        with h5py.File(path, "a", libver="v110") as f:
            del f.attrs[how[1]]
    elif kind == "fan":
        # Groups each hard-linking the next twice: 2^depth paths to one leaf.
        _, depth, cycle = how
        with h5py.File(path, "a", libver="v110") as f:
            groups = [f["tensors"].create_group(f"grown{i}") for i in range(depth + 1)]
            for upper, lower in zip(groups, groups[1:], strict=False):
                upper["left"] = lower
                upper["right"] = lower
            groups[-1].create_dataset("pad", data=np.zeros(3))
            if cycle:
                groups[-1]["back"] = groups[0]
    elif kind == "nest":
        with h5py.File(path, "a", libver="v110") as f:
            group = f["tensors"]
            for _ in range(how[1]):
                group = group.create_group("n")
            group.create_dataset("pad", data=np.zeros(3))
    elif kind == "rechunk":
        # The same values in other chunks, maybe gzip-compressed: the same verdict.
        _, name, chunk, gzip = how
        with h5py.File(path, "a", libver="v110") as f:
            old = f["tensors"][name]
            data, collections = old[()], old.attrs.get("collections")
            if data.ndim == 0:
                return
            del f["tensors"][name]
            chunks = (min(chunk, data.shape[0]), *data.shape[1:])
            new = f["tensors"].create_dataset(name, data=data, chunks=chunks, fletcher32=True,
                                              compression="gzip" if gzip else None)
            new.attrs["collections"] = collections
    else:
        _, dtype, name = how
        with h5py.File(path, "a", libver="v110") as f:
            old = f["tensors"][name]
            shape, collections = old.shape, old.attrs.get("collections")
            del f["tensors"][name]
            new = f["tensors"].create_dataset(name, data=np.zeros(shape, dtype=BAD_DTYPES[dtype]))
            new.attrs["collections"] = collections


def outcome(path: Path, steps: int) -> str:
    """The undamaged verdict, as the JSON report's status and criteria, or the error."""
    try:
        verdict = analyze(path, steps=steps, patience=2)
    except PoorinitError as error:
        return f"error: {error}"
    return key(document(verdict))


def key(report: dict) -> str:
    return json.dumps([report["status"], report["criteria"]], sort_keys=True)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(spec=trials(), how=damages, target=st.integers(0, 5))
def test_damage_gives_a_clear_answer_never_a_wrong_verdict(tmp_path_factory, spec, how, target):
    path = tmp_path_factory.mktemp("fuzz") / "trial"
    write(path, spec)
    expected = outcome(path, spec["steps"])
    victim = path / step_file_name(min(target, spec["steps"]))
    damage(victim, how)

    result = subprocess.run(
        ["poorinit", "analyze", str(path), "--steps", str(spec["steps"]), "--patience", "2", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        # The long run's own variable is no poorinit setting: the CLI would warn about it.
        env={k: v for k, v in os.environ.items() if k != "POORINIT_FUZZ_EXAMPLES"},
    )
    assert result.returncode in (0, 1, 2), (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    if result.returncode == 2:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("poorinit: error: "), result.stderr
        assert result.stdout == ""
        assert str(path) in lines[0]
    else:
        # Exit 0 or 1 only when the damage left everything the rule read as it was.
        assert not expected.startswith("error: "), (expected, result.stdout)
        assert key(json.loads(result.stdout)) == expected, (how, victim.name, result.stdout)
