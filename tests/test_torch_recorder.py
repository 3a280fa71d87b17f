"""poorinit.torch.Recorder: names, collections, timing of snapshots, hooks, markers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import poorinit  # noqa: E402
from poorinit import format as fmt  # noqa: E402
from poorinit.torch import Recorder, RecordingError  # noqa: E402
from poorinit.trial import Trial  # noqa: E402
from poorinit.writer import TrialWriter  # noqa: E402


class Net(nn.Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=inplace), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def read_step(trial: Path, step: int) -> dict[str, tuple[np.ndarray, tuple[str, ...]]]:
    """name -> (values, collections) of one step file, through poorinit's reader."""
    (step_file,) = Trial(trial).step_files(step)
    with Trial(trial).open(step_file) as reader:
        found = {}
        for name, collections in reader.tensor_names():
            tensor = reader.tensor(name)
            values = np.concatenate(list(tensor.blocks())).reshape(tensor.shape)
            found[name] = (values, collections)
        return found


def train(model: nn.Module, rec: Recorder, steps: int, lr: float = 0.1, dtype: torch.dtype = torch.float32) -> None:
    optimiser = torch.optim.SGD(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        with rec.step():
            x = torch.randn(16, 4, generator=generator).to(dtype)
            loss = model(x).float().pow(2).mean()
            optimiser.zero_grad()
            loss.backward()
            rec.loss(loss)
            optimiser.step()


def step_numbers(trial: Path) -> list[int]:
    return Trial(trial).steps()


def test_names_and_collections(tmp_path):
    model = Net()
    with Recorder(model, tmp_path / "t", steps=2) as rec:
        train(model, rec, 2)
    tensors = read_step(tmp_path / "t", 0)
    collections = {name: c for name, (_, c) in tensors.items()}
    assert collections["net.1.relu_input"] == (fmt.ACTIVATION_INPUTS,)
    assert collections["net.3.tanh_input"] == (fmt.ACTIVATION_INPUTS,)
    assert collections["loss"] == (fmt.LOSSES,)
    for name, _ in model.named_parameters():
        assert collections[name] == (fmt.WEIGHTS,)
        assert collections[f"gradient/{name}"] == (fmt.GRADIENTS,)
    assert len(collections) == 2 + 1 + 2 * 6
    assert tensors["net.1.relu_input"][0].shape == (16, 8)
    assert tensors["net.0.weight"][0].shape == (8, 4)


def test_records_the_steps_asked_and_marks_finished(tmp_path):
    model = Net()
    with Recorder(model, tmp_path / "count", steps=3) as rec:
        train(model, rec, 5)
    assert step_numbers(tmp_path / "count") == [0, 1, 2]
    assert Trial(tmp_path / "count").finished
    with Recorder(model, tmp_path / "chosen", steps=[1, 4]) as rec:
        train(model, rec, 5)
    assert step_numbers(tmp_path / "chosen") == [1, 4]


def test_explicit_step_numbers_continue_from_the_last(tmp_path):
    model = Net()
    with Recorder(model, tmp_path / "t", steps=range(10, 12)) as rec:
        loss = model(torch.randn(2, 4)).sum()
        for number in (10, None):
            with rec.step(number):
                model.zero_grad()
                model(torch.randn(2, 4)).sum().backward()
                rec.loss(loss)
    assert step_numbers(tmp_path / "t") == [10, 11]


def hooks_and_modes(model: nn.Module) -> tuple[int, int]:
    """(forward hooks on all modules, torch function modes active): what the recorder adds."""
    hooks = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())
    return hooks, torch._C._len_torch_function_stack()


def test_unrecorded_steps_run_without_hooks(tmp_path):
    model = Net()
    seen = []
    with Recorder(model, tmp_path / "t", steps=[1]) as rec:
        for _ in range(3):
            with rec.step():
                seen.append(hooks_and_modes(model))
                model.zero_grad()
                loss = model(torch.randn(2, 4)).sum()
                loss.backward()
                rec.loss(loss)
            assert hooks_and_modes(model) == (0, 0)
    modules = len(list(model.modules()))
    # A recorded step: a pre- and a post-hook per module (which module runs), one
    # pre-hook per activation module (its input), one function mode (F.relu & co)
    # and a pre- and a post-hook on the model that enter and leave it around each forward.
    assert seen == [(0, 0), (2 * modules + 2 + 2, 1), (0, 0)]


