"""SAE model and training behaviour on tiny planted data."""

from __future__ import annotations

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from MedSegLensLib.errors import ParameterError
from MedSegLensLib.sae import (
    SAEConfig,
    SAETrainingSettings,
    SparseAutoencoder,
    TensorRows,
    Trainer,
    evaluate_fidelity,
    objective,
    sparse_ops,
)
from MedSegLensLib.sae.init import geometric_median
from MedSegLensLib.sae.synthetic import planted_rows

torch.set_num_threads(2)


def reference_loss(sae: SparseAutoencoder, x: torch.Tensor, dead: torch.Tensor, alpha: float) -> torch.Tensor:
    """The same objective written densely with autograd (as in the papers)."""
    k = sae.config.k
    pre = (x - sae.b_dec) @ sae.W_enc.T + sae.b_enc
    if sae.config.kind == "topk":
        values, idx = pre.topk(k, dim=1)
        acts = torch.zeros_like(pre).scatter(1, idx, values.relu())
    else:
        values, idx = pre.flatten().topk(x.shape[0] * k)
        acts = torch.zeros_like(pre.flatten()).scatter(0, idx, values.relu()).view_as(pre)
    recon = acts @ sae.W_dec + sae.b_dec
    total = (x - x.mean(0)).pow(2).sum()
    k_aux = sae.d_in // 2
    aux_values, aux_idx = torch.where(dead[None], pre, -torch.inf).topk(k_aux, dim=1)
    aux_recon = torch.zeros_like(pre).scatter(1, aux_idx, aux_values.relu()) @ sae.W_dec
    aux = (aux_recon - (x - recon).detach()).pow(2).sum() / total * min(1.0, float(dead.sum()) / k_aux)
    return (recon - x).pow(2).sum() / total + alpha * aux


@pytest.mark.parametrize("kind", ["topk", "batchtopk"])
def test_sparse_gradients_equal_dense_autograd(kind):
    gen = torch.Generator().manual_seed(1)
    sae = SparseAutoencoder(SAEConfig(16, 64, 4, kind), generator=gen)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1, generator=gen)
        sae.b_dec.normal_(0, 1, generator=gen)
    x = torch.randn(200, 16, generator=gen)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::3] = True
    cut = objective.BatchTopKCut() if kind == "batchtopk" else None
    objective.loss_and_gradients(sae, x, dead, cut, auxk_alpha=0.5)
    ours = {name: p.grad.clone() for name, p in sae.named_parameters()}
    sae.zero_grad(set_to_none=True)
    reference_loss(sae, x, dead, 0.5).backward()
    for name, param in sae.named_parameters():
        assert torch.allclose(ours[name], param.grad, rtol=1e-4, atol=1e-6 * float(param.grad.abs().max())), name


def test_batchtopk_cut_is_exact_with_a_stale_floor():
    gen = torch.Generator().manual_seed(2)
    sae = SparseAutoencoder(SAEConfig(8, 32, 3, "batchtopk"), generator=gen)
    x = torch.randn(100, 8, generator=gen)
    cut = objective.BatchTopKCut()
    cut.floor = 50.0  # far above every pre-activation: must fall back, not return fewer codes
    codes = objective.select(sae, x, None, cut).codes
    pre = sae.pre_activations(x).flatten()
    expected = pre.topk(300).values.clamp_min(0)
    assert torch.allclose(codes.values.sort().values, expected[expected > 0].sort().values)


def test_batchtopk_first_batch_cut_is_exact_when_its_first_chunk_misleads(monkeypatch):
    """The first batch's floor comes from its first row chunk; rows there far above the rest set it too high,
    and the batch must be redone rather than keep fewer than rows * k codes."""
    monkeypatch.setattr(objective, "CHUNK_ELEMENTS", 64)  # chunks of 64 rows
    gen = torch.Generator().manual_seed(4)
    sae = SparseAutoencoder(SAEConfig(8, 32, 3, "batchtopk"), generator=gen)
    x = torch.randn(300, 8, generator=gen)
    x[:64] *= 10
    cut = objective.BatchTopKCut()
    codes = objective.select(sae, x, None, cut).codes
    pre = sae.pre_activations(x).flatten()
    expected = pre.topk(900).values.clamp_min(0)
    assert torch.allclose(codes.values.sort().values, expected[expected > 0].sort().values)
    assert 0 < cut.floor <= float(codes.values.min())


