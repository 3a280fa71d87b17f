"""SageMaker Debugger trials: read, judged like poorinit's own, refused in one line when damaged.

The trials in tests/data/smdebug were written by smdebug 1.0.34's PyTorch hook
(tests/data/smdebug/make_trials.py, versions in VERSIONS.txt); the same runs
were recorded at the same time by poorinit.torch.Recorder (the *_poorinit
twins). Damage is made by editing copies of them, and records are framed with
poorinit's own TFRecord writer where a test needs a record smdebug never writes.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from poorinit import analyze
from poorinit.smdebug import poorinit_collections
from poorinit.smdebug.proto import Event, Summary, TensorProto
from poorinit.smdebug.records import RecordError, frame, iter_records, masked_crc32c, read_record
from poorinit.sources import open_trial

from .test_errors_doc import expect_error, run

DATA = Path(__file__).parent / "data" / "smdebug"
GOOD, POOR = DATA / "good", DATA / "poor"


def criteria(verdict) -> dict[str, tuple[str, float | None, int | None]]:
    return {c.check: (c.status.value, c.figure, c.step) for c in verdict.criteria}


def copy(trial: Path, tmp_path: Path) -> Path:
    target = tmp_path / trial.name
    shutil.copytree(trial, target)
    return target


def event_file(trial: Path, global_step: int) -> Path:
    return trial / "events" / f"{global_step:012d}" / f"{global_step:012d}_worker_0.tfevents"


def index_file(trial: Path, global_step: int) -> Path:
    return trial / "index" / f"{global_step // 1000:09d}" / f"{global_step:012d}_worker_0.json"


def tensor_record(name: str, proto: TensorProto, step: int = 0) -> bytes:
    """An Event as smdebug writes it: the mode (1, TRAIN) and mode step in the value's plugin data."""
    metadata = {"plugin_data": [{"plugin_name": "mode_step", "content": str(step)},
                                {"plugin_name": "mode", "content": "1"}]}
    event = Event(step=step, summary=Summary(value=[Summary.Value(tag=name, metadata=metadata, tensor=proto)]))
    return event.SerializeToString()


def replace_event_file(trial: Path, global_step: int, records: list[bytes]) -> None:
    """Write the step's event file anew and drop its index, so the reader reads the records whole."""
    event_file(trial, global_step).write_bytes(b"".join(records))
    index_file(trial, global_step).unlink()


# -- judged like the twin --------------------------------------------------------


@pytest.mark.parametrize("name", ["good", "poor"])
def test_an_smdebug_trial_and_its_recorder_twin_get_the_same_verdict(name):
    smdebug_verdict = analyze(DATA / name)
    twin_verdict = analyze(DATA / f"{name}_poorinit")
    assert smdebug_verdict.fired == twin_verdict.fired == (name == "poor")
    ours, theirs = criteria(smdebug_verdict), criteria(twin_verdict)
    assert ours.keys() == theirs.keys()
    for check, (status, figure, step) in ours.items():
        twin_status, twin_figure, twin_step = theirs[check]
        assert (status, step) == (twin_status, twin_step), check
        assert figure == (None if twin_figure is None else pytest.approx(twin_figure, rel=1e-9)), check
    assert tuple(smdebug_verdict.steps) == tuple(twin_verdict.steps) == tuple(range(10))


def test_the_cli_judges_an_smdebug_trial_with_the_rules_exit_codes():
    assert run("analyze", GOOD, "--quiet").returncode == 0
    fired = run("analyze", POOR, "--quiet")
    assert fired.returncode == 1
    assert "activation variance" in fired.stdout


def test_steps_of_a_hook_without_a_mode_count_as_train():
    """The poor run never called hook.set_mode(): smdebug wrote mode GLOBAL."""
    assert json.loads(index_file(POOR, 3).read_text())["meta"]["mode"] == "GLOBAL"
    trial = open_trial(POOR)
    assert trial.modes == ("train",)
    assert trial.steps("train") == list(range(10))


def test_eval_steps_are_numbered_within_their_mode():
    trial = open_trial(GOOD)
    assert trial.modes == ("train", "eval")
    assert trial.steps("eval") == [0, 1]
    (eval_step,) = trial.step_files(0, "eval")
    assert Path(eval_step.path).name == "000000000010_worker_0.tfevents"