def test_hooks_are_kept_from_one_recorded_step_to_the_next_and_renewed_for_new_modules(tmp_path):
    """Consecutive recorded steps share their hooks; a module added between them is hooked and recorded
    too; after the last recorded step, and between steps, nothing of the recorder runs."""
    model = Net()
    between, hooks = [], []
    with Recorder(model, tmp_path / "t", steps=3) as rec:
        for step in range(4):
            if step == 2:
                model.net.append(nn.ReLU())  # the model grows between two recorded steps
            with rec.step():
                hooks.append(hooks_and_modes(model)[0])
                model.zero_grad()
                loss = model(torch.randn(2, 4)).sum()
                loss.backward()
                rec.loss(loss)
            with torch.no_grad():  # validation between steps: no activation recorded, no stack left behind
                model(torch.randn(2, 4))
            between.append((hooks_and_modes(model)[1], rec._tracker is not None and rec._tracker.stack))
    modules = len(list(Net().modules()))
    assert hooks == [2 * modules + 2 + 2, 2 * modules + 2 + 2, 2 * (modules + 1) + 3 + 2, 0]
    assert hooks_and_modes(model) == (0, 0) and all(modes == 0 and not stack for modes, stack in between)
    assert "net.5.relu_input" in read_step(tmp_path / "t", 2) and "net.5.relu_input" not in read_step(tmp_path / "t", 1)
    inputs = [sorted(n for n in read_step(tmp_path / "t", step) if n.endswith("_input")) for step in (0, 1)]
    assert inputs[0] == inputs[1] == ["net.1.relu_input", "net.3.tanh_input"]


def test_weights_before_the_update_and_gradients_after_backward(tmp_path):
    model = Net()
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    grads = {}
    with Recorder(model, tmp_path / "t", steps=2) as rec:
        optimiser = torch.optim.SGD(model.parameters(), lr=1.0)
        for step in range(2):
            with rec.step():
                loss = model(torch.randn(8, 4)).pow(2).mean()
                optimiser.zero_grad()
                loss.backward()
                rec.loss(loss)
                grads[step] = {name: p.grad.clone() for name, p in model.named_parameters()}
                optimiser.step()
    step0, step1 = read_step(tmp_path / "t", 0), read_step(tmp_path / "t", 1)
    for name in initial:
        np.testing.assert_array_equal(step0[name][0], initial[name].numpy())
        np.testing.assert_array_equal(step0[f"gradient/{name}"][0], grads[0][name].numpy())
        # Weights are written once, at the first recorded step; gradients at every step.
        assert name not in step1
        np.testing.assert_array_equal(step1[f"gradient/{name}"][0], grads[1][name].numpy())


def test_weights_are_written_at_the_first_recorded_step_as_its_forward_saw_them(tmp_path):
    model = Net()
    optimiser = torch.optim.SGD(model.parameters(), lr=1.0)
    seen = {}
    with Recorder(model, tmp_path / "t", steps=[2, 4]) as rec:
        for step in range(5):
            with rec.step():
                if step == 2:
                    seen = {name: p.detach().clone() for name, p in model.named_parameters()}
                loss = model(torch.randn(8, 4)).pow(2).mean()
                optimiser.zero_grad()
                loss.backward()
                rec.loss(loss)
                optimiser.step()
    first, later = read_step(tmp_path / "t", 2), read_step(tmp_path / "t", 4)
    for name, value in seen.items():
        np.testing.assert_array_equal(first[name][0], value.numpy())
        assert name not in later and f"gradient/{name}" in later
    # The owner's class comes with the values; at later steps the gradient's would say nothing new.
    trial = Trial(tmp_path / "t")
    for step, expected in ((2, {"module": "Linear"}), (4, {})):
        with trial.open(trial.step_files(step)[0]) as reader:
            assert dict(reader.tensor("gradient/net.0.weight").attrs) == expected
            if expected:
                assert dict(reader.tensor("net.0.weight").attrs) == expected


def test_a_lazy_parameter_is_written_at_the_first_step_where_it_has_values(tmp_path):
    model = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, 1))
    with Recorder(model, tmp_path / "t", steps=2) as rec:
        train(model, rec, 2)
    first, second = read_step(tmp_path / "t", 0), read_step(tmp_path / "t", 1)
    assert "2.weight" in first and "0.weight" not in first  # no values before the first forward
    assert "0.weight" in second and "2.weight" not in second


def test_bfloat16_is_stored_as_float32(tmp_path):
    model = Net().to(torch.bfloat16)
    with Recorder(model, tmp_path / "t", steps=1) as rec:
        train(model, rec, 1, dtype=torch.bfloat16)
    tensors = read_step(tmp_path / "t", 0)
    for name in ("net.1.relu_input", "net.0.weight", "gradient/net.0.weight"):
        assert tensors[name][0].dtype == np.float32
    assert tensors["loss"][0].dtype == np.float64