@pytest.fixture(params=[1, 2], ids=["one-thread-numpy", "parallel-torch"])
def search_threads(request):
    """Both selection paths: NumPy on one thread, PyTorch's parallel ops on more."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("n_latents", [64, 40])  # blocks of 32 latents, and the plain search when they do not fit
def test_threshold_search_finds_the_same_entries_in_the_same_order_as_torch(search_threads, n_latents):
    gen = torch.Generator().manual_seed(3)
    pre = torch.randn(50, n_latents, generator=gen)
    pre[7, 5] = pre[9, 33] = 1.5  # entries exactly at the threshold are not above it
    pre[3, 2] = 0.1  # float32(0.1) is above 0.1 as a double, not in float32, where torch compares
    for threshold in (1.5, 2.5, 0.0, 0.1):
        codes = sparse_ops.above(pre, threshold, row_offset=100)
        where = (pre > threshold).nonzero()
        assert torch.equal(codes.rows, where[:, 0] + 100) and torch.equal(codes.latents, where[:, 1])
        assert torch.equal(codes.values, pre[where[:, 0], where[:, 1]])


def test_topk_selection_keeps_each_rows_k_largest_positive_entries(search_threads):
    pre = torch.randn(30, 50, generator=torch.Generator().manual_seed(5))
    pre[4] = -1.0 - torch.rand(50)  # a row with no positive entry keeps none
    codes = sparse_ops.topk_per_row(pre, 6, row_offset=10)
    expected = pre.topk(6, dim=1).indices
    for row in range(30):
        mine = codes.latents[codes.rows == row + 10]
        wanted = {int(j) for j in expected[row] if pre[row, j] > 0}
        assert sorted(mine.tolist()) == sorted(wanted)
    assert torch.equal(codes.values, pre[codes.rows - 10, codes.latents]) and codes.latents.dtype == torch.int64


def test_planted_dictionary_is_recovered():
    rows, atoms = planted_rows(40_000, 24, 48, 3, noise=0.01)
    config = SAETrainingSettings(n_latents=96, k=3, kind="topk", total_rows=300_000, batch_size=1024, seed=0)
    sae = Trainer(TensorRows(rows), config).run(show_progress=False)
    cosine = (sae.W_dec @ atoms.T).numpy()
    latent, atom = linear_sum_assignment(-cosine)
    matched = cosine[latent, atom]
    assert (matched > 0.9).mean() >= 0.85, sorted(matched)[:10]


def dead_latent_run(auxk_alpha: float) -> float:
    rows, _ = planted_rows(20_000, 16, 48, 3, noise=0.01)
    config = SAETrainingSettings(
        n_latents=64,
        k=3,
        kind="topk",
        total_rows=200_000,
        batch_size=1000,
        auxk_alpha=auxk_alpha,
        dead_after_rows=3000,
        seed=0,
    )
    trainer = Trainer(TensorRows(rows), config)
    with torch.no_grad():  # silence half the latents: positive but tiny pre-activations, never selected
        trainer.sae.W_enc[:32] *= 0.02
    sae = trainer.run(show_progress=False)
    return evaluate_fidelity(sae, TensorRows(planted_rows(5000, 16, 48, 3, row_seed=1)[0]).scan(1000)).dead_fraction


def test_auxk_revives_dead_latents():
    without, with_auxk = dead_latent_run(0.0), dead_latent_run(1.0 / 32)
    assert without >= 0.4  # the silenced half stays dead without AuxK
    assert with_auxk <= without / 3


def test_threshold_export_reproduces_batch_codes_on_held_out_rows():
    rows, _ = planted_rows(30_000, 16, 48, 4)
    held, _ = planted_rows(8192, 16, 48, 4, row_seed=7)
    config = SAETrainingSettings(n_latents=96, k=4, kind="batchtopk", total_rows=200_000, batch_size=1024, seed=0)
    sae = Trainer(TensorRows(rows), config).run(show_progress=False)
    batch_codes = objective.select(sae, held - sae.b_dec, None, objective.BatchTopKCut()).codes
    batch = set(zip(batch_codes.rows.tolist(), batch_codes.latents.tolist()))
    single = sae.encode_sparse(held)
    alone = set(zip(single.rows.tolist(), single.latents.tolist()))
    # The threshold is the mean cut of 8 calibration batches; a held-out batch's own cut
    # differs by sampling noise, so only entries right at the cut may flip.
    assert len(batch & alone) / len(batch | alone) > 0.95
    assert abs(single.values.numel() / held.shape[0] - 4) < 0.3
    one_voxel = sae.encode(held[:1])  # a single row needs no batch
    assert torch.allclose(one_voxel, sae.encode(held)[:1])


def test_folding_the_input_scale_keeps_codes_and_reconstruction():
    rows, _ = planted_rows(5000, 8, 16, 2, scale=40.0)
    trainer = Trainer(
        TensorRows(rows), SAETrainingSettings(n_latents=32, k=2, kind="topk", total_rows=20_000, batch_size=500)
    )
    trainer.run(show_progress=False)
    scaled = trainer.sae
    assert abs(float(scaled.input_scale) - (8 / rows.pow(2).sum(1).mean()).sqrt()) < 0.05 * float(scaled.input_scale)
    exported = trainer.export()
    assert float(exported.input_scale) == 1.0
    x = rows[:300]
    torch.testing.assert_close(exported.encode(x), scaled.encode(x) / float(scaled.input_scale), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(exported.forward(x), scaled.forward(x), rtol=1e-4, atol=1e-4)
    assert torch.allclose(exported.W_dec.norm(dim=1), torch.ones(32), atol=1e-5)


def test_geometric_median_resists_outliers():
    gen = torch.Generator().manual_seed(3)
    points = torch.randn(2000, 4, generator=gen) + torch.tensor([5.0, -2.0, 0.0, 1.0])
    points[:100] += 1000.0  # 5 % wild outliers drag the mean by 50
    median = geometric_median(points)
    assert (median - torch.tensor([5.0, -2.0, 0.0, 1.0])).norm() < 0.3
    assert (points.mean(0) - median).norm() > 40


def test_untrained_batchtopk_refuses_threshold_encoding_and_bad_configs():
    sae = SparseAutoencoder(SAEConfig(4, 8, 2, "batchtopk"))
    with pytest.raises(ParameterError, match="no learned threshold"):
        sae.encode(torch.randn(3, 4))
    with pytest.raises(ParameterError, match=r"takes \(rows, 4\)"):
        SparseAutoencoder(SAEConfig(4, 8, 2, "topk")).encode(torch.randn(3, 5))
    with pytest.raises(ParameterError, match="k=9"):
        SAEConfig(4, 8, 9)
    with pytest.raises(ParameterError, match="kind"):
        SAEConfig(4, 8, 2, "relu")


def test_bfloat16_selection_keeps_fidelity():
    rows, _ = planted_rows(20_000, 32, 64, 4)
    held = planted_rows(4096, 32, 64, 4, row_seed=5)[0]
    fvus = {}
    for dtype in ("float32", "bfloat16"):
        config = SAETrainingSettings(n_latents=128, k=4, total_rows=100_000, batch_size=1024, compute_dtype=dtype)
        sae = Trainer(TensorRows(rows), config).run(show_progress=False)
        fvus[dtype] = evaluate_fidelity(sae, [held]).fvu
    assert fvus["bfloat16"] < fvus["float32"] * 1.1 + 0.01, fvus
    assert fvus["float32"] < 0.5