def test_smdebug_collections_map_onto_poorinit_collections():
    assert poorinit_collections(["gradients", "all"]) == ("gradients",)
    assert poorinit_collections(["weights", "default"]) == ("weights",)
    assert poorinit_collections(["losses"]) == ("losses",)
    assert poorinit_collections(["relu_input"]) == ("activation_inputs",)
    assert poorinit_collections(["relu_activations", "relu_input"]) == ("activation_inputs",)
    assert poorinit_collections(["inputs", "outputs", "biases", "all"]) == ()


def test_a_step_without_its_index_is_read_whole_with_the_same_verdict(tmp_path):
    """A job stopped before smdebug wrote an index: the event file itself says the mode and the tensors."""
    trial = copy(POOR, tmp_path)
    for step in (0, 4):
        index_file(trial, step).unlink()
    assert criteria(analyze(trial)) == criteria(analyze(POOR))


def test_only_the_records_of_selected_tensors_are_decoded():
    trial = open_trial(GOOD)
    (step_file,) = trial.step_files(0)
    with trial.open(step_file) as reader:
        names = dict(reader.tensor_names())
        assert names["layer1_relu_input_0"] == ("activation_inputs",)
        assert names["gradient/MLP_fc1.weight"] == ("gradients",)
        tensor = reader.tensor("layer1_relu_input_0")
        assert tensor.shape == (8, 16) and tensor.size == 128
        assert sum(block.size for block in tensor.blocks()) == 128
        assert list(reader._decoded) == ["layer1_relu_input_0"]


# -- inspect ----------------------------------------------------------------------


def test_inspect_shows_steps_modes_workers_and_collections():
    result = run("inspect", GOOD, "--format", "json")
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    assert described["format"] == "smdebug"
    assert described["finished"] is True  # training_job_end.ts
    assert described["workers"] == [0] and described["worker_names"] == {"0": "worker_0"}
    assert {"gradients", "weights", "losses", "relu_input"} <= set(described["collections"])
    modes = {m["mode"]: m for m in described["modes"]}
    assert modes["train"]["steps"] == list(range(10)) and modes["eval"]["steps"] == [0, 1]
    tensors = {t["name"]: t for t in modes["train"]["tensors"]}
    assert tensors["layer2_relu_input_0"] == {
        "name": "layer2_relu_input_0", "shape": [8, 16], "dtype": "float32", "collections": ["relu_input"],
    }
    assert tensors["CrossEntropyLoss_output_0"]["shape"] == []


def test_inspect_as_a_table_names_the_format_and_the_collections():
    result = run("inspect", GOOD)
    assert result.returncode == 0, result.stderr
    assert "SageMaker Debugger trial" in result.stdout
    assert "collections: all, biases, default, gradients, losses, relu_input, weights" in result.stdout


# -- the TFRecord framing -----------------------------------------------------------


def test_masked_crc32c_has_tensorflows_known_answer():
    # CRC-32C of "123456789" is 0xE3069283 (RFC 3720); TensorFlow masks it as below.
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_every_record_smdebug_wrote_passes_the_length_crc():
    data = event_file(GOOD, 3).read_bytes()
    records = list(iter_records(data))
    index = json.loads(index_file(GOOD, 3).read_text())["tensor_payload"]
    assert [(offset, length) for offset, length, _ in records] == [(t["start_idx"], t["length"]) for t in index]


def test_a_record_with_a_payload_crc_is_verified():
    record = bytearray(frame(b"payload"))
    assert bytes(read_record(record)[0]) == b"payload"
    record[14] ^= 0x01
    with pytest.raises(RecordError, match="bad CRC of the record payload at byte 0"):
        read_record(record)


# -- damage: exit 2, one line ----------------------------------------------------------


def test_a_flipped_length_byte_is_a_bad_crc(tmp_path):
    trial = copy(GOOD, tmp_path)
    path = event_file(trial, 2)
    start = json.loads(index_file(trial, 2).read_text())["tensor_payload"][4]["start_idx"]
    data = bytearray(path.read_bytes())
    data[start] ^= 0x01
    path.write_bytes(bytes(data))
    message = expect_error(run("analyze", trial), "smdebug-tensor-damaged", path, "layer1_relu_input_0")
    assert f"bad CRC of the record length at byte {start}" in message


def test_a_truncated_event_file_is_refused(tmp_path):
    trial = copy(GOOD, tmp_path)
    path = event_file(trial, 1)
    path.write_bytes(path.read_bytes()[:-100])
    message = expect_error(run("analyze", trial), "smdebug-tensor-damaged", path)
    assert "truncated record at byte" in message


