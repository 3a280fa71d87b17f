"""Trials in S3, against a real S3 endpoint: moto's standalone server on 127.0.0.1.

The CLI runs as a subprocess with the endpoint in ``AWS_ENDPOINT_URL_S3``, the
way a user points botocore (and so s3fs) at another endpoint; credentials are
moto's test values, passed the usual way (environment).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .test_errors_doc import expect_error

pytest.importorskip("s3fs", reason="the 'remote' extra (fsspec, s3fs) is part of 'test'")
pytest.importorskip("moto.server", reason="moto[server] is part of the 'test' extra")

DATA = Path(__file__).parent / "data" / "smdebug"
SECRET = "never-print-this-secret-0123456789"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def s3_env():
    """A running moto S3 server holding bucket 'runs' with both formats, and the environment that reaches it."""
    port = free_port()
    # The standalone server in its own process, as a user runs it (`moto_server`):
    # an in-process server would share this interpreter's GIL, garbage collector
    # and h5py lock with the code under test, and hide or cause hangs of its own.
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"moto's server did not start on port {port} (exit code {server.poll()})")
            time.sleep(0.1)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("AWS_PROFILE", None)
    upload = (
        "import sys, s3fs\n"
        "fs = s3fs.S3FileSystem()\n"
        "fs.mkdir('runs')\n"
        "for local, key in zip(sys.argv[1::2], sys.argv[2::2]):\n"
        "    fs.put(local, key, recursive=True)\n"
    )
    pairs = []
    for name in ("good", "poor", "good_poorinit", "poor_poorinit"):
        pairs += [str(DATA / name), f"runs/jobs/{name}"]
    subprocess.run([sys.executable, "-c", upload, *pairs], env=env, check=True, timeout=120)
    try:
        yield env
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run(env: dict[str, str], *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["poorinit", *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


def put(env: dict[str, str], key: str, data: bytes) -> None:
    code = "import sys, s3fs; s3fs.S3FileSystem().pipe(sys.argv[1], sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", code, key], input=data, env=env, check=True, timeout=60)


def test_a_poorinit_trial_in_s3_is_judged_and_named_unmangled(s3_env):
    result = run(s3_env, "analyze", "s3://runs/jobs/poor_poorinit", "--format", "json")
    assert result.returncode == 1, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["trial"] == "s3://runs/jobs/poor_poorinit"
    local = json.loads(run(s3_env, "analyze", DATA / "poor_poorinit", "--format", "json").stdout)
    assert [c["figure"] for c in verdict["criteria"]] == [c["figure"] for c in local["criteria"]]


def test_an_smdebug_trial_in_s3_is_judged(s3_env):
    assert run(s3_env, "analyze", "s3://runs/jobs/good", "--quiet").returncode == 0
    fired = run(s3_env, "analyze", "s3://runs/jobs/poor", "--quiet")
    assert fired.returncode == 1, fired.stderr
    assert "s3://runs/jobs/poor " in fired.stdout


def test_inspect_an_smdebug_trial_in_s3(s3_env):
    result = run(s3_env, "inspect", "s3://runs/jobs/good", "--format", "json")
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    assert described["trial"] == "s3://runs/jobs/good" and described["format"] == "smdebug"
    assert described["modes"][0]["first_step_file"] == "000000000000_worker_0.tfevents"


def test_scan_finds_both_formats_below_a_prefix(s3_env):
    result = run(s3_env, "scan", "s3://runs/jobs", "--format", "json", "--jobs", "2")  # a process pool
    assert result.returncode == 1, result.stderr
    rows = {row["trial"]: row["status"] for row in json.loads(result.stdout)["trials"]}
    assert rows == {
        "s3://runs/jobs/good": "passed", "s3://runs/jobs/good_poorinit": "passed",
        "s3://runs/jobs/poor": "fired", "s3://runs/jobs/poor_poorinit": "fired",
    }


def test_only_the_analysed_step_files_are_read(s3_env, tmp_path):
    """A damaged step file beyond --steps is never fetched, so it cannot stop the analysis."""
    trial = tmp_path / "trial"
    shutil.copytree(DATA / "good_poorinit", trial)
    (trial / "000000000009_train_0.h5").write_bytes(b"not HDF5 at all")
    code = "import sys, s3fs; s3fs.S3FileSystem().put(sys.argv[1], sys.argv[2], recursive=True)"
    subprocess.run([sys.executable, "-c", code, str(trial), "runs/partly-damaged"], env=s3_env, check=True, timeout=60)
    assert run(s3_env, "analyze", "s3://runs/partly-damaged", "--steps", "6", "--quiet").returncode == 0
    damaged = run(s3_env, "analyze", "s3://runs/partly-damaged")
    expect_error(damaged, "step-not-hdf5", "s3://runs/partly-damaged/000000000009_train_0.h5")


def test_only_the_records_of_selected_tensors_are_read(s3_env):
    """A weight's record with a broken length CRC: never read, since no criterion selects weights."""
    data = bytearray((DATA / "good" / "events" / "000000000000" / "000000000000_worker_0.tfevents").read_bytes())
    index = json.loads((DATA / "good" / "index" / "000000000" / "000000000000_worker_0.json").read_text())
    weight = next(t for t in index["tensor_payload"] if t["tensorname"] == "MLP_fc1.weight")
    data[weight["start_idx"] + 8] ^= 0xFF
    code = ("import sys, s3fs; fs = s3fs.S3FileSystem(); fs.copy(sys.argv[1], sys.argv[2], recursive=True)")
    subprocess.run([sys.executable, "-c", code, "runs/jobs/good", "runs/weight-damaged"], env=s3_env, check=True,
                   timeout=60)
    put(s3_env, "runs/weight-damaged/events/000000000000/000000000000_worker_0.tfevents", bytes(data))
    assert run(s3_env, "analyze", "s3://runs/weight-damaged", "--quiet").returncode == 0


