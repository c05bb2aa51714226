"""A stacked group of K members trains what K separate runs with the same configs train.

Per-member groups equal the separate runs draw for draw; vectorised groups draw from one group
generator (flowstudy.train.group_batch) and are checked against a hand computation from those draws,
for independence, exact resume and training like separate runs.
"""

from __future__ import annotations

import json
import signal
from dataclasses import replace

import numpy as np
import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.flows.method import velocity_loss
from flowstudy.run import load_run
from flowstudy.train import Trainer, TrainingInterrupted, load_checkpoint
from flowstudy.train.eigen_step import eigenbasis_refusal
from flowstudy.train.group_batch import group_seed, heterogeneity
from flowstudy.train.stacked import StackedGroup


def _members(tiny_config, **extra):
    common = dict(arch="mlp-tiny", steps=10, batch_size=48, val_every=5, aug=["noise:0.3"], **extra)
    return [
        tiny_config(seed=0, **common),
        tiny_config(seed=1, lr=5e-3, weight_decay=0.05, **common),  # its own rate and decay
        tiny_config(seed=2, subset=128, base_field="gaussian", flow="si-linear", **common),  # own data, base, path
    ]


def _close(a, b, tol=1e-4):
    """Per tensor, ||b - a|| / ||a|| < tol: float32 rounding (batched vs single matrix products) that
    Adam's normalisation amplifies on near-zero gradients; measured ~1e-6 after 24 steps."""
    for key in a:
        error = float((b[key] - a[key]).norm() / a[key].norm().clamp_min(1e-12))
        assert error < tol, f"{key}: relative error {error:.2e}"


def _check_against_separate_runs(tmp_path, configs, tol=1e-4, **group_options):
    for k, cfg in enumerate(configs):
        Trainer(cfg, tmp_path / f"alone{k}", progress=False).fit()
    group = StackedGroup(configs, [tmp_path / f"group{k}" for k in range(len(configs))], **group_options)
    results = group.fit()
    for k in range(len(configs)):
        alone = load_checkpoint(tmp_path / f"alone{k}/checkpoints/last.pt")
        stacked = load_checkpoint(tmp_path / f"group{k}/checkpoints/last.pt")
        _close(alone["model"], stacked["model"], tol)
        _close(alone["ema"]["model"], stacked["ema"]["model"], tol)
        assert torch.equal(alone["rng"]["generator"], stacked["rng"]["generator"])  # the same draws
        assert stacked["best_val"] == pytest.approx(alone["best_val"], rel=1e-4)
        assert results[k].steps == configs[k].steps and stacked["finished"]
    return group


@pytest.mark.parametrize("vmap", [True, False])  # batched networks, or one after another (networks vmap refuses)
def test_group_matches_separate_runs(tmp_path, tiny_config, vmap):
    group = _check_against_separate_runs(tmp_path, _members(tiny_config), vmap=vmap)
    assert group.vmapped == vmap
    # member 2's path differs: the group falls back to per-member draws, and says why
    assert group.step_kind == "per-member" and "different flow paths" in group.fallback_reason
    # members are ordinary runs: load for sampling, and their optimiser state resumes a longer run
    run = load_run(tmp_path / "group1", device="cpu")
    assert run.model(torch.zeros(2, 16), torch.zeros(2)).shape == (2, 16)
    assert load_checkpoint(tmp_path / "group1/checkpoints/last.pt")["optimizer"]["state"]


def test_group_with_exact_ot_members_matches_separate_runs(tmp_path, tiny_config):
    """Exact-OT members draw, are paired on the host, then step with the others (on CUDA: between
    two graphs); each still trains what it trains alone."""
    configs = _members(tiny_config)
    configs[0], configs[2] = replace(configs[0], flow="otcfm"), replace(configs[2], flow="otcfm", subset=None)
    group = _check_against_separate_runs(tmp_path, configs)
    assert sorted(group.pairings) == [0, 2] and group.step_kind == "per-member"


