"""Measure how well the rule tells poor starts from healthy ones, on real training runs.

Every run trains a tiny network on synthetic data from one initialisation,
with mini-batches from a DataLoader and one of SGD, SGD with momentum, Adam
and AdamW at usual learning rates, for a fixed budget of steps. The first
steps are recorded into a trial (activation inputs with the metadata of
docs/format.md, gradients, weights, the loss and ``num_classes``); the whole
loss curve is kept. Trials and curves are cached in ``.accuracy-cache/``, so
re-judging after a change of the rule does not train again.

Labels come from what happened, never from what the rule says, and are fixed
before the rule is run (see docs/accuracy.md):
- poor by construction: all-zero weights;
- poor by the start: a first loss more than 3 times chance (ln K);
- otherwise by the outcome: each run's gain over chance at the end of the
  budget, as a share of the gain of the best init of the same architecture
  and optimiser (any seed); an init is healthy for an architecture when every
  one of its runs (three seeds, three optimisers) gained at least 80%, poor
  when none gained 40%, borderline otherwise (in neither rate): a trial
  cannot tell which optimiser will follow its first steps.

The runs are split once, by a hash of the run's id, into a development half
(the rule is tuned on it) and a test half (reported, never tuned on).

    python scripts/accuracy.py                     # train what is not cached, judge, print the tables
    python scripts/accuracy.py --families mlp8,gru --seeds 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import poorinit
from poorinit.torch import Recorder, RecordingWarning

HARNESS = 5  # bump to retrain everything when the runs themselves change
RECORDED_STEPS = 10
TRAIN_STEPS = 200
CLASSES = 4
BATCH = 32
ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".accuracy-cache"
CHANCE = math.log(CLASSES)
START_LIMIT = 3.0  # label: a first loss above 3 x chance is a poor start
HEALTHY_GAIN, POOR_GAIN = 0.8, 0.4
LEARNED = 0.2  # the best init must end 20% below chance for the outcome to tell anything
SHORT = {"activation_variance": "act", "gradient_spread": "grad", "loss_decrease": "loss", "saturation": "sat",
         "initial_loss": "init"}

# ----------------------------------------------------------------------------- data


def tabular(g: torch.Generator, samples: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian inputs labelled by a fixed random two-layer teacher: learnable, not linear."""
    x = torch.randn(samples, 16, generator=g)
    hidden = torch.tanh(x @ torch.randn(16, 16, generator=g) / 4)
    return x, (hidden @ torch.randn(16, CLASSES, generator=g)).argmax(dim=1)


def images(g: torch.Generator, samples: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 images of a horizontal bar, a vertical bar, a diagonal or a square, anywhere, in noise."""
    x = torch.randn(samples, 1, 8, 8, generator=g) * 0.5
    y = torch.randint(0, CLASSES, (samples,), generator=g)
    corners = torch.randint(0, 5, (samples, 2), generator=g)
    for image, label, (r, c) in zip(x, y.tolist(), corners.tolist(), strict=True):
        if label == 0:
            image[0, r + 1, c : c + 4] += 2.0
        elif label == 1:
            image[0, r : r + 4, c + 1] += 2.0
        elif label == 2:
            image[0, torch.arange(r, r + 4), torch.arange(c, c + 4)] += 2.0
        else:
            image[0, r : r + 3, c : c + 3] += 1.0
    return x, y


def sequences(g: torch.Generator, samples: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences of 8 tokens of 8 features; the class depends on the tokens together."""
    x = torch.randn(samples, 8, 8, generator=g)
    pooled = torch.tanh(x @ torch.randn(8, 8, generator=g) / 3).mean(dim=1)
    return x, (pooled @ torch.randn(8, CLASSES, generator=g)).argmax(dim=1)


# ----------------------------------------------------------------------------- models


def mlp(depth: int, act: type[nn.Module] = nn.ReLU, width: int = 32) -> nn.Module:
    layers: list[nn.Module] = []
    fan_in = 16
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), act()]
        fan_in = width
    return nn.Sequential(*layers, nn.Linear(width, CLASSES))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 2 * 2, CLASSES),
    )


class BasicBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + x)