def test_float16_and_float64_are_kept(tmp_path):
    for dtype, expected in ((torch.float16, np.float16), (torch.float64, np.float64)):
        model = Net().to(dtype)
        with Recorder(model, tmp_path / str(dtype), steps=1) as rec:
            train(model, rec, 1, dtype=dtype)
        assert read_step(tmp_path / str(dtype), 0)["net.1.relu_input"][0].dtype == expected


def test_in_place_activation_input_is_recorded_before_it_is_overwritten(tmp_path):
    model = Net(inplace=True)
    with Recorder(model, tmp_path / "t", steps=1) as rec:
        train(model, rec, 1)
    assert (read_step(tmp_path / "t", 0)["net.1.relu_input"][0] < 0).any()


def test_an_exception_leaves_the_trial_unfinished_and_the_step_unwritten(tmp_path):
    model = Net()
    with pytest.raises(RuntimeError, match="boom"), Recorder(model, tmp_path / "t", steps=5) as rec:
        train(model, rec, 2)
        with rec.step():
            model(torch.randn(2, 4))
            raise RuntimeError("boom")
    assert step_numbers(tmp_path / "t") == [0, 1]
    assert not Trial(tmp_path / "t").finished
    assert hooks_and_modes(model) == (0, 0)


def test_a_recorded_step_needs_a_loss_and_gradients(tmp_path):
    model = Net()
    with (
        pytest.raises(RecordingError, match=r"step 0: no loss was recorded; call rec.loss"),
        Recorder(model, tmp_path / "noloss") as rec,
        rec.step(),
    ):
        model(torch.randn(2, 4)).sum().backward()
    assert not (tmp_path / "noloss" / fmt.worker_finished_marker(0)).exists()
    with (
        pytest.raises(RecordingError, match=r"no parameter has a gradient; call loss.backward"),
        Recorder(Net(), tmp_path / "nograd") as rec,
        rec.step(),
    ):
        rec.loss(1.0)


def test_calls_outside_a_step_are_errors(tmp_path):
    rec = Recorder(Net(), tmp_path / "t")
    with pytest.raises(RecordingError, match="inside a rec.step"):
        rec.loss(1.0)
    with pytest.raises(RecordingError, match="inside a rec.step"):
        rec.activation_input("a", torch.ones(2))
    with pytest.raises(RecordingError, match="one value"), rec.step():
        rec.loss(torch.ones(3))


def test_functional_activations_are_recorded_by_hand(tmp_path):
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.fc1(x)
            rec.activation_input("block1.act", x)
            x = F.relu(x)
            rec.activation_input("block2", x, kind="gelu")
            return self.fc2(F.gelu(x))

    model = Functional()
    with Recorder(model, tmp_path / "t", steps=[0]) as rec:
        train(model, rec, 2)
    names = set(read_step(tmp_path / "t", 0))
    assert {"block1.act.relu_input", "block2.gelu_input"} <= names
    assert step_numbers(tmp_path / "t") == [0]


def test_a_reused_module_is_recorded_once_per_call(tmp_path):
    class Reused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))

    model = Reused()
    with Recorder(model, tmp_path / "t", steps=1) as rec:
        train(model, rec, 1)
    names = {n for n in read_step(tmp_path / "t", 0) if n.endswith("_input")}
    assert names == {"act.call0.relu_input", "act.call1.relu_input"}


def test_a_root_activation_and_subclasses_are_named_by_kind(tmp_path):
    class ScaledReLU(nn.ReLU):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x * self.scale)

    model = ScaledReLU()
    with Recorder(model, tmp_path / "t", steps=1) as rec, rec.step():
        loss = model(torch.randn(3, 4)).sum()
        loss.backward()
        rec.loss(loss)
    assert "relu_input" in read_step(tmp_path / "t", 0)


def test_rows_and_stride_make_smaller_trials(tmp_path):
    model = Net()
    initial = model.net[0].weight.detach().clone().reshape(-1)
    with Recorder(model, tmp_path / "t", steps=1, activation_rows=5, parameter_stride=3) as rec:
        train(model, rec, 1)
    tensors = read_step(tmp_path / "t", 0)
    assert tensors["net.1.relu_input"][0].shape == (5, 8)
    assert tensors["gradient/net.0.weight"][0].shape == (11,)  # 32 values, every third
    np.testing.assert_array_equal(tensors["net.0.weight"][0], initial[::3].numpy())