def test_a_truncated_event_file_without_index_is_refused(tmp_path):
    trial = copy(GOOD, tmp_path)
    path = event_file(trial, 1)
    path.write_bytes(path.read_bytes()[:-7])
    index_file(trial, 1).unlink()
    message = expect_error(run("analyze", trial), "smdebug-record-damaged", path)
    assert "truncated record at byte" in message


def test_a_record_failing_its_payload_crc_is_refused(tmp_path):
    trial = copy(GOOD, tmp_path)
    proto = TensorProto(dtype=1, tensor_shape={"dim": [{"size": 2}]}, tensor_content=b"\0" * 8)
    record = bytearray(frame(tensor_record("layer1_relu_input_0", proto)))
    record[20] ^= 0x10
    replace_event_file(trial, 0, [bytes(record)])
    message = expect_error(run("analyze", trial), "smdebug-record-damaged", event_file(trial, 0))
    assert "bad CRC of the record payload at byte 0" in message


def test_a_record_that_is_not_an_event_is_refused(tmp_path):
    trial = copy(GOOD, tmp_path)
    replace_event_file(trial, 0, [frame(b"\xff\xff\xff")])
    expect_error(run("analyze", trial), "smdebug-not-event", event_file(trial, 0))


def test_a_tensor_shorter_than_its_shape_is_refused(tmp_path):
    trial = copy(GOOD, tmp_path)
    proto = TensorProto(dtype=1, tensor_shape={"dim": [{"size": 8}, {"size": 16}]}, tensor_content=b"\0" * 40)
    replace_event_file(trial, 0, [frame(tensor_record("layer1_relu_input_0", proto))])
    message = expect_error(run("analyze", trial), "smdebug-tensor-size", "layer1_relu_input_0")
    assert "holds 40 of its 512 bytes" in message


def test_an_integer_tensor_is_refused_where_the_rule_selects_it(tmp_path):
    trial = copy(GOOD, tmp_path)
    proto = TensorProto(dtype=9, tensor_shape={"dim": [{"size": 4}]}, int64_val=[1, 2, 3, 4])
    replace_event_file(trial, 0, [frame(tensor_record("layer1_relu_input_0", proto))])
    message = expect_error(run("analyze", trial), "smdebug-dtype", "layer1_relu_input_0")
    assert "dtype int64" in message


def test_values_listed_instead_of_packed_are_read():
    values = TensorProto(dtype=2, tensor_shape={"dim": [{"size": 2}, {"size": 2}]}, double_val=[1.0, 2.0, 3.0, 4.0])
    filled = TensorProto(dtype=1, tensor_shape={"dim": [{"size": 3}]}, float_val=[0.5])
    from poorinit.smdebug.trial import tensor_values

    assert tensor_values(values, "f", "t").tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert tensor_values(filled, "f", "t").tolist() == [0.5, 0.5, 0.5]


def test_an_event_file_the_index_lists_but_that_is_gone(tmp_path):
    trial = copy(GOOD, tmp_path)
    event_file(trial, 5).unlink()
    expect_error(run("analyze", trial), "smdebug-event-missing", "000000000005_worker_0.tfevents")


def test_an_index_that_is_not_json(tmp_path):
    trial = copy(GOOD, tmp_path)
    index_file(trial, 6).write_text('{"meta": {"mode": "TRAIN", "mode_st')
    expect_error(run("analyze", trial), "smdebug-index-damaged", index_file(trial, 6))


def test_an_index_entry_without_its_fields(tmp_path):
    trial = copy(GOOD, tmp_path)
    document = json.loads(index_file(trial, 0).read_text())
    del document["tensor_payload"][0]["start_idx"]
    index_file(trial, 0).write_text(json.dumps(document))
    expect_error(run("analyze", trial), "smdebug-index-damaged", index_file(trial, 0))


def test_an_index_with_an_unknown_mode(tmp_path):
    trial = copy(GOOD, tmp_path)
    document = json.loads(index_file(trial, 0).read_text())
    document["meta"]["mode"] = "TRAINING"
    index_file(trial, 0).write_text(json.dumps(document))
    expect_error(run("analyze", trial), "smdebug-index-mode", index_file(trial, 0))


def test_an_index_that_points_at_another_tensors_record(tmp_path):
    trial = copy(GOOD, tmp_path)
    document = json.loads(index_file(trial, 0).read_text())
    payload = document["tensor_payload"]
    relu = next(t for t in payload if t["tensorname"] == "layer1_relu_input_0")
    other = next(t for t in payload if t["tensorname"] == "MLP_fc1.weight")
    relu["start_idx"], relu["length"] = other["start_idx"], other["length"]
    index_file(trial, 0).write_text(json.dumps(document))
    expect_error(run("analyze", trial), "smdebug-index-mismatch", "layer1_relu_input_0")