class ResNet(nn.Module):
    """A ResNet-style CNN: stem conv-BN-ReLU, three basic blocks, pooled head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.Sequential(*(BasicBlock(8) for _ in range(3)))
        self.head = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


class ResidualMLP(nn.Module):
    """Issue 8, case 2: blocks of Linear-[BatchNorm]-ReLU-Linear with a skip, one final ReLU."""

    def __init__(self, norm: bool, blocks: int = 8, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Linear(16, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width) if norm else nn.Identity(), nn.ReLU(),
                          nn.Linear(width, width))
            for _ in range(blocks)
        )
        self.act = nn.ReLU()
        self.head = nn.Linear(width, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(self.act(x))


class EncoderClassifier(nn.Module):
    """nn.TransformerEncoderLayer stack (post-LN, as PyTorch ships it), mean-pooled."""

    def __init__(self, activation: str, layers: int = 2, d: int = 16) -> None:
        super().__init__()
        self.embed = nn.Linear(8, d)
        layer = nn.TransformerEncoderLayer(d, 2, dim_feedforward=32, dropout=0.0, activation=activation,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


class PreLNBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 2 * d)
        self.fc2 = nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        attention = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        x = x + self.proj(attention @ v)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class PreLNTransformer(nn.Module):
    """A hand-written pre-LN transformer (GPT-style), functional GELU (issue 8, case 4)."""

    def __init__(self, layers: int = 3, d: int = 16) -> None:
        super().__init__()
        self.embed = nn.Linear(8, d)
        self.blocks = nn.ModuleList(PreLNBlock(d) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x).mean(dim=1))


class GRUClassifier(nn.Module):
    """A GRU (its gates are inside one kernel: the rule cannot see them) with a ReLU head."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 16)
        self.head = nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(F.relu(self.fc(out[:, -1])))


class FunctionalMLP(nn.Module):
    """Parameters and functional activations only, as hand-written research code is."""

    def __init__(self, depth: int = 6, width: int = 32, activation: str = "silu") -> None:
        super().__init__()
        sizes = [16] + [width] * depth + [CLASSES]
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(o, i)) for i, o in zip(sizes, sizes[1:], strict=False))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(o)) for o in sizes[1:])
        for w in self.weights:
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))  # what nn.Linear does by default
        self.activation = {"silu": F.silu, "tanh": torch.tanh, "relu": F.relu}[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            x = self.activation(F.linear(x, w, b))
        return F.linear(x, self.weights[-1], self.biases[-1])


@dataclass(frozen=True)
class Family:
    build: Callable[[], nn.Module]
    data: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]
    activation: str  # for the gains of orthogonal init
    own: str = ""  # the init the architecture ships with, when it is not PyTorch's default


FAMILIES: dict[str, Family] = {
    "mlp2": Family(lambda: mlp(2), tabular, "relu"),
    "mlp8": Family(lambda: mlp(8), tabular, "relu"),
    "mlp16": Family(lambda: mlp(16), tabular, "relu"),
    "mlp32": Family(lambda: mlp(32), tabular, "relu"),
    "mlp8-tanh": Family(lambda: mlp(8, nn.Tanh), tabular, "tanh"),
    "cnn": Family(cnn, images, "relu"),
    "resnet-bn": Family(ResNet, images, "relu", own="torchvision"),
    "resmlp-bn": Family(lambda: ResidualMLP(norm=True), tabular, "relu"),
    "resmlp": Family(lambda: ResidualMLP(norm=False), tabular, "relu"),
    "tfm-relu": Family(lambda: EncoderClassifier("relu"), sequences, "relu"),
    "tfm-gelu": Family(lambda: EncoderClassifier("gelu"), sequences, "relu"),
    "preln": Family(PreLNTransformer, sequences, "relu", own="gpt2"),
    "gru": Family(GRUClassifier, sequences, "tanh"),
    "fmlp-silu": Family(lambda: FunctionalMLP(activation="silu"), tabular, "relu"),
    "fmlp-tanh": Family(lambda: FunctionalMLP(activation="tanh"), tabular, "tanh"),
}
INITS = ("zeros", "const", "tiny", "large", "default", "he", "xavier", "orthogonal")
OPTIMISERS = ("sgd", "sgdm", "adam", "adamw")


