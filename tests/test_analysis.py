"""Writer -> reader -> rule: whole trials judged through the public API."""

import h5py
import numpy as np
import pytest

import poorinit
from poorinit import NothingToAnalyseError, Status, TrialWriter, analyze
from poorinit.format import step_file_name

from .conftest import write_synthetic_trial


def statuses(verdict):
    return {c.check: c.status for c in verdict.criteria}


def test_healthy_trial_passes(healthy_trial):
    verdict = analyze(healthy_trial)
    assert not verdict.fired and verdict.exit_code == 0
    assert statuses(verdict) == {
        "activation_variance": Status.PASSED,
        "gradient_spread": Status.PASSED,
        "loss_decrease": Status.PASSED,
        "saturation": Status.NOT_APPLICABLE,  # ReLU only: nothing bounded to saturate
        "initial_loss": Status.NOT_APPLICABLE,  # K unknown: no num_classes given or recorded
    }
    assert verdict.steps == tuple(range(10))


def test_vanishing_trial_fires_on_the_start_criteria(vanishing_trial):
    verdict = analyze(vanishing_trial)
    assert verdict.fired and verdict.exit_code == 1
    assert statuses(verdict) == {
        "activation_variance": Status.FIRED,
        "gradient_spread": Status.FIRED,
        # Flat at 0.693 with noise 0.01: not moving, but not beyond its noise either.
        "loss_decrease": Status.PASSED,
        "saturation": Status.NOT_APPLICABLE,
        "initial_loss": Status.NOT_APPLICABLE,
    }


def test_only_the_first_steps_are_read(tmp_path):
    trial = write_synthetic_trial(tmp_path / "t", steps=12)
    (trial / step_file_name(11)).write_bytes(b"garbage beyond the analysed steps")
    assert not analyze(trial).fired


def test_only_selected_datasets_are_read(tmp_path):
    trial = write_synthetic_trial(tmp_path / "t", steps=10)
    with h5py.File(trial / step_file_name(0), "a") as f:
        f.create_dataset("tensors/notes", data=np.array([b"x"]))  # not a float: fine unless selected
    assert not analyze(trial).fired


def test_parameters_pass_through_as_strings(healthy_trial):
    verdict = analyze(healthy_trial, threshold="1.0", steps="3.0")
    assert verdict.fired and verdict.steps == (0, 1, 2)


def test_regex_selects_activation_inputs(healthy_trial):
    verdict = analyze(healthy_trial, activation_inputs_regex="net.0.relu_input")
    assert statuses(verdict)["activation_variance"] is Status.NOT_APPLICABLE


def test_regex_matching_another_collection_is_explained(healthy_trial):
    verdict = analyze(healthy_trial, activation_inputs_regex="gradient/.*")
    result = verdict.criteria[0]
    assert result.status is Status.NOT_APPLICABLE
    assert "marked as another collection" in result.reason


def test_nothing_to_evaluate_is_an_error_that_lists_what_is_there(tmp_path):
    with TrialWriter(tmp_path) as w:
        w.write_step(0, tensors={"conv1.output": (np.ones(4), ["outputs"])})
    with pytest.raises(NothingToAnalyseError, match=r"no criterion could be evaluated.*hold: conv1.output"):
        analyze(tmp_path)


def test_missing_mode_is_an_error(healthy_trial):
    with pytest.raises(NothingToAnalyseError, match="no step files of mode 'eval'.*train"):
        analyze(healthy_trial, mode="eval")


def test_fewer_steps_and_gaps_are_warned(tmp_path):
    with TrialWriter(tmp_path) as w:
        for step in (0, 1, 2, 6, 7, 8, 9):
            w.write_step(step, losses={"loss": 1.0 - 0.1 * step})
    verdict = analyze(tmp_path)
    assert verdict.warnings == (
        "analysed 7 of steps=10 steps: the trial has no more",
        "steps missing from the trial: 3-5",
    )


def test_several_workers_are_pooled(tmp_path):
    trial = write_synthetic_trial(tmp_path / "t", workers=3)
    assert poorinit.Trial(trial).workers == (0, 1, 2)
    assert not analyze(trial).fired


def test_public_api_is_listed():
    for name in poorinit.__all__:
        assert getattr(poorinit, name) is not None


def test_a_criterion_missing_data_at_some_steps_is_warned(tmp_path):
    trial = write_synthetic_trial(tmp_path / "t")
    with h5py.File(trial / step_file_name(4), "a") as f:
        del f["tensors/loss"]
    verdict = analyze(trial)
    assert "loss decrease: no tensor matched collection 'losses' at steps 4" in verdict.warnings


def test_saturation_on_a_relu_network_is_absent_not_blind(healthy_trial, tmp_path):
    """A network without bounded activations has nothing to saturate: a fact, not a blind spot.

    Without any activation input recorded, the same criterion could not look, and says so.
    """
    relu = {c.check: c for c in analyze(healthy_trial).criteria}
    assert relu["saturation"].absent and "has no tanh, sigmoid" in relu["saturation"].reason
    assert not relu["initial_loss"].absent  # it could not look: K is unknown

    rng = np.random.default_rng(0)
    with TrialWriter(tmp_path / "no-activations") as writer:
        for step in range(10):
            writer.write_step(
                step, gradients={"gradient/w": rng.normal(0, 0.1, 200)}, losses={"loss": 2.0 - 0.1 * step}
            )
    blind = {c.check: c for c in analyze(tmp_path / "no-activations").criteria}
    assert blind["saturation"].status is Status.NOT_APPLICABLE and not blind["saturation"].absent
    assert "no activation input was recorded" in blind["saturation"].reason
