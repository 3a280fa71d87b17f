"""``scan --scheduler``: the same scan on a real Dask cluster started on loopback.

The cluster is a ``distributed.LocalCluster`` with worker processes, so the
trials are analysed in other processes that reach the scheduler over TCP, as
on a real cluster; the CLI runs as the installed script and connects to it.
"""

import json
import os
import subprocess
import sys

import pytest

from .conftest import write_synthetic_trial

distributed = pytest.importorskip("distributed")


def run(*args, env=None, cwd=None):
    return subprocess.run(["poorinit", *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=cwd)


@pytest.fixture(scope="module")
def scheduler():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=":0")  # never 8787: suites run side by side
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask") / "runs"
    write_synthetic_trial(root / "healthy", layers=3, steps=6)
    write_synthetic_trial(root / "deep" / "vanishing", layers=3, steps=6, layer_scale=lambda i: 0.1**i,
                          gradient_scale=1e-5, loss=lambda s: 0.693 + 0.01 * s)
    (root / "broken").mkdir()
    (root / "broken" / "000000000000_train_0.h5").write_text("not HDF5")
    return root


def test_a_scan_on_the_cluster_gives_the_results_of_a_local_scan(scheduler, runs):
    on_cluster = run("scan", "runs", "--scheduler", scheduler, "--format", "json", cwd=runs.parent)
    local = run("scan", "runs", "--jobs", "2", "--format", "json", cwd=runs.parent)
    assert on_cluster.returncode == local.returncode == 1, on_cluster.stderr
    assert json.loads(on_cluster.stdout) == json.loads(local.stdout)
    assert on_cluster.stderr == local.stderr  # the same verdict warnings, nothing else
    assert [t["trial"] for t in json.loads(on_cluster.stdout)["trials"]] == [
        "runs/deep/vanishing", "runs/broken", "runs/healthy"]


def test_jsonl_streams_from_the_cluster_too(scheduler, runs):
    result = run("scan", runs, "--scheduler", scheduler, "--format", "jsonl")
    assert sorted(json.loads(line)["status"] for line in result.stdout.splitlines()) == ["error", "fired", "passed"]


def test_without_the_dask_extra_the_error_says_what_to_install(runs):
    # `sys.modules[name] = None` makes `import name` fail as if it were not installed.
    code = "import sys; sys.modules['distributed'] = None; from poorinit.cli import main; raise SystemExit(main())"
    result = subprocess.run([sys.executable, "-c", code, "scan", str(runs), "--scheduler", "tcp://127.0.0.1:1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "poorinit: error: --scheduler needs Dask's distributed scheduler: " \
                            "pip install 'poorinit[dask]'\n"


def test_an_unreachable_scheduler_exits_2_with_one_line(runs):
    quick = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}
    result = run("scan", runs, "--scheduler", "tcp://127.0.0.1:9", env=quick)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("poorinit: error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert result.stderr.count("\n") == 1