def test_a_missing_bucket(s3_env):
    result = run(s3_env, "analyze", "s3://no-such-bucket/trial")
    expect_error(result, "remote-no-bucket", "s3://no-such-bucket/trial")
    assert SECRET not in result.stderr


def test_a_missing_key(s3_env):
    expect_error(run(s3_env, "analyze", "s3://runs/no/such/trial"), "remote-no-key", "s3://runs/no/such/trial")


def test_a_prefix_that_holds_no_trial(s3_env):
    put(s3_env, "runs/notes/readme.txt", b"hello")
    expect_error(run(s3_env, "analyze", "s3://runs/notes"), "remote-no-trial", "s3://runs/notes")


def test_scan_of_an_empty_prefix(s3_env):
    expect_error(run(s3_env, "scan", "s3://runs/nothing-here"), "remote-scan-empty", "s3://runs/nothing-here")


def test_an_unreachable_endpoint_ends_in_exit_2(s3_env):
    """Nothing listens on the port: bounded by remote.CONNECT_TIMEOUT and MAX_ATTEMPTS, not by a hang."""
    env = {**s3_env, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{free_port()}"}
    result = run(env, "analyze", "s3://runs/jobs/good")
    expect_error(result, "remote-request", "s3://runs/jobs/good", "Could not connect")
    assert SECRET not in result.stderr


def test_without_fsspec_the_error_names_the_extra(s3_env):
    code = (
        "import sys; sys.modules['fsspec'] = None\n"
        "from poorinit.cli import main\n"
        "sys.exit(main(['analyze', 's3://runs/jobs/good']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=s3_env, timeout=60)
    message = expect_error(result, "remote-extra", "s3://runs/jobs/good")
    assert "pip install 'poorinit[remote]'" in message


def test_an_unknown_protocol():
    expect_error(subprocess.run(["poorinit", "analyze", "nosuchproto://x/y"], capture_output=True, text=True,
                                timeout=60), "remote-protocol", "nosuchproto://x/y")


def test_a_dask_cluster_scans_trials_in_s3(s3_env, monkeypatch):
    """docs/scale.md: the workers read the URLs themselves, with the credentials of their environment."""
    distributed = pytest.importorskip("distributed")
    for key in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, s3_env[key])  # the worker processes inherit them
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0") as cluster:
        result = run(s3_env, "scan", "s3://runs/jobs", "--scheduler", cluster.scheduler_address, "--format", "json")
    assert result.returncode == 1, result.stderr
    rows = {row["trial"]: row["status"] for row in json.loads(result.stdout)["trials"]}
    assert rows["s3://runs/jobs/poor"] == "fired" and rows["s3://runs/jobs/good"] == "passed"
    assert len(rows) == 4


def test_follow_refuses_a_url_at_once():
    result = subprocess.run(["poorinit", "analyze", "--follow", "s3://runs/jobs/good", "--timeout", "600"],
                            capture_output=True, text=True, timeout=60)
    expect_error(result, "follow-remote", "s3://runs/jobs/good")


# -- resource budgets and replaced objects: the same rules as for local files ---------------------


@pytest.fixture(scope="module")
def hostile_in_s3(s3_env, tmp_path_factory):
    """Trials uploaded once: a decompression bomb, groups nested 100 deep, and a plain trial of 4 MiB tensors."""
    import numpy as np

    from poorinit import TrialWriter

    from .test_bad_input_budgets import _compressed_chunks, trial_with

    local = tmp_path_factory.mktemp("hostile-s3")
    trial_with(local / "bomb", lambda t: _compressed_chunks(t, "bomb.relu_input", 4 << 20, 24))

    def deep(tensors):
        group = tensors
        for _ in range(100):
            group = group.create_group("n")

    trial_with(local / "deep", deep)
    rng = np.random.default_rng(0)
    with TrialWriter(local / "large", fsync=False) as writer:
        for step in range(2):
            writer.write_step(step, activation_inputs={f"net.{i}.relu_input": rng.normal(0, 1, (1024, 1024))
                                                       .astype(np.float32) for i in range(2)},
                              gradients={"gradient/w": rng.normal(0, 0.05, (16, 16))}, losses={"loss": 2.0})
    code = ("import sys, s3fs\nfs = s3fs.S3FileSystem()\n"
            "for name in sys.argv[2:]:\n    fs.put(sys.argv[1] + '/' + name, 'runs/hostile/' + name, recursive=True)\n")
    subprocess.run([sys.executable, "-c", code, str(local), "bomb", "deep", "large"], env=s3_env, check=True,
                   timeout=120)
    return local


@pytest.mark.parametrize("name, error_id, culprit", [
    ("bomb", "tensor-expansion-budget", "'bomb.relu_input'"),
    ("deep", "tensor-too-deep", "s3://runs/hostile/deep/000000000000_train_0.h5"),
])
def test_a_step_file_in_s3_obeys_the_budgets_of_a_local_one(s3_env, hostile_in_s3, name, error_id, culprit):
    expect_error(run(s3_env, "analyze", f"s3://runs/hostile/{name}"), error_id, culprit)
    local = subprocess.run(["poorinit", "analyze", str(hostile_in_s3 / name)], capture_output=True, text=True,
                           timeout=120)
    expect_error(local, error_id)


@pytest.mark.parametrize("change, step, error_id", [
    ("uploaded again", 0, "step-replaced-while-read"),
    ("deleted", 1, "step-vanished-while-read"),
])
def test_a_step_file_changed_in_s3_while_it_is_read_is_refused(s3_env, hostile_in_s3, monkeypatch, change, step,
                                                               error_id):
    """Read in requests of 1 MiB: an object uploaded again or deleted between two of them is refused, never read
    half old, half new, and never called damaged."""
    import poorinit.remote
    from poorinit.errors import StepFileError
    from poorinit.sources import open_trial

    from .test_errors_doc import documented, template_regex

    for key in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, s3_env[key])
    monkeypatch.setattr(poorinit.remote, "BLOCK_SIZE", 1 << 20)
    trial = open_trial("s3://runs/hostile/large")
    reader = trial.open(trial.step_files(step)[0])
    key = f"runs/hostile/large/{step:012d}_train_0.h5"
    try:
        reader.tensor_names()
        if change == "deleted":
            code = "import sys, s3fs; s3fs.S3FileSystem().rm(sys.argv[1])"
            subprocess.run([sys.executable, "-c", code, key], env=s3_env, check=True, timeout=60)
        else:
            put(s3_env, key, (hostile_in_s3 / "large" / "000000000001_train_0.h5").read_bytes())
        with pytest.raises(StepFileError) as raised:
            for name in ("net.0.relu_input", "net.1.relu_input"):
                for _ in reader.tensor(name).blocks():
                    pass
            reader.check_unchanged()
    finally:
        reader.close()
    message = str(raised.value)
    assert message.startswith(f"s3://{key}: ")
    assert template_regex(documented()[error_id]).fullmatch(message), message
