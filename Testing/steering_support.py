"""Tiny models, SAEs and planted cases for the steering tests (no tests here).

SAE training rows come from a steering session's own windows (the layer output
h of every window, with the reference label under each layer voxel), so these
helpers need nothing from the capture code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from models_support import MODALITY_CONTRAST, tiny_case_arrays, write_case

from MedSegLensLib.data import read_case
from MedSegLensLib.sae import SAEInfo, SAETrainingSettings, TensorRows, save_sae, train_sae
from MedSegLensLib.steering import SteeringSession, SteeringSpec, compute_latent_scales, sae_sha256, save_latent_scales
from MedSegLensLib.steering.region import region_mask
from MedSegLensLib.steering.windows import layer_gate, padded, run_windows, spatial_slices

UNET_DECODER = "model.1.submodule.2"
SEGFORMER_DECODER = "decoder.fuse_act"


def session_rows(session: SteeringSession) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows x C activations, label under each row's layer voxel) over all windows of a session."""
    label = session.case.label if session.case.label is not None else np.zeros(session.case.shape, np.uint8)
    label = torch.from_numpy(padded(label.astype(np.int64), session.pads))
    rows, labels = [], []
    for batch in session.batches:
        h = batch.h
        rows.append(h.movedim(1, -1).reshape(-1, h.shape[1]))
        for window in batch.slices:
            under = label[window][tuple(slice(0, None, s) for s in session.stride)]
            labels.append(under.reshape(-1))
    return torch.cat(rows), torch.cat(labels)


def train_layer_sae(
    model,
    case_folders: list[Path],
    layer: str,
    n_latents: int = 16,
    k: int = 2,
    seed: int = 0,
    folder: Path | None = None,
):
    """An SAE on the layer's window activations of `case_folders` (saved with latent scales when `folder` is given)."""
    rows, labels = [], []
    for case_folder in case_folders:
        session = SteeringSession(model, None, read_case(case_folder), layer)
        r, lab = session_rows(session)
        rows.append(r)
        labels.append(lab)
    rows_t, labels_t = torch.cat(rows), torch.cat(labels)
    total = max(4096, 40 * 512)
    sae, summary = train_sae(
        TensorRows(rows_t),
        SAETrainingSettings(
            n_latents=n_latents, k=k, kind="topk", total_rows=total, batch_size=512, init_rows=2048, seed=seed
        ),
        show_progress=False,
    )
    info = SAEInfo(model.fingerprint, layer, training=summary, architecture=model.config.architecture)
    sae.info = info
    if folder is not None:
        save_sae(sae, folder, info)
        scales = compute_latent_scales(sae, [rows_t], sae_sha256(folder))
        save_latent_scales(scales, folder)
    return sae, rows_t, labels_t


def write_planted_case(root: Path, case_id: str, seed: int, edema_flair: float = 1.25, edema_t2: float = 1.15) -> Path:
    """A tiny case whose edema is faint (FLAIR and T2 contrast lowered), so the model under-calls it."""
    rng = np.random.default_rng(seed)
    images, labels = tiny_case_arrays(rng)
    for name, value in (("t2f", edema_flair), ("t2w", edema_t2)):
        brain = images[name] > 0
        base = MODALITY_CONTRAST[name]
        scale = np.where(labels == 2, value / base[2], 1.0)
        images[name] = np.where(brain, images[name] * scale, 0).astype(np.float32)
    return write_case(root, case_id, images, labels, np.diag([2.0, 2.0, 2.0, 1.0]))


def write_shifted_cohort(root: Path, population: str, count: int, seed: int) -> Path:
    """A cohort of planted faint-edema cases labelled as `population` (with a manifest)."""
    rows = ["case_id,population,t1n,t1c,t2w,t2f,seg"]
    for number in range(count):
        case_id = f"{population}-{number:03d}"
        write_planted_case(root, case_id, seed=seed * 1000 + number, edema_flair=1.05, edema_t2=1.02)
        files = ",".join(f"{case_id}/{case_id}-{m}.nii.gz" for m in (*MODALITY_CONTRAST, "seg"))
        rows.append(f"{case_id},{population},{files}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


LAYERS = {"unet": UNET_DECODER, "segformer": SEGFORMER_DECODER}


def tiny_steering_setups(workdir: Path, tag: str) -> dict[str, tuple]:
    """Per architecture: the tiny trained model, an SAE at its decoder layer (folder `tag`-ARCH, trained once)
    and the cohort's case folders."""
    from models_support import tiny_training_cohort, trained_tiny_model

    from MedSegLensLib.models import load_model

    torch.set_num_threads(1)
    out = {}
    for arch in ("unet", "segformer"):
        model = load_model(trained_tiny_model(arch, workdir), device="cpu")
        cases = sorted(p for p in tiny_training_cohort(arch, workdir).iterdir() if p.is_dir())
        folder = workdir / f"{tag}-{arch}"
        if not folder.exists():
            train_layer_sae(model, cases, LAYERS[arch], n_latents=16, k=2, folder=folder)
        out[arch] = (model, folder, cases)
    return out


def long_case(workdir: Path, name: str, length: int, seed: int, box: tuple[slice, slice, slice]):
    """A `length`x24x24 case at 2 mm (longer than one window) and a mask file of one box in it."""
    from models_support import write_nifti

    images, labels = tiny_case_arrays(np.random.default_rng(seed), shape=(length, 24, 24))
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    case = read_case(write_case(workdir / name, name, images, labels, affine))
    mask = np.zeros((length, 24, 24), np.uint8)
    mask[box] = 1
    return case, write_nifti(workdir / f"{name}-mask.nii.gz", mask, affine)


def reference_logits(session: SteeringSession, spec: SteeringSpec) -> torch.Tensor:
    """The steered network written out plainly: a forward hook edits the layer output in every window."""
    model, sae = session.model, session.sae
    directions = sae.W_dec[list(spec.latents)]
    strengths = torch.tensor(spec.strengths)
    typical = session.scales.typical[list(spec.latents)]
    mask = region_mask(spec.region, session.prepared.grid, session.predicted_tumour())
    full = None if mask is None else torch.from_numpy(padded(mask.astype(np.float32), session.pads))
    state = {}

    def hook(_module, _inputs, out):
        rows = out.movedim(1, -1).reshape(-1, out.shape[1])
        z = sae.encode(rows)[:, list(spec.latents)].reshape(*out.shape[:1], *out.shape[2:], -1).movedim(-1, 1)
        gate = torch.ones_like(z[:, :1]) if full is None else layer_gate(full, state["slices"], session.stride)
        if spec.mode == "additive":
            target = (strengths * typical).view(1, -1, 1, 1, 1) * torch.ones_like(z)
            change = target
        elif spec.mode == "multiplicative":
            change = (strengths.view(1, -1, 1, 1, 1) - 1) * z
        else:
            change = (strengths * typical).view(1, -1, 1, 1, 1) - z
        return out + torch.einsum("bjxyz,jc->bcxyz", change * gate, directions)

    def predictor(windows, coords):
        state["slices"] = spatial_slices(coords)
        return model.network(windows)

    layer = dict(model.network.named_modules())[session.layer]
    handle = layer.register_forward_hook(hook)
    try:
        return run_windows(session.prepared.tensor, model.config, predictor)
    finally:
        handle.remove()
