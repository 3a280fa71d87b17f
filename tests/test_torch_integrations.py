"""Recording from Hugging Face's Trainer and from Lightning, on tiny real models built from a config (no download)."""

from __future__ import annotations

import os

import h5py
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import poorinit  # noqa: E402
from poorinit.trial import Trial  # noqa: E402


class Tokens(torch.utils.data.Dataset):
    """Random token sequences with labels: enough for a few training steps."""

    def __init__(self, count: int = 64, length: int = 12, vocab: int = 50, labels: int = 3) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (count, length), generator=generator)
        self.labels = torch.randint(0, labels, (count,), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.labels[index]}


def test_the_trainer_callback_records_a_trial_analyze_judges(tmp_path):
    transformers = pytest.importorskip("transformers", reason="the extra 'hf' (transformers) is not installed")
    from poorinit.torch.hf import PoorinitCallback

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, num_labels=3,
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(config)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, gradient_accumulation_steps=2,
        max_steps=4, learning_rate=1e-3, report_to=[], save_strategy="no", logging_strategy="no",
        use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Tokens(),
                                   callbacks=[PoorinitCallback(tmp_path / "t", steps=3)])
    trainer.train()

    trial = Trial(tmp_path / "t")
    assert trial.steps() == [0, 1, 2] and trial.finished
    (step_file,) = trial.step_files(0)
    with h5py.File(step_file.path, "r") as f:
        assert f.attrs["num_classes"] == 3  # BERT computes its cross-entropy inside forward
        tensors = f["tensors"]
        gelu = [name for name in tensors if name.endswith("gelu_input")]
        # Two micro-batches per step (gradient accumulation): each layer's GELU twice.
        assert sorted(gelu) == [
            f"bert.encoder.layer.{i}.intermediate.intermediate_act_fn.call{c}.gelu_input"
            for i in range(2) for c in (0, 1)
        ]
        assert tensors[gelu[0]].attrs["after"] == b"Linear"
        assert "gradient/bert.encoder.layer.0.attention.self.query.weight" in tensors
    verdict = poorinit.analyze(tmp_path / "t", steps=3, activation_inputs_regex=".*gelu_input")
    statuses = {c.check: c.status.value for c in verdict.criteria}
    assert statuses["activation_variance"] != "not_applicable" and statuses["gradient_spread"] != "not_applicable"


def test_a_gpt2_records_its_gelu_as_a_gelu_and_its_attention_softmax(tmp_path):
    """GPT-2's NewGELUActivation computes 0.5 x (1 + tanh(...)): the layer is a GELU, not a tanh to saturate."""
    transformers = pytest.importorskip("transformers", reason="the extra 'hf' (transformers) is not installed")
    from poorinit.torch import Recorder

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=16,
                                      bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, 50, (4, 10))
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with Recorder(model, tmp_path / "t", steps=1) as rec, rec.step():
        loss = model(input_ids=ids, labels=ids).loss
        optimiser.zero_grad()
        loss.backward()
        rec.loss(loss)
        optimiser.step()
    (step_file,) = Trial(tmp_path / "t").step_files(0)
    with h5py.File(step_file.path, "r") as f:
        names = sorted(name for name in f["tensors"] if name.endswith("_input"))
    assert names == [
        f"transformer.h.{i}.{leaf}" for i in range(2) for leaf in ("attn.softmax_input", "mlp.act.gelu_input")
    ]


# Lightning's own deprecation and advice warnings (a torch API it still uses, "few workers").
@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning:lightning")
@pytest.mark.filterwarnings("ignore:.*does not have many workers")
def test_the_lightning_callback_records_a_trial(tmp_path):
    lightning = pytest.importorskip("lightning", reason="lightning is not installed")
    from poorinit.torch.lightning import PoorinitLightningCallback

    nn, F = torch.nn, torch.nn.functional

    class Classifier(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(self.body(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    generator = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(
        torch.randn(64, 8, generator=generator), torch.randint(0, 3, (64,), generator=generator)
    )
    trainer = lightning.Trainer(
        max_steps=4, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path / "out"),
        callbacks=[PoorinitLightningCallback(tmp_path / "t", steps=3)],
    )  # fmt: skip
    trainer.fit(Classifier(), torch.utils.data.DataLoader(data, batch_size=8))

    trial = Trial(tmp_path / "t")
    assert trial.steps() == [0, 1, 2] and trial.finished
    (step_file,) = trial.step_files(0)
    with h5py.File(step_file.path, "r") as f:
        names: list[str] = []
        f["tensors"].visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        assert {"body.1.relu_input", "loss", "gradient/body.0.weight"} <= set(names)
        assert f.attrs["num_classes"] == 3
