import copy
from pathlib import Path

import pytest
import torch

from autocompress.arch import plan
from autocompress.space import Candidate, StageChoice, load_space
from autocompress.supernet import MBConv, SubNet, Supernet


@pytest.fixture(scope="module")
def space():
    return load_space("fashion_mnist")


@pytest.fixture(scope="module")
def net(space):
    torch.manual_seed(0)
    n = Supernet(space, 1, 10, [0.3], [0.35])
    # give BN non-trivial statistics so equality checks mean something
    with torch.no_grad():
        for m in n.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return n.eval()


def _cands(space):
    import random

    from autocompress.arch import unpruned

    rng = random.Random(3)
    # the supernet holds architectures; a candidate's pruning is applied to its extracted
    # subnet afterwards (compress.prepare), so extraction takes the unpruned candidate
    return [space.largest(), space.smallest()] + [unpruned(space.random(rng)) for _ in range(4)]


def test_extracted_subnet_matches_supernet_output(space, net) -> None:
    for cand in _cands(space):
        sub = net.extract(cand).eval()
        x = torch.rand(3, 1, cand.resolution, cand.resolution)
        with torch.no_grad():
            assert torch.allclose(sub(x), net(x, cand), atol=1e-4), cand.describe()


def test_subnet_shapes_follow_the_candidate(space, net) -> None:
    cand = Candidate(
        resolution=24, stem_width=16,
        stages=(StageChoice(2, 24, 5, 2), StageChoice(1, 32, 3, 4), StageChoice(3, 96, 5, 2)),
        prune=(0.0,) * 3, precision=("fp32",) * 3, kd_alpha=0.0, kd_temperature=4.0, finetune_steps=0,
    )  # fmt: skip
    sub = net.extract(cand)
    assert isinstance(sub, SubNet)
    assert [len(s) for s in sub.stages] == [2, 1, 3]
    first: MBConv = sub.stages[0][0]
    assert first.expand[0].weight.shape == (32, 16, 1, 1)  # 16 in x expand 2
    assert first.dw[0].weight.shape == (32, 1, 5, 5)
    assert first.project[0].weight.shape == (24, 32, 1, 1)
    assert sub.stages[2][1].residual and not sub.stages[2][0].residual
    assert sub.classifier.weight.shape == (10, 96)
    assert sub(torch.rand(2, 1, 24, 24)).shape == (2, 10)
    # the plan the latency predictor prices is the network that was built
    blocks = plan(cand, space, 1, 10)
    assert [b.op for b in blocks] == ["stem"] + ["mbconv"] * 6 + ["head"]
    n_params = sum(p.numel() for n, p in sub.named_parameters() if "bn" not in n and ".1." not in n)
    assert n_params > 0


def test_weights_are_shared_slices_and_extraction_copies(space, net) -> None:
    cand = space.smallest()
    sub = net.extract(cand)
    k = cand.stages[0].kernel
    full = net.stages[0][0].dw.conv.weight
    off = (full.shape[-1] - k) // 2
    hid = sub.stages[0][0].dw[0].weight.shape[0]
    assert torch.equal(sub.stages[0][0].dw[0].weight, full[:hid, :, off : off + k, off : off + k])
    # two candidates read the same underlying weights: training one changes the other
    big = net.extract(space.largest())
    assert torch.equal(big.stem[0].weight[: cand.stem_width], sub.stem[0].weight)
    # the extracted module is standalone: changing it leaves the supernet alone
    before = copy.deepcopy(net.stem.conv.weight)
    with torch.no_grad():
        sub.stem[0].weight.add_(1.0)
    assert torch.equal(net.stem.conv.weight, before)


def test_supernet_trains_and_is_cached(tmp_path, fashion_dir) -> None:
    from autocompress.data import load_dataset
    from autocompress.supernet import load_or_train

    space = load_space("tiny")
    data = load_dataset("fashion-mnist", subset=2000, seed=0)
    net1, rep1, cached1 = load_or_train(space, data, seed=0, cache=tmp_path)
    net2, rep2, cached2 = load_or_train(space, data, seed=0, cache=tmp_path)
    assert (cached1, cached2) == (False, True)
    assert rep1 == rep2 and rep1.largest_test_acc > 0.3  # well above the 10% of chance
    for a, b in zip(net1.state_dict().values(), net2.state_dict().values()):
        assert torch.equal(a, b)
    # a different seed is a different cache entry
    _, _, cached3 = load_or_train(space, data, seed=1, cache=tmp_path)
    assert cached3 is False
    assert len(list((tmp_path / "supernets").glob("*.pt"))) == 2
    assert not list((tmp_path / "supernets").glob(".*tmp"))