def test_refuses_to_mix_two_runs_in_one_trial(tmp_path):
    model = Net()
    with Recorder(model, tmp_path / "t", steps=1) as rec:
        train(model, rec, 1)
    with pytest.raises(FileExistsError, match="already holds step files of worker 0"):
        Recorder(model, tmp_path / "t")


def test_another_worker_may_record_beside_steps_already_written(tmp_path):
    """Data-parallel ranks share the directory: rank 1 starting after rank 0 wrote a step is no mixing."""
    model = Net()
    with Recorder(model, tmp_path / "t", steps=1, worker=0) as rec:
        train(model, rec, 1)
    with Recorder(model, tmp_path / "t", steps=1, worker=1) as rec:
        train(model, rec, 1)
    assert sorted(p.name for p in (tmp_path / "t").glob("*.h5")) == [
        fmt.step_file_name(0, "train", 0), fmt.step_file_name(0, "train", 1)
    ]


def test_a_recorded_trial_is_judged_by_the_rule(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(*(m for _ in range(4) for m in (nn.Linear(16, 16), nn.ReLU())), nn.Linear(16, 2))
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    with Recorder(model, tmp_path / "t") as rec:
        for _ in range(10):
            with rec.step():
                loss = F.cross_entropy(model(torch.randn(32, 16)), torch.randint(0, 2, (32,)))
                optimiser.zero_grad()
                loss.backward()
                rec.loss(loss)
                optimiser.step()
    verdict = poorinit.analyze(tmp_path / "t")
    fired = {c.check for c in verdict.criteria if c.fired}
    assert {"activation_variance", "gradient_spread"} <= fired


# -- writing on a background thread (issue 13) -----------------------------------


def test_steps_are_written_on_a_thread_and_close_waits_for_them(tmp_path):
    model = Net()
    rec = Recorder(model, tmp_path / "t", steps=5)
    thread = rec._background._thread
    train(model, rec, 5)
    assert thread.is_alive()  # the files may still be on their way
    rec.close()
    assert not thread.is_alive()
    assert step_numbers(tmp_path / "t") == [0, 1, 2, 3, 4] and Trial(tmp_path / "t").finished


def test_an_error_on_the_writer_thread_is_raised_on_the_training_thread(tmp_path):
    import shutil

    model = Net()
    rec = Recorder(model, tmp_path / "t", steps=2)
    shutil.rmtree(tmp_path / "t")  # the disk goes away under the run
    # Raised at the next step handed over, or at the latest by close(): never lost.
    with pytest.raises(OSError, match="No such file or directory"):
        train(model, rec, 2)
        rec.close()
    assert not (tmp_path / "t" / fmt.worker_finished_marker(0)).exists()


def test_an_error_while_renaming_is_raised_and_leaves_no_temporary_file(tmp_path):
    """The rename into place fails on the writer thread (a directory holds the step's name): raised, never lost."""
    model = Net()
    rec = Recorder(model, tmp_path / "t", steps=3)
    (tmp_path / "t" / fmt.step_file_name(1, "train", 0)).mkdir()
    with pytest.raises(OSError):
        train(model, rec, 3)
        rec.close()
    with pytest.raises(RecordingError, match="not marked finished"):
        rec.close()  # the error was raised once; a trial missing a step is never marked finished
    names = sorted(p.name for p in (tmp_path / "t").iterdir())
    assert not [n for n in names if n.endswith(".tmp")]
    assert fmt.step_file_name(0, "train", 0) in names and fmt.step_file_name(2, "train", 0) not in names
    assert fmt.worker_finished_marker(0) not in names


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_compressed_trials_keep_their_checksums_and_values(tmp_path, compression):
    import h5py

    model = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 2))
    with Recorder(model, tmp_path / "plain", steps=1) as rec:
        torch.manual_seed(0)
        train(model, rec, 1, lr=0.0)
    with Recorder(model, tmp_path / "packed", steps=1, compression=compression, activation_rows=None) as rec:
        torch.manual_seed(0)
        train(model, rec, 1, lr=0.0)
    (packed,) = Trial(tmp_path / "packed").step_files(0)
    with h5py.File(packed.path, "r") as f:
        for name in ("1.relu_input",):  # 16 x 64 float32 = 4 KiB: compact, never compressed
            assert f["tensors"][name].compression is None
    plain, compressed = read_step(tmp_path / "plain", 0), read_step(tmp_path / "packed", 0)
    for name in plain:
        np.testing.assert_array_equal(plain[name][0], compressed[name][0])
    with pytest.raises(ValueError, match="compression must be one of"):
        Recorder(model, tmp_path / "bad", compression="zstd")


