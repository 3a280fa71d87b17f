"""Write the smdebug trials of tests/data/smdebug with the real SageMaker Debugger hook.

Each run trains one small MLP once, recorded at the same time by smdebug's
PyTorch hook (the trial SageMaker users have) and by poorinit.torch.Recorder
(its twin), so tests/test_smdebug.py can check that poorinit judges both alike.

smdebug 1.0.34 pins protobuf<=3.20.3 and needs numpy<2, so this runs in its
own environment, never in poorinit's (versions used are in VERSIONS.txt):

    python3.11 -m venv /tmp/smdebug-venv
    /tmp/smdebug-venv/bin/pip install smdebug==1.0.34 'numpy<2' 'pandas<2.3' psutil requests \
        torch==2.13.0 h5py click rich
    PYTHONPATH=. /tmp/smdebug-venv/bin/python tests/data/smdebug/make_trials.py

(smdebug 1.0.34 imports pandas, psutil and requests without declaring them.)
Trials:
  good/    He-initialised MLP, hook mode TRAIN for 10 steps, then EVAL for 2
  poor/    the same MLP with every weight scaled by 0.05, hook mode never set (GLOBAL)
  good_poorinit/, poor_poorinit/   the twins written by poorinit.torch.Recorder
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import smdebug
import smdebug.pytorch as smd
import torch
from smdebug import modes
from torch import nn

from poorinit.torch import Recorder

HERE = Path(__file__).resolve().parent
TRAIN_STEPS, EVAL_STEPS = 10, 2
BATCH, FEATURES, HIDDEN, CLASSES = 8, 12, 16, 4


class MLP(nn.Module):
    """Three ReLU layers; the ReLU modules are named so both recorders' names match '.*relu_input'."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.layer1_relu = nn.Linear(FEATURES, HIDDEN), nn.ReLU()
        self.fc2, self.layer2_relu = nn.Linear(HIDDEN, HIDDEN), nn.ReLU()
        self.fc3, self.layer3_relu = nn.Linear(HIDDEN, HIDDEN), nn.ReLU()
        self.out = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1_relu(self.fc1(x))
        x = self.layer2_relu(self.fc2(x))
        x = self.layer3_relu(self.fc3(x))
        return self.out(x)


def run(name: str, scale: float, set_modes: bool) -> None:
    smdebug_dir, twin_dir = HERE / name, HERE / f"{name}_poorinit"
    for directory in (smdebug_dir, twin_dir):
        shutil.rmtree(directory, ignore_errors=True)
    torch.manual_seed(0)
    model = MLP()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                module.weight.mul_(scale)
                module.bias.zero_()
    hook = smd.Hook(
        out_dir=str(smdebug_dir),
        save_config=smd.SaveConfig(save_interval=1),
        include_collections=["weights", "gradients", "losses", "relu_input"],
    )
    hook.get_collection("relu_input").include(".*relu_input")
    hook.register_module(model)
    loss_fn = nn.CrossEntropyLoss()
    hook.register_loss(loss_fn)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(1)
    data = torch.randn(TRAIN_STEPS + EVAL_STEPS, BATCH, FEATURES, generator=generator)
    labels = torch.randint(0, CLASSES, (TRAIN_STEPS + EVAL_STEPS, BATCH), generator=generator)
    if set_modes:
        hook.set_mode(modes.TRAIN)
    with Recorder(model, twin_dir, steps=TRAIN_STEPS) as rec:
        for step in range(TRAIN_STEPS):
            with rec.step():
                optimizer.zero_grad()
                loss = loss_fn(model(data[step]), labels[step])
                loss.backward()
                rec.loss(loss)
                optimizer.step()
    if set_modes:
        hook.set_mode(modes.EVAL)
        with torch.no_grad():
            for step in range(TRAIN_STEPS, TRAIN_STEPS + EVAL_STEPS):
                loss_fn(model(data[step]), labels[step])
    hook.close()


def main() -> int:
    run("good", scale=1.0, set_modes=True)
    run("poor", scale=0.05, set_modes=False)
    versions = {
        "smdebug": smdebug.__version__, "torch": torch.__version__, "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
    (HERE / "VERSIONS.txt").write_text("".join(f"{key}=={value}\n" for key, value in versions.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