def _with_training(space, **training):
    from autocompress.space import SearchSpace, SpaceModel

    raw = space.to_dict()
    raw["training"] = {**raw["training"], **training}
    return SearchSpace(SpaceModel.model_validate(raw))


def test_largest_first_phase_trains_the_largest_alone_then_the_sandwich(fashion_dir, monkeypatch) -> None:
    """Progressive shrinking: the first ``largest_first_epochs`` draw no subnet but the largest;
    the sandwich phase follows with its own steps, under one LR schedule."""
    import math

    from autocompress.data import load_dataset
    from autocompress.supernet import train_supernet

    base = load_space("tiny")
    space = _with_training(base, epochs=1, largest_first_epochs=1)
    data = load_dataset("fashion-mnist", subset=600, seed=0)
    per_epoch = math.ceil(data.split("train")[0].shape[0] / space.model.training.batch_size)
    drawn: list[int] = []
    steps: list[int] = []
    real_random = type(space).random
    monkeypatch.setattr(type(space), "random", lambda self, rng, **kw: drawn.append(len(steps)) or real_random(self, rng, **kw))
    _, report = train_supernet(space, data, seed=0, on_step=lambda s, total, loss: steps.append(s))
    assert report.steps == len(steps) == 2 * per_epoch and report.epochs == 2
    # random subnets are drawn in the sandwich phase only: one per step there (sandwich_random 1)
    assert drawn == list(range(per_epoch, 2 * per_epoch))


def test_largest_first_epochs_is_part_of_the_supernet_identity_only_when_used() -> None:
    base = load_space("fashion_mnist")
    assert _with_training(base, largest_first_epochs=0).arch_fingerprint() == base.arch_fingerprint()
    assert _with_training(base, largest_first_epochs=1).arch_fingerprint() != base.arch_fingerprint()
    with pytest.raises(ValueError, match="largest_first_epochs"):
        _with_training(base, largest_first_epochs=-1)


def test_out_of_memory_training_the_supernet_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A space too large for this machine's memory (resolution 1024, a large batch) says so and
    what to lower (exit 2), instead of torch's allocator error as an internal error."""
    from types import SimpleNamespace

    from autocompress import supernet
    from autocompress.exceptions import SpaceError

    data = SimpleNamespace(fingerprint="f", mean_std=lambda: (0.0, 1.0), channels=1, num_classes=10)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 2147483648 bytes. Error code 12 (Cannot allocate memory)")  # fmt: skip

    monkeypatch.setattr(supernet, "train_supernet", boom)
    with pytest.raises(SpaceError, match=r"out of memory training the supernet of space tiny \(largest network at 16 px, "
                       r"batch 64; it asked for 2\.1 GB at once\): lower input\.resolution"):  # fmt: skip
        supernet.load_or_train(load_space("tiny"), data, cache=tmp_path)  # type: ignore[arg-type]
    monkeypatch.setattr(supernet, "train_supernet", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        supernet.load_or_train(load_space("tiny"), data, cache=tmp_path)  # type: ignore[arg-type]


def test_the_supernet_cache_key_is_one_file_name_whatever_the_space_is_called() -> None:
    from types import SimpleNamespace

    from autocompress.space import space_from_dict
    from autocompress.supernet import supernet_key

    data = SimpleNamespace(fingerprint="f")
    raw = load_space("tiny").to_dict()
    for name, start in [("tiny", "tiny-v"), ("../../../tmp/x", ".._.._.._tmp_x-v"), ("my/space", "my_space-v"),
                        ("ça va", "ça_va-v")]:  # fmt: skip
        key = supernet_key(space_from_dict({**raw, "name": name}), data, 0)  # type: ignore[arg-type]
        assert key.startswith(start) and "/" not in key, key
