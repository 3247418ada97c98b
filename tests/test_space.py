from pathlib import Path

import optuna
import pytest

from autocompress.exceptions import SpaceError
from autocompress.space import Candidate, load_space, space_from_dict

BASE = {
    "name": "t",
    "input": {"resolution": [16, 20]},
    "stem": {"width": [8]},
    "stages": [{"depth": [1, 2], "width": [8, 16], "kernel": [3, 5], "expand": [2, 4]}],
}


def test_shipped_spaces_load() -> None:
    for name in ("fashion_mnist", "tiny"):
        space = load_space(name)
        assert space.size() > 10
        assert space.contains(space.largest()) and space.contains(space.smallest())


def test_trial_becomes_frozen_hashable_candidate_that_round_trips() -> None:
    space = load_space("tiny")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    cand = space.sample(study.ask())
    assert isinstance(cand, Candidate)
    assert hash(cand) == hash(Candidate.from_flat(cand.to_flat()))
    assert Candidate.from_flat(cand.to_flat()) == cand
    with pytest.raises(AttributeError):
        cand.resolution = 3  # type: ignore[misc]
    # one column per choice, with the stage dimensions spelled out
    assert {"resolution", "s0_depth", "s1_kernel", "s0_prune", "s1_precision", "kd_alpha"} <= set(cand.to_flat())


def test_only_dimensions_with_choices_are_sampled() -> None:
    space = load_space("tiny")
    study = optuna.create_study()
    trial = study.ask()
    space.sample(trial)
    assert "stem_width" not in trial.params  # fixed in tiny.yaml
    assert "s0_depth" in trial.params


def test_largest_and_smallest_are_extremes() -> None:
    space = space_from_dict(BASE)
    big, small = space.largest(), space.smallest()
    assert (big.resolution, big.stages[0].width, big.stages[0].kernel) == (20, 16, 5)
    assert (small.resolution, small.stages[0].depth, small.stages[0].expand) == (16, 1, 2)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"stages": [{"depth": [], "width": [8], "kernel": [3], "expand": [2]}]}, "stages.0: depth needs at least one choice"),
        ({"stages": [{"depth": [1], "width": [8], "kernel": [4], "expand": [2]}]}, "kernel sizes must be odd"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"input": {"resolution": "big"}}, "input.resolution"),
        ({"input": {"resolution": [2]}}, "within 4..1024"),
        ({"compression": {"kd_alpha": [1.5]}}, "kd_alpha must be within"),
        ({"compression": {"precision": ["int3"]}}, "compression.precision"),
        ({"stages": []}, "stages"),
    ],
)
def test_invalid_spaces_name_the_broken_field(patch: dict, message: str) -> None:
    with pytest.raises(SpaceError, match=message.replace(".", r"\.")):
        space_from_dict({**BASE, **patch})


def test_yaml_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninput: [unclosed\n")
    with pytest.raises(SpaceError, match=r"bad\.yaml is not valid YAML at line"):
        load_space(bad)
    with pytest.raises(SpaceError, match="does not exist"):
        load_space(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(SpaceError, match="must be a YAML mapping"):
        load_space(empty)


def test_supernet_fingerprint_ignores_compression_choices() -> None:
    a = space_from_dict(BASE)
    b = space_from_dict({**BASE, "compression": {"kd_alpha": [0.0, 0.5]}})
    c = space_from_dict({**BASE, "input": {"resolution": [16]}})
    assert a.arch_fingerprint() == b.arch_fingerprint() != c.arch_fingerprint()
