"""A third-party check registered under `poorinit.checks` is picked up.

The plugin is a real distribution (a dist-info directory with
entry_points.txt) on PYTHONPATH, found by importlib.metadata exactly as an
installed package would be.
"""

import json
import os
import subprocess
import textwrap

PLUGIN = '''
from poorinit import Check, Selector, Status

class WeightNormCheck(Check):
    name = "weight_norm"
    title = "weight norm"
    description = "fires when any recorded weight is larger than 0.1 in magnitude"

    def selector(self):
        return Selector("weights")

    def measure(self, step, tensors):
        return max(abs(b).max() for ts in tensors.values() for t in ts for b in t.blocks())

    def judge(self, measures):
        worst = max(measures.values())
        status = Status.FIRED if worst > 0.1 else Status.PASSED
        return self.result(status, f"largest weight {worst:.3g}", figure=float(worst), limit=0.1, relation=">")
'''


def install_plugin(root, entry="weight_norm = weightnorm_plugin:WeightNormCheck"):
    (root / "weightnorm_plugin.py").write_text(PLUGIN)
    dist = root / "weightnorm_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: weightnorm-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[poorinit.checks]\n{textwrap.dedent(entry)}\n")
    return {**os.environ, "PYTHONPATH": str(root)}


def test_third_party_check_runs_beside_the_builtins(tmp_path, healthy_trial):
    env = install_plugin(tmp_path)
    result = subprocess.run(["poorinit", "analyze", str(healthy_trial), "--format", "json"],
                            capture_output=True, text=True, env=env)
    document = json.loads(result.stdout)
    checks = {c["check"]: c["status"] for c in document["criteria"]}
    assert checks == {"activation_variance": "passed", "gradient_spread": "passed",
                      "loss_decrease": "passed", "saturation": "not_applicable", "initial_loss": "not_applicable",
                      "weight_norm": "fired"}
    assert result.returncode == 1


def test_a_broken_plugin_warns_and_the_gate_still_works(tmp_path, healthy_trial):
    env = install_plugin(tmp_path, entry="broken = no_such_module:Nothing")
    result = subprocess.run(["poorinit", "analyze", str(healthy_trial)], capture_output=True, text=True, env=env)
    assert result.returncode == 0
    assert "check plugin 'broken'" in result.stderr and "failed to load" in result.stderr