def test_the_writer_compresses_chunked_datasets_with_fletcher32(tmp_path):
    import h5py

    big = np.random.default_rng(0).normal(size=(256, 64)).astype(np.float32)  # 64 KiB: chunked
    with TrialWriter(tmp_path, compression="gzip") as writer:
        path = writer.write_step(0, activation_inputs={"a.relu_input": big}, losses={"loss": 1.0})
    with h5py.File(path, "r") as f:
        dataset = f["tensors/a.relu_input"]
        assert dataset.compression == "gzip" and dataset.fletcher32
        np.testing.assert_array_equal(dataset[()], big)


def test_explain_names_the_weights_of_a_recorded_trial(tmp_path):
    """Weights are in the first step file only; --explain reads them there, with each one's gradient."""
    import subprocess
    import sys

    torch.manual_seed(0)
    model = Net()
    with Recorder(model, tmp_path / "t", steps=3) as rec:
        train(model, rec, 3)
    assert "net.0.weight" not in read_step(tmp_path / "t", 1)
    rows = {row.name: row for row in poorinit.analyze(tmp_path / "t", explain=True).diagnosis.rows}
    feeding = {name: row.weight for name, row in rows.items()}
    assert feeding["net.1.relu_input"] is not None and feeding["net.1.relu_input"].name == "net.0.weight"
    assert feeding["net.3.tanh_input"] is not None and feeding["net.3.tanh_input"].name == "net.2.weight"
    assert feeding["net.1.relu_input"].gradient_std is not None
    shown = subprocess.run(
        [sys.executable, "-m", "poorinit", "analyze", str(tmp_path / "t"), "--explain", "--steps", "3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shown.returncode in (0, 1), shown.stderr
    assert "net.0.weight" in shown.stdout and "net.2.weight" in shown.stdout


def test_gradients_are_copied_per_dtype_in_one_go_and_equal_their_tensors():
    """_host_copies: one copy per device and dtype, each array the tensor's values as they were (widened
    where the format needs it), in the order given; tied parameters are named once, as named_parameters does."""
    from poorinit.torch.recorder import _host_copies, _named_parameters

    tensors = [
        ("a", torch.randn(3, 4)),
        ("b", torch.randn(5, 2).t()),  # not contiguous
        ("c", torch.randn(7, dtype=torch.float64)),
        ("d", torch.randn(2, 2, dtype=torch.bfloat16)),
        ("e", torch.randn(4)),
        ("f", torch.sparse_coo_tensor([[0, 2]], [1.0, 2.0], (4,), check_invariants=True)),
    ]
    copies = _host_copies(tensors, "gradient of")
    assert [name for name, _ in copies] == list("abcdef")
    for (name, tensor), (_, array) in zip(tensors, copies, strict=True):
        expected = tensor.to_dense() if tensor.is_sparse else tensor
        expected = expected.float() if expected.dtype == torch.bfloat16 else expected
        assert array.shape == tuple(tensor.shape) and array.dtype == expected.numpy().dtype, name
        np.testing.assert_array_equal(array, expected.numpy())
    tensors[0][1].add_(1.0)  # an optimiser's update in place does not reach the copy
    assert not np.array_equal(copies[0][1], tensors[0][1].numpy())

    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(3, 2))
    assert [n for n, _ in _named_parameters(list(model.named_modules()))] == [n for n, _ in model.named_parameters()]


def test_the_writer_waits_while_a_forward_of_the_model_runs(tmp_path):
    """The background writer starts a file outside the model's forward and its loss, once the backward pass
    runs (its Python and theirs take turns on the GIL); a forward that raises still lets it go on."""
    model = Net()
    seen = []
    model.net[2].register_forward_hook(lambda m, a, o: seen.append(rec._background.idle.is_set()))
    rec = Recorder(model, tmp_path / "t", steps=2)
    with rec.step():
        loss = model(torch.randn(16, 4)).pow(2).mean()
        seen.append(rec._background.idle.is_set())  # the loss: still waiting, until the backward pass
        loss.backward()
        seen.append(rec._background.idle.is_set())
        rec.loss(loss)
    assert seen == [False, False, True] and rec._background.idle.is_set()
    with pytest.raises(ValueError), rec.step():
        model.net[0].register_forward_hook(lambda m, a, o: (_ for _ in ()).throw(ValueError("bad batch")))
        model(torch.randn(2, 4))
    assert rec._background.idle.is_set()  # the forward raised: the writer is not left waiting
    rec.close()
    assert step_numbers(tmp_path / "t") == [0]