def initialise(model: nn.Module, strategy: str, activation: str) -> None:
    """Apply ``strategy`` to every weight matrix or kernel (biases zeroed; norm layers left as built)."""
    if strategy == "default":
        return
    gain = nn.init.calculate_gain(activation)
    with torch.no_grad():
        for name, p in model.named_parameters():
            norm_param = p.ndim == 1 and not name.split(".")[-1].startswith("bias")
            if norm_param:
                continue  # LayerNorm / BatchNorm scales stay 1
            if p.ndim == 1 or name.startswith("biases"):
                p.fill_(0.5 if strategy == "const" else 0.0)
                continue
            if strategy == "zeros":
                nn.init.zeros_(p)
            elif strategy == "const":
                nn.init.constant_(p, 0.5)
            elif strategy == "tiny":
                nn.init.normal_(p, 0.0, 0.01)
            elif strategy == "large":
                nn.init.normal_(p, 0.0, 1.0)
            elif strategy == "he":
                nn.init.kaiming_normal_(p, mode="fan_in", nonlinearity="relu")
            elif strategy == "xavier":
                nn.init.xavier_normal_(p)
            elif strategy == "orthogonal":
                nn.init.orthogonal_(p, gain=gain)
            elif strategy == "torchvision":  # torchvision's ResNet: fan_out He for convs, default Linear
                if p.ndim == 4:
                    nn.init.kaiming_normal_(p, mode="fan_out", nonlinearity="relu")
            elif strategy == "gpt2":
                nn.init.normal_(p, 0.0, 0.02)
            else:
                raise ValueError(f"unknown strategy {strategy!r}")


def optimiser(name: str, params: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.1)
    if name == "sgdm":
        return torch.optim.SGD(params, lr=0.05, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3)
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Run:
    family: str
    init: str
    optimiser: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.family}-{self.init}-{self.optimiser}-s{self.seed}"

    @property
    def half(self) -> str:
        """Development or test, fixed by the id alone: a run never changes halves."""
        return "dev" if hashlib.sha256(self.id.encode()).digest()[0] % 2 == 0 else "test"


def all_runs(seeds: int, families: Sequence[str]) -> list[Run]:
    """Every init of every family, each seed; the optimiser rotates so each init meets all four."""
    found = []
    for family in families:
        inits = INITS + ((FAMILIES[family].own,) if FAMILIES[family].own else ())
        for seed in range(seeds):
            for index, init in enumerate(inits):
                found.append(Run(family, init, OPTIMISERS[(index + seed) % len(OPTIMISERS)], seed))
    return found


def train(run: Run, trial: Path) -> dict[str, Any]:
    family = FAMILIES[run.family]
    g = torch.Generator().manual_seed(1000 + run.seed)
    x, y = family.data(g)
    torch.manual_seed(run.seed)
    model = family.build()
    initialise(model, run.init, family.activation)
    opt = optimiser(run.optimiser, model.parameters())
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(run.seed))
    losses: list[float] = []
    started = time.monotonic()
    # The product's own recorder, as a user runs it: what it cannot see, the rule cannot judge.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordingWarning)  # the GRU's fused gates: documented
        with Recorder(model, trial, steps=RECORDED_STEPS) as rec:
            while len(losses) < TRAIN_STEPS:
                for xb, yb in loader:
                    if len(losses) >= TRAIN_STEPS:
                        break
                    with rec.step():
                        loss = F.cross_entropy(model(xb), yb)
                        opt.zero_grad()
                        loss.backward()
                        rec.loss(loss)
                        opt.step()
                    losses.append(loss.item() if math.isfinite(loss.item()) else float("nan"))
    return {"id": run.id, "harness": HARNESS, **asdict(run), "losses": [round(v, 5) for v in losses],
            "seconds": round(time.monotonic() - started, 2)}


def cached(seeds: int, families: Sequence[str]) -> list[dict[str, Any]]:
    """Train what the cache lacks (one process, one torch thread), return every run's record."""
    CACHE.mkdir(exist_ok=True)
    index = CACHE / "runs.jsonl"
    records: dict[str, dict[str, Any]] = {}
    if index.exists():
        for line in index.read_text().splitlines():
            record = json.loads(line)
            if record.get("harness") == HARNESS:
                records[record["id"]] = record
    wanted = all_runs(seeds, families)
    for number, run in enumerate(wanted):
        trial = CACHE / "trials" / run.id
        if run.id in records and trial.is_dir():
            continue
        if trial.exists():
            for child in trial.iterdir():
                child.unlink()
        record = train(run, trial)
        records[run.id] = record
        with index.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"[{number + 1}/{len(wanted)}] {run.id}: loss {record['losses'][0]:.3g} -> "
              f"{final(record):.3g} ({record['seconds']} s)", file=sys.stderr, flush=True)
    return [records[run.id] for run in wanted]