def test_two_global_steps_claiming_one_mode_step(tmp_path):
    trial = copy(GOOD, tmp_path)
    document = json.loads(index_file(trial, 1).read_text())
    document["meta"]["mode_step"] = 0
    index_file(trial, 1).write_text(json.dumps(document))
    expect_error(run("analyze", trial), "smdebug-duplicate-step", "step 0 of mode train")


def test_an_event_file_without_tensors_or_index(tmp_path):
    trial = copy(GOOD, tmp_path)
    replace_event_file(trial, 3, [])
    expect_error(run("analyze", trial), "smdebug-unplaceable", event_file(trial, 3))


def test_a_collections_file_that_is_not_json(tmp_path):
    trial = copy(GOOD, tmp_path)
    path = trial / "collections" / "000000000" / "worker_0_collections.json"
    path.write_text("{")
    expect_error(run("analyze", trial), "smdebug-collections-damaged", path)


def test_an_smdebug_trial_without_steps(tmp_path):
    (tmp_path / "job" / "events" / "000000000000").mkdir(parents=True)
    expect_error(run("analyze", tmp_path / "job"), "smdebug-no-steps", tmp_path / "job")


def test_a_directory_of_neither_format_says_what_was_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    message = expect_error(run("analyze", tmp_path), "trial-no-step-files", tmp_path)
    assert "nor a SageMaker Debugger layout (events/ or index/ holding step directories)" in message


def test_without_the_sagemaker_extra_the_error_names_it():
    # A real interpreter in which crc32c cannot be imported, as without the extra.
    code = (
        "import sys; sys.modules['crc32c'] = None\n"
        "from poorinit.cli import main\n"
        f"sys.exit(main(['analyze', {str(GOOD)!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    message = expect_error(result, "smdebug-extra", GOOD)
    assert "crc32c" in message and "pip install 'poorinit[sagemaker]'" in message


def test_the_committed_trials_are_small_and_say_how_they_were_made():
    versions = (DATA / "VERSIONS.txt").read_text()
    assert "smdebug==1.0.34" in versions and "torch==2.13.0" in versions
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert total < 1_000_000
    header = struct.unpack("<Q", event_file(GOOD, 0).read_bytes()[:8])[0]
    assert header > 0


# -- convert ---------------------------------------------------------------------------


def test_convert_writes_a_poorinit_trial_judged_alike(tmp_path):
    out = tmp_path / "converted"
    result = run("convert", POOR, out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("converted 10 step files (")
    assert sorted(p.name for p in out.iterdir())[:2] == ["000000000000_train_0.h5", "000000000001_train_0.h5"]
    assert (out / "FINISHED_0").exists()  # the smdebug job had ended (training_job_end.ts)
    assert criteria(analyze(out)) == criteria(analyze(POOR))
    trial = open_trial(out)
    with trial.open(trial.step_files(3)[0]) as reader:
        names = dict(reader.tensor_names())
        assert names["layer1_relu_input_0"] == ("activation_inputs",)
        assert names["CrossEntropyLoss_output_0"] == ("losses",)
        assert reader.attrs["smdebug_global_step"] == 3 and reader.attrs["smdebug_worker"] == "worker_0"
        assert reader.tensor("layer1_relu_input_0").attrs["smdebug_collections"] == "relu_input"


def test_convert_keeps_every_mode(tmp_path):
    out = tmp_path / "converted"
    assert run("convert", GOOD, out).returncode == 0
    assert open_trial(out).steps("eval") == [0, 1]


def test_convert_refuses_a_target_that_holds_files(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    expect_error(run("convert", GOOD, tmp_path / "out"), "convert-target", tmp_path / "out")


def test_convert_reads_smdebug_trials_only():
    expect_error(run("convert", DATA / "good_poorinit", "/nonexistent/out"), "convert-not-smdebug",
                 DATA / "good_poorinit")


def test_follow_refuses_an_smdebug_trial_at_once():
    expect_error(run("analyze", "--follow", GOOD, "--timeout", "600"), "follow-smdebug", GOOD)


def test_scan_finds_smdebug_trials_beside_poorinit_trials():
    result = run("scan", DATA, "--format", "json", "--jobs", "1")
    assert result.returncode == 1, result.stderr
    rows = {Path(row["trial"]).name: row["status"] for row in json.loads(result.stdout)["trials"]}
    assert rows == {"good": "passed", "good_poorinit": "passed", "poor": "fired", "poor_poorinit": "fired"}