def test_members_stop_early_on_their_own(tmp_path, tiny_config):
    # Member 1's validation loss rises from its second validation: with patience 1 it stops at
    # step 16 with its checkpoints written; member 0 (no patience) trains on to step 32.
    configs = [tiny_config(steps=32, batch_size=64, val_every=8), tiny_config(seed=1, steps=32, batch_size=64, val_every=8, patience=1)]
    group = StackedGroup(configs, [tmp_path / "a", tmp_path / "b"])
    rising = iter([1.0, 2.0, 3.0, 4.0])
    group.members[1].validation_loss = lambda: next(rising)
    results = group.fit()
    assert results[1].stopped_early and results[1].steps == 16 and results[1].best_val_loss == 1.0
    assert load_checkpoint(tmp_path / "b/checkpoints/last.pt")["step"] == 16
    assert load_checkpoint(tmp_path / "b/checkpoints/best.pt")["step"] == 8
    assert not results[0].stopped_early and results[0].steps == 32


def test_members_must_share_the_network(tmp_path, tiny_config):
    with pytest.raises(ConfigError, match="must share arch"):
        StackedGroup([tiny_config(), tiny_config(arch="mlp-small")], [tmp_path / "a", tmp_path / "b"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("arch", ["mlp-tiny", "mamba-tiny"])
def test_captured_group_matches_separate_runs_on_gpu(tmp_path, tiny_config, arch):
    model = {"chunk_size": 4} if arch.startswith("mamba") else {}
    configs = [replace(c, device="cuda", arch=arch, model=model) for c in _members(tiny_config)]
    group = _check_against_separate_runs(tmp_path, configs, tol=1e-3)  # cuBLAS picks other kernels for bmm
    assert group.graph is not None
    assert group.vmapped  # with mamba-ssm installed, "auto" scans switch to Triton (models.ssm.backend.scans_for_vmap)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_captured_group_with_exact_ot_and_one_batch_epochs_on_gpu(tmp_path, tiny_config):
    """Exact-OT members between two graphs; members whose subset is one batch (every step starts an
    epoch; the capture's warm-up steps must stay within it)."""
    configs = [replace(c, device="cuda", flow="otcfm") for c in _members(tiny_config)[:2]]
    group = _check_against_separate_runs(tmp_path / "ot", configs, tol=1e-3)
    assert group.graph is not None and group.pair_graph is not None
    small = [replace(c, device="cuda", subset=40, batch_size=64) for c in _members(tiny_config)[:2]]
    group = _check_against_separate_runs(tmp_path / "small", small, tol=1e-3)
    assert group.graph is not None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_groups_captured_and_replayed_at_once_in_threads_match_one_after_another_on_gpu(tmp_path, tiny_config):
    """The threads executor trains groups at once, each on its own stream: captures (one at a time,
    beside other threads' replays and allocations), exact-OT host steps and a single captured run
    give each run what it gets when trained on its own."""
    from flowstudy.study.executors import ThreadExecutor

    members = [replace(c, device="cuda", steps=40, val_every=20) for c in _members(tiny_config)[:2]]
    jobs = {
        "mlp": members,
        "otcfm": [replace(c, flow="otcfm") for c in members],
        "mamba": [replace(c, arch="mamba-tiny", model={"chunk_size": 4}) for c in members],
        "single": members[:1],
    }

    def train(root):
        def fit(name):
            configs, dirs = jobs[name], [root / f"{name}{k}" for k in range(len(jobs[name]))]
            group = StackedGroup(configs, dirs) if len(configs) > 1 else Trainer(configs[0], dirs[0], progress=False)
            group.fit()
            return {"captured": (group.graph if len(configs) > 1 else getattr(group.step_fn, "graph", None)) is not None}
        return fit

    serial = {name: train(tmp_path / "serial")(name) for name in jobs}
    threaded = dict(ThreadExecutor(workers=len(jobs)).map_cells(train(tmp_path / "threads"), list(jobs)))
    assert threaded == serial and all(out["captured"] for out in serial.values()), threaded
    for name, configs in jobs.items():
        for k in range(len(configs)):
            a, b = (load_checkpoint(tmp_path / mode / f"{name}{k}/checkpoints/last.pt") for mode in ("serial", "threads"))
            _close(a["model"], b["model"], tol=1e-5)
            assert torch.equal(a["rng"]["generator"], b["rng"]["generator"])


@pytest.mark.parametrize("vectorise", [True, False])
def test_interrupted_group_resumes_to_the_uninterrupted_weights(tmp_path, tiny_config, vectorise):
    configs = [tiny_config(seed=s, steps=10, batch_size=48, val_every=5, aug=["noise:0.3"]) for s in (0, 1)]
    StackedGroup(configs, [tmp_path / f"full{k}" for k in range(2)], vectorise=vectorise).fit()

    class StopAfterFirstValidation:
        def on_validation(self, trainer, step, val_loss):
            if step == 5:
                trainer.stop.request(signal.SIGTERM)  # what the signal handler sets

    cut = StackedGroup(configs, [tmp_path / f"cut{k}" for k in range(2)], vectorise=vectorise)
    cut.members[0].callbacks.append(StopAfterFirstValidation())
    with pytest.raises(TrainingInterrupted, match="interrupted"):
        cut.fit()
    assert [load_checkpoint(tmp_path / f"cut{k}/checkpoints/last.pt")["step"] for k in range(2)] == [6, 6]
    resumed_group = StackedGroup(configs, [tmp_path / f"cut{k}" for k in range(2)], vectorise=vectorise)
    resumed_group.fit(resume=True)
    assert resumed_group.step_kind == ("vectorised" if vectorise else "per-member")
    for k in range(2):
        full = load_checkpoint(tmp_path / f"full{k}/checkpoints/last.pt")
        resumed = load_checkpoint(tmp_path / f"cut{k}/checkpoints/last.pt")
        if vectorise:  # the group's stream continues exactly: bit-identical weights
            assert resumed_group.batches.exact_resume
            for part in ("model", "ema"):
                a, b = (full[part], resumed[part]) if part == "model" else (full[part]["model"], resumed[part]["model"])
                assert all(torch.equal(a[n], b[n]) for n in a), part
            assert torch.equal(full["group"]["generator"], resumed["group"]["generator"])
        else:
            _close(full["model"], resumed["model"], tol=1e-6)
            _close(full["ema"]["model"], resumed["ema"]["model"], tol=1e-6)
        assert resumed["step"] == 10 and resumed["best_val"] == pytest.approx(full["best_val"], rel=1e-6)


# ----------------------------------------------------------------- vectorised groups
def test_a_resume_that_cannot_continue_the_stream_starts_a_new_one(tmp_path, tiny_config, capsys):
    configs = [tiny_config(seed=s, steps=10, batch_size=48, val_every=5) for s in (0, 1)]
    dirs = [tmp_path / f"r{k}" for k in range(2)]

    class StopAfterFirstValidation:
        def on_validation(self, trainer, step, val_loss):
            trainer.stop.request(signal.SIGTERM)  # the group stops at the end of step 6

    cut = StackedGroup(configs, dirs)
    cut.members[0].callbacks.append(StopAfterFirstValidation())
    with pytest.raises(TrainingInterrupted):
        cut.fit()
    record = load_checkpoint(dirs[0] / "checkpoints/last.pt")["group"]
    assert record["seeds"] == [0, 1] and record["index"] == 0 and record["steps"] == 6
    swapped = StackedGroup(configs[::-1], dirs[::-1])  # other member order: not the saved stream
    results = swapped.fit(resume=True)
    assert not swapped.batches.exact_resume and "a new stream of draws starts" in capsys.readouterr().err
    assert [r.steps for r in results] == [10, 10]


def _homogeneous(tiny_config, **extra):
    """Three members that can share a vectorised step: own seeds, rates, data, strengths, base fields."""
    common = dict(steps=10, batch_size=48, val_every=5, flow="si-linear", **extra)
    return [
        tiny_config(seed=0, aug=["noise:0.3", "dropout:0.1"], **common),
        tiny_config(seed=1, lr=5e-3, aug=["noise:0.1", "dropout:0.3"], base_field="gaussian", **common),
        tiny_config(seed=2, subset=100, aug=["noise:0.5", "dropout:0.0"], weight_decay=0.05, **common),
    ]


def test_vectorised_loss_equals_the_hand_computed_loss_from_the_group_draws(tmp_path, tiny_config):
    """Step 1 of each member, recomputed from the draws the module docstring documents."""
    configs = [replace(c, steps=1) for c in _homogeneous(tiny_config)]
    StackedGroup(configs, [tmp_path / f"g{k}" for k in range(3)], vectorise=True).fit()
    logged = [json.loads((tmp_path / f"g{k}/metrics.jsonl").read_text().splitlines()[0])["loss"] for k in range(3)]

    members = [Trainer(c, tmp_path / f"ref{k}", progress=False) for k, c in enumerate(configs)]
    for m in members:
        m.setup(None)  # the initial weights, data and base field the group's members start from
    K, B, D = 3, 48, members[0].dim
    sizes = [m.train_x1.shape[0] for m in members]
    assert sizes == [256, 256, 100]  # the third member trains on its own subset
    gen = torch.Generator().manual_seed(group_seed([0, 1, 2], [0, 0, 0]))
    keys = torch.rand(K, max(sizes), generator=gen)  # the first epochs
    keys[2, 100:] = 2.0
    perms = torch.sort(keys, dim=1, stable=True).indices
    noise = torch.randn(K, B, D, generator=gen)  # augmentations, in order
    drop = torch.rand(K, B, D, generator=gen)
    x0 = torch.randn(K * B, D, generator=gen).view(K, B, D)
    t = torch.rand(K * B, generator=gen).view(K, B)
    z = torch.randn(K * B, D, generator=gen).view(K, B, D)
    for k, m in enumerate(members):
        (_, s_noise), (_, p_drop) = m.augmentations
        x1 = (m.train_x1[perms[k, :B]] + s_noise * noise[k]) * (drop[k] >= p_drop).float()
        x_t, u_t = m.flow.path.interpolate(x0[k], x1, t[k], z[k])
        with torch.no_grad():
            expected = float(velocity_loss(m.field(x_t, t[k]), u_t, m.flow.loss_weight))
        assert logged[k] == pytest.approx(expected, rel=1e-5), k


def test_vectorised_members_get_their_own_draws(tmp_path, tiny_config):
    """Equal seeds, different data: different noise and times; the same group twice: the same draws."""
    configs = [tiny_config(seed=0, batch_size=48), tiny_config(seed=0, batch_size=48, subset=100)]

    def first_draws(name):
        group = StackedGroup(configs, [tmp_path / f"{name}{k}" for k in range(2)], vectorise=True)
        group.prepare([False, False])
        group.batches.advance()
        return group.batches.sample()

    a, b = first_draws("a"), first_draws("b")
    assert torch.equal(a.t, b.t) and torch.equal(a.x_t, b.x_t)  # deterministic given the seeds
    assert not torch.allclose(a.t[0], a.t[1])
    x0 = a.x_t - a.t[..., None] * a.u_t  # straight path: x_t - t·(x1 - x0) = x0, the noise draw
    assert (x0[0] - x0[1]).abs().min() > 1e-6  # no noise value shared between the members


def test_stacked_base_fields_equal_each_members_own(tmp_path, tiny_config):
    configs = [replace(c, base_field="gaussian") for c in _homogeneous(tiny_config)]
    group = StackedGroup(configs, [tmp_path / f"b{k}" for k in range(3)], vectorise=True)
    group.prepare([False] * 3)
    x, t = torch.randn(3, 5, 16), torch.rand(3, 5)
    stacked = group.batches.with_base(torch.zeros(3, 5, 16), x, t)  # vmapped over [K, D, D] buffers
    own = torch.stack([m.base(x[k], t[k]) for k, m in enumerate(group.members)])
    torch.testing.assert_close(stacked, own, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(own[0], own[2], atol=1e-3)  # each member's own fit (member 2: its subset)
    group.batches.base_template = "per-member"  # the path for base fields that do not stack
    torch.testing.assert_close(group.batches.with_base(torch.zeros(3, 5, 16), x, t), own)


def test_vectorised_draws_do_not_depend_on_how_the_networks_run(tmp_path, tiny_config):
    """vmap (batched matrix products) or one network after another (networks vmap refuses): the same group."""
    configs = _homogeneous(tiny_config)
    for vmap in (True, False):
        group = StackedGroup(configs, [tmp_path / f"{vmap}{k}" for k in range(3)], vmap=vmap)
        group.fit()
        assert group.step_kind == "vectorised" and group.vmapped == vmap
    for k in range(3):
        a, b = (load_checkpoint(tmp_path / f"{vmap}{k}/checkpoints/last.pt") for vmap in (True, False))
        _close(a["model"], b["model"])
        assert torch.equal(a["group"]["generator"], b["group"]["generator"])


def test_vectorised_epochs_are_each_members_own_permutations(tmp_path, tiny_config):
    configs = [tiny_config(seed=0, batch_size=48), tiny_config(seed=1, batch_size=48, subset=100)]
    group = StackedGroup(configs, [tmp_path / f"e{k}" for k in range(2)], vectorise=True)
    group.prepare([False, False])
    batches = group.batches
    for k, n in enumerate((256, 100)):
        assert torch.equal(batches.perm[k, :n].sort().values, torch.arange(n))  # an epoch of its own rows
    starts = []
    for _ in range(8):
        before = batches.perm.clone()
        batches.advance()
        batches.sample()
        starts.append([not torch.equal(before[k], batches.perm[k]) for k in range(2)])
        assert np.array_equal(batches.pos.numpy(), batches.pos_host)  # host mirror, no sync needed
    # 256 rows: 5 batches of 48 per epoch (the 16-row tail skipped); 100 rows: 2
    assert [s[0] for s in starts] == [False, False, False, False, False, True, False, False]
    assert [s[1] for s in starts] == [False, False, True, False, True, False, True, False]


def test_vectorised_group_trains_like_separate_runs(tmp_path, tiny_config):
    """Validation curves (6 points, 60 steps) of 3 seeds: grouped and alone agree within seed noise."""
    seeds = (0, 1, 2)
    configs = [tiny_config(seed=s, steps=60, batch_size=32, val_every=10, aug=["noise:0.1"]) for s in seeds]
    for s, c in zip(seeds, configs):
        Trainer(c, tmp_path / f"alone{s}", progress=False).fit()
    group = StackedGroup(configs, [tmp_path / f"group{s}" for s in seeds])
    group.fit()
    assert group.step_kind == "vectorised"

    def curves(name):  # [seeds, validations]
        rows = [[json.loads(r) for r in (tmp_path / f"{name}{s}/metrics.jsonl").read_text().splitlines()] for s in seeds]
        return np.array([[r["val_loss"] for r in run if "val_loss" in r] for run in rows])

    alone, stacked = curves("alone"), curves("group")
    assert stacked.shape == alone.shape == (3, 6)
    assert (stacked[:, -1] < 0.85 * stacked[:, 0]).all()  # it trains (alone: 1.21 -> 0.89 on average)
    noise = np.maximum(alone.std(0), stacked.std(0))  # seed noise per validation
    assert (np.abs(stacked.mean(0) - alone.mean(0)) < 3 * noise + 0.01).all(), (alone, stacked)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_captured_vectorised_group_matches_its_eager_steps_on_gpu(tmp_path, tiny_config):
    configs = [replace(c, device="cuda") for c in _homogeneous(tiny_config)]
    eager = StackedGroup(configs, [tmp_path / f"eager{k}" for k in range(3)], capture=False)
    eager.fit()
    captured = StackedGroup(configs, [tmp_path / f"graph{k}" for k in range(3)])
    captured.fit()
    assert captured.graph is not None and captured.step_kind == eager.step_kind == "vectorised"
    for k in range(3):  # the same group stream, replayed or not
        a, b = (load_checkpoint(tmp_path / f"{name}{k}/checkpoints/last.pt") for name in ("eager", "graph"))
        _close(a["model"], b["model"], tol=1e-3)
        assert torch.equal(a["group"]["generator"], b["group"]["generator"])


def test_heterogeneous_groups_say_why_they_draw_per_member(tmp_path, tiny_config):
    def reason(*configs):
        members = [Trainer(c, tmp_path / f"h{i}", progress=False) for i, c in enumerate(configs)]
        for m in members:
            m.setup(None)
        return heterogeneity(members)

    assert reason(tiny_config(), tiny_config(seed=1, aug=["noise:0.2"], subset=64)) is not None  # kinds differ
    assert "mixup" in reason(tiny_config(aug=["mixup:0.2"]), tiny_config(aug=["mixup:0.2"]))
    assert "time samplers" in reason(tiny_config(), tiny_config(flow_options={"time_sampler": "logit_normal"}))
    assert "fewer than a batch" in reason(tiny_config(), tiny_config(subset=16))
    assert reason(tiny_config(aug=["noise:0.1"]), tiny_config(seed=4, aug=["noise:0.4"], base_field="gaussian")) is None
    with pytest.raises(ConfigError, match="cannot draw for all members at once: .*augmentation kinds"):
        StackedGroup([tiny_config(), tiny_config(aug=["noise:0.1"])], [tmp_path / "a", tmp_path / "b"], vectorise=True).fit()


def _subspace_members(tiny_config, **extra):
    """Members with a subspace residual: each trains in its own base's eigen-coordinates."""
    common = dict(steps=10, batch_size=48, val_every=5, base_field="gaussian", base_fit="train", residual_rank=4, aug=["noise:0.3"], **extra)
    return [tiny_config(seed=0, **common), tiny_config(seed=1, lr=5e-3, **common), tiny_config(seed=2, subset=128, **common)]


def test_subspace_members_train_in_their_own_eigenbasis_like_separate_runs(tmp_path, tiny_config):
    group = _check_against_separate_runs(tmp_path, _subspace_members(tiny_config), vectorise=False)
    rotations = [m.space.rotation for m in group.members]
    assert all(r is not None for r in rotations)
    assert not torch.allclose(rotations[0].abs(), rotations[2].abs(), atol=1e-2)  # member 2: its subset's own fit
    # the vectorised step gathers each member's rotated rows, their r leading coordinates, and adds
    # its elementwise base there (Trainer._leading_coordinates)
    group = StackedGroup(_subspace_members(tiny_config), [tmp_path / f"v{k}" for k in range(3)], vectorise=True)
    group.prepare([False] * 3)
    r = group.members[0].model.rank
    assert r < 16 and group.members[0].space.loss_scale == r / 16 and bool((group.loss_offsets > 0).all())
    x, t = torch.randn(3, 5, 16), torch.rand(3, 5)
    for k, m in enumerate(group.members):
        torch.testing.assert_close(group.batches.x1[k, : m.train_x1.shape[0]], (m.train_x1 @ m.space.rotation)[:, :r])
    assert "eigvecs" not in group.batches.base_buffers  # the diagonal base never reads R: K x D x D floats not stacked
    whole = StackedGroup(_subspace_members(tiny_config), [tmp_path / f"w{k}" for k in range(3)], vectorise=True, leading=False)
    whole.prepare([False] * 3)
    assert whole.batches.x1.shape[2] == 16 and all(m.space.loss_scale == 1.0 and m.space.rotation is not None for m in whole.members)
    own = torch.stack([(m.field.base(x[k] @ m.space.rotation.T, t[k]) @ m.space.rotation)[:, :r] for k, m in enumerate(group.members)])
    torch.testing.assert_close(group.batches.with_base(torch.zeros(3, 5, r), x[..., :r], t), own, rtol=1e-4, atol=1e-5)


def test_a_group_with_a_member_that_cannot_rotate_trains_in_data_coordinates(tmp_path, tiny_config):
    configs = _subspace_members(tiny_config)
    configs[1] = replace(configs[1], aug=["noise:0.3", "dropout:0.1"])  # dropout does not commute with a rotation
    group = StackedGroup(configs, [tmp_path / f"m{k}" for k in range(3)])
    group.prepare([False] * 3)
    assert all(m.space.rotation is None and m.space.x1 is m.train_x1 for m in group.members)
    assert "dropout" in eigenbasis_refusal(group.members[1].model, group.members[1].augmentations)
    assert eigenbasis_refusal(group.members[0].model, group.members[0].augmentations) is None


def test_flat_stack_round_trips_views_and_refuses_mixed_dtypes():
    from flowstudy.train.flat_update import FlatStack

    tensors = [torch.randn(3, 4, 5), torch.randn(3, 7), torch.randn(3, 2, 1, 2)]  # K = 3 members
    flat_stack = FlatStack([t[0] for t in tensors], members=3)
    flat = flat_stack.pack(tensors)
    assert flat.shape == (3, 20 + 7 + 4)
    views = flat_stack.views(flat)
    assert all(torch.equal(v, t) for v, t in zip(views, tensors))
    flat[1, 20] = 42.0  # the views share the flat storage: member 1's first entry of the second tensor
    assert views[1][1, 0] == 42.0
    with pytest.raises(ConfigError, match="one dtype.*float32.*float64"):
        FlatStack([torch.zeros(2), torch.zeros(2, dtype=torch.float64)], members=1)