# ----------------------------------------------------------------------------- labels


def final(record: dict[str, Any]) -> float:
    tail = [v for v in record["losses"][-20:] if math.isfinite(v)]
    return sum(tail) / len(tail) if len(tail) == 20 else math.inf


def label(records: Sequence[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """id -> (label, why), from the losses alone."""
    # The best init of the same architecture and optimiser, over every seed: with
    # three seeds and the optimiser rotating, six or seven inits meet each optimiser.
    best: dict[tuple[str, str], float] = {}
    for r in records:
        key = (r["family"], r["optimiser"])
        best[key] = min(best.get(key, math.inf), final(r))
    gains: dict[str, float] = {}
    for r in records:
        target = best[(r["family"], r["optimiser"])]
        gains[r["id"]] = (CHANCE - final(r)) / (CHANCE - target) if CHANCE - target >= LEARNED * CHANCE else math.nan
    # The trial cannot tell which optimiser will follow, so an init is judged over all its
    # runs (three seeds, three optimisers): healthy if every run trained, poor if none did,
    # borderline if the outcome depended on the optimiser or the seed.
    by_init: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        by_init.setdefault((r["family"], r["init"]), []).append(r)
    labels = {}
    for r in records:
        start = r["losses"][0]
        runs = by_init[(r["family"], r["init"])]
        outcome = ", ".join(f"{o['optimiser']} s{o['seed']} {gains[o['id']]:.0%}" for o in runs)
        known = [gains[o["id"]] for o in runs if math.isfinite(gains[o["id"]])]
        if r["init"] == "zeros":
            labels[r["id"]] = ("poor", "all-zero weights")
        elif not math.isfinite(start) or start > START_LIMIT * CHANCE:
            labels[r["id"]] = ("poor", f"first loss {start:.3g} > {START_LIMIT:g} x chance {CHANCE:.3g}")
        elif not math.isfinite(gains[r["id"]]):
            labels[r["id"]] = ("borderline", f"no init of {r['family']} with {r['optimiser']} learned within "
                               f"the budget (best end loss {best[(r['family'], r['optimiser'])]:.3g})")
        elif len(known) == len(runs) and min(known) >= HEALTHY_GAIN:
            labels[r["id"]] = ("healthy", f"every run of this init gained >= {HEALTHY_GAIN:.0%} of its "
                               f"optimiser's best: {outcome}")
        elif known and max(known) < POOR_GAIN:
            labels[r["id"]] = ("poor", f"no run of this init gained {POOR_GAIN:.0%} of its optimiser's best: "
                               f"{outcome}")
        else:
            labels[r["id"]] = ("borderline", f"the outcome depends on the optimiser or seed: {outcome}")
    return labels


# ----------------------------------------------------------------------------- judging


@dataclass
class Judged:
    record: dict[str, Any]
    label: str
    why: str
    verdict: poorinit.Verdict | None
    error: str = ""

    @property
    def fired(self) -> bool:
        # "Could not analyse" is not "passed": counted as fired, and listed.
        return self.verdict is None or self.verdict.fired

    @property
    def criteria(self) -> list[str]:
        if self.verdict is None:
            return ["error"]
        return [SHORT.get(c.check, c.check) for c in self.verdict.criteria if c.fired]


def judge(records: Sequence[dict[str, Any]], params: dict[str, Any], halves: Sequence[str]) -> list[Judged]:
    labels = label(records)  # from every run: the best init of a family may sit in either half
    judged = []
    for r in records:
        if Run(r["family"], r["init"], r["optimiser"], r["seed"]).half not in halves:
            continue
        name, why = labels[r["id"]]
        try:
            verdict = poorinit.analyze(CACHE / "trials" / r["id"], **params)
            judged.append(Judged(r, name, why, verdict))
        except poorinit.PoorinitError as error:
            judged.append(Judged(r, name, why, None, str(error)))
    return judged


def figure(j: Judged, check: str) -> str:
    if j.verdict is None:
        return "-"
    for c in j.verdict.criteria:
        if c.check == check:
            if c.status is poorinit.Status.NOT_APPLICABLE or c.figure is None:
                return "n/a"
            return f"**{c.figure:.3g}**" if c.fired else f"{c.figure:.3g}"
    return "-"


def rates(judged: Sequence[Judged]) -> list[str]:
    lines = []
    for name, verb in (("poor", "caught"), ("healthy", "flagged"), ("borderline", "fired on")):
        group = [j for j in judged if j.label == name]
        fired = sum(j.fired for j in group)
        lines.append(f"- {name}: {verb} {fired} of {len(group)} ({100 * fired / max(len(group), 1):.1f}%)")
    return lines


def family_table(judged: Sequence[Judged]) -> list[str]:
    lines = ["| family | poor caught | healthy flagged | borderline fired | criteria fired (all runs) |",
             "|---|---:|---:|---:|---|"]
    for family in dict.fromkeys(j.record["family"] for j in judged):
        group = [j for j in judged if j.record["family"] == family]
        cells = []
        for name in ("poor", "healthy", "borderline"):
            sub = [j for j in group if j.label == name]
            cells.append(f"{sum(j.fired for j in sub)}/{len(sub)}")
        counts = Counter(c for j in group for c in j.criteria)
        lines.append(f"| {family} | {' | '.join(cells)} | "
                     f"{' '.join(f'{k}:{v}' for k, v in sorted(counts.items())) or '-'} |")
    return lines


def run_table(judged: Sequence[Judged]) -> list[str]:
    lines = ["| run | label | loss start → end | verdict | act | grad | loss | init | sat |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for j in judged:
        r = j.record
        verdict = "error" if j.verdict is None else ("**fired** " + ",".join(j.criteria) if j.fired else "passed")
        figures = " | ".join(figure(j, c) for c in ("activation_variance", "gradient_spread", "loss_decrease",
                                                      "initial_loss", "saturation"))
        lines.append(f"| {r['id']} | {j.label} | {r['losses'][0]:.3g} → {final(r):.3g} | {verdict} | {figures} |")
    return lines


def wrong(judged: Sequence[Judged]) -> list[str]:
    lines = []
    for j in judged:
        if j.label == "borderline" or (j.label == "poor") == j.fired:
            continue
        kind = "missed poor start" if j.label == "poor" else "false flag"
        lines.append(f"- **{j.record['id']}** ({kind}; label: {j.why})")
        if j.verdict is None:
            lines.append(f"  - could not analyse: {j.error}")
            continue
        for c in j.verdict.criteria:
            lines.append(f"  - {c.check}: {c.status.value}: {c.reason}")
    return lines or ["none"]


def borderline(judged: Sequence[Judged]) -> list[str]:
    lines = []
    for j in judged:
        if j.label != "borderline":
            continue
        said = "could not analyse" if j.verdict is None else (
            "fired: " + "; ".join(c.reason for c in j.verdict.criteria if c.fired) if j.fired else "passed")
        lines.append(f"- {j.record['id']} ({j.why}): {said}")
    return lines or ["none"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated, default all")
    parser.add_argument("--half", choices=("dev", "test", "both"), default="both")
    parser.add_argument("--runs", action="store_true", help="also print one row per run")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a rule parameter, instead of its default (repeatable)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    params = dict(p.split("=", 1) for p in args.param)
    families = [f for f in args.families.split(",") if f]
    started = time.monotonic()
    records = cached(args.seeds, families)
    trained = sum(r["seconds"] for r in records)
    judging = time.monotonic()
    halves = ("dev", "test") if args.half == "both" else (args.half,)
    judged = judge(records, params, halves)
    for half in halves:
        group = [j for j in judged if Run(j.record["family"], j.record["init"], j.record["optimiser"],
                                          j.record["seed"]).half == half]
        title = "development half (tuned on)" if half == "dev" else "test half (never tuned on)"
        print(f"\n### {title}: {len(group)} runs\n")
        print("\n".join(rates(group)))
        print()
        print("\n".join(family_table(group)))
        print(f"\nMissed poor starts and flagged healthy ones ({half}):\n")
        print("\n".join(wrong(group)))
        print(f"\nBorderline runs ({half}), in neither rate:\n")
        print("\n".join(borderline(group)))
        if args.runs:
            print()
            print("\n".join(run_table(group)))
    rule = ", ".join(f"{k}={v}" for k, v in params.items()) or "default rule parameters"
    labels = Counter(j.label for j in judged)
    print(
        f"\n{len(judged)} runs ({', '.join(f'{v} {k}' for k, v in sorted(labels.items()))}), {rule}; "
        f"training {trained:.0f} s (cached runs included), judging {time.monotonic() - judging:.0f} s, "
        f"this invocation {time.monotonic() - started:.0f} s; {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"1 torch thread, torch {torch.__version__}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
