"""Everything the steering benchmark needs, built from its protocol: cohorts, the U-Net, the SAE, the units.

Each step is skipped when its output is complete, so an interrupted build
continues. The folder layout under the results folder `out`:

    cohorts/<name>/     synthetic cohorts (fresh seeds of the protocol)
    model/              the U-Net trained on adult_train only
    store/, sae/        activation rows (first 16 adult_train + every calibration case) and the SAE
    contrasts.json      per population: latent firing frequencies and mean activations per tumour label
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ...data import discover_cohorts
from ...fileio import write_json_atomic
from ...models import (
    TrainingSettings,
    default_config,
    labelled_cases,
    load_model,
    tiny_config,
    train_model,
)
from ...models.storage import MODEL_JSON
from ...processes import exclusive, lock_holder_alive
from ...sae import DEFAULT_QUOTAS, ActivationStore, SAETrainingSettings, load_sae
from ...sae.defaults import default_for
from ...sae.extract import complete_store, extract_activations
from ...sae.fit import fit_layer_sae
from ...synth import ensure_cohort
from ..scales import latent_scales_for, sae_sha256
from .protocol import Protocol

TUMOUR_LABELS = {"tumour": (1, 2, 3), "NCR": (1,), "ED": (2,), "ET": (3,)}
SMALL_LAYER = "model.1.submodule.2"  # the tiny U-Net's 1/2-resolution decoder
SAE_ADULT_CASES = 16
CONTRASTS = "contrasts.json"
QUANTILE = 0.99
REFERENCE = "adult"


@dataclass
class BenchInputs:
    model_dir: Path
    sae_dir: Path
    cohorts: dict[str, Path]
    contrasts: dict


def cohort_dir(out: Path, name: str) -> Path:
    return Path(out) / "cohorts" / name


def build_inputs(protocol: Protocol, out: Path, log=print) -> BenchInputs:
    """Cohorts (train and calibration first), the U-Net, the SAE and the contrasts; each step once."""
    out = Path(out)
    folders = {c.name: cohort_dir(out, c.name) for c in protocol.cohorts()}
    first = [c for c in protocol.cohorts() if c.role in ("train", "calibration")]
    later = [c for c in protocol.cohorts() if c.role not in ("train", "calibration")]
    _cohorts(protocol, first, folders, log)
    model_dir = out / "model"
    spec = protocol.data["model"]
    model_lock = Path(str(model_dir) + ".lock")
    if not (model_dir / MODEL_JSON).is_file() and model_lock.exists() and lock_holder_alive(model_lock):
        _cohorts(protocol, later, folders, log)  # another shard trains: generate the test cohorts meanwhile
    with exclusive(model_dir, lambda: (model_dir / MODEL_JSON).is_file()) as build:
        if build:
            small = protocol.small
            epochs = int(protocol.data["small"]["epochs"] if small else spec["epochs"])
            log(f"training the U-Net ({'tiny' if small else 'default'}, {epochs} epochs) on adult_train")
            network = (tiny_config if small else default_config)("unet")
            train_folders = [folders[c.name] for c in protocol.cohorts("train")]
            with torch.enable_grad():
                train_model(
                    network,
                    labelled_cases(train_folders),
                    model_dir,
                    TrainingSettings(epochs=epochs, seed=int(spec["seed"]), val_every=int(spec["val_every"])),
                    resume=True,
                )
    model = load_model(model_dir, device="cpu")
    sae_dir, store_dir = out / "sae", out / "store"
    with exclusive(sae_dir, lambda: (sae_dir / "sae.json").is_file()) as build:
        if build:
            _train_sae(protocol, model, folders, sae_dir, store_dir, log)
    sae = load_sae(sae_dir)
    contrasts_path = out / CONTRASTS
    with exclusive(contrasts_path, contrasts_path.is_file) as build:
        if build:
            latent_scales_for(sae_dir, sae, sae_sha256(sae_dir))
            contrasts = measure_contrasts(sae, ActivationStore(store_dir), protocol.random_seed, protocol.directions)
            write_json_atomic(contrasts_path, contrasts)
    contrasts = json.loads(contrasts_path.read_text())
    _cohorts(protocol, later, folders, log)
    return BenchInputs(model_dir, sae_dir, folders, contrasts)


def _cohorts(protocol: Protocol, cohorts, folders: dict, log, poll_seconds: float = 10.0) -> None:
    """Generate the cohorts; concurrent shards each take a cohort nobody is generating, then wait for the rest."""
    while True:
        pending = [c for c in cohorts if not (folders[c.name] / "manifest.csv").is_file()]
        if not pending:
            return
        built = False
        for cohort in pending:
            folder = folders[cohort.name]
            lock = Path(str(folder) + ".lock")
            if lock.exists() and lock_holder_alive(lock):
                continue
            built |= ensure_cohort(
                folder,
                cohort.population,
                cohort.cases,
                cohort.seed,
                spacing=protocol.spacing,
                severity=float(protocol.data["severity"]),
                log=log,
                guard=exclusive,
            )
        if not built:
            time.sleep(poll_seconds)


def _train_sae(protocol: Protocol, model, folders: dict, sae_dir: Path, store_dir: Path, log) -> None:
    default = default_for(model)
    small = protocol.data["small"]
    layer = SMALL_LAYER if protocol.small else default.layer
    latents = int(small["sae_latents"]) if protocol.small else default.n_latents
    k = int(small["sae_k"]) if protocol.small else default.k
    rows = int(small["sae_rows"] if protocol.small else protocol.data["sae"]["rows"])
    batch = int(small["sae_batch"] if protocol.small else protocol.data["sae"]["batch"])
    seed = int(protocol.data["sae"]["seed"])
    adult = discover_cohorts([folders[c.name] for c in protocol.cohorts("train")])
    cases = adult[:SAE_ADULT_CASES] + discover_cohorts([folders[c.name] for c in protocol.cohorts("calibration")])
    log(f"capturing {layer} on {len(cases)} cases, training the SAE ({latents} latents, k {k}, {rows} rows)")
    store = complete_store(store_dir) if store_dir.exists() else None
    if store is None:
        store = extract_activations(model, layer, cases, store_dir, dict(DEFAULT_QUOTAS), seed, resume=True)
    config = SAETrainingSettings(
        n_latents=latents,
        k=k,
        kind=default.kind,
        total_rows=rows,
        batch_size=batch,
        init_rows=min(16384, store.n_rows),
        seed=seed,
        checkpoint_every=50,
    )
    with torch.enable_grad():
        fit_layer_sae(model, layer, store, sae_dir, config, resume=True, overwrite=True, show_progress=False)


@torch.no_grad()
def measure_contrasts(sae, store: ActivationStore, random_seed: int, directions: int, batch_size: int = 16384) -> dict:
    """Per population over tumour rows: latent firing frequency and mean activation per label group;
    random unit directions; and each direction's unit (QUANTILE of |<h, u>| over all tumour rows)."""
    populations = [case["population"] for case in store.cases]
    names = sorted(set(populations))
    index_of = torch.tensor([names.index(p) for p in populations])
    fired = torch.zeros(len(names), sae.n_latents, dtype=torch.float64)
    sums = {g: torch.zeros(len(names), sae.d_in, dtype=torch.float64) for g in TUMOUR_LABELS}
    counts = {g: torch.zeros(len(names), dtype=torch.float64) for g in TUMOUR_LABELS}
    kept = []
    for rows, meta in tqdm(
        store.scan_with_metadata(batch_size), desc="contrasts", unit="batch", file=sys.stderr, disable=True
    ):
        label = meta["label"].long()
        tumour = torch.isin(label, torch.tensor(TUMOUR_LABELS["tumour"]))
        if not bool(tumour.any()):
            continue
        rows, label = rows[tumour].float(), label[tumour]
        population = index_of[meta["case_index"].long()[tumour]]
        kept.append(rows)
        codes = sae.encode_sparse(rows)
        fired.index_put_(
            (population[codes.rows], codes.latents), torch.ones(len(codes.rows), dtype=torch.float64), accumulate=True
        )
        for group, values in TUMOUR_LABELS.items():
            inside = torch.isin(label, torch.tensor(values))
            sums[group].index_add_(0, population[inside], rows[inside].double())
            counts[group] += torch.bincount(population[inside], minlength=len(names)).double()
    tumour_rows = torch.cat(kept) if kept else torch.zeros(0, sae.d_in)
    generator = torch.Generator().manual_seed(int(random_seed))
    random = torch.randn(directions, sae.d_in, generator=generator)
    random = random / random.norm(dim=1, keepdim=True)
    out = {
        "populations": names,
        "rows": {n: int(counts["tumour"][i]) for i, n in enumerate(names)},
        "frequency": {n: (fired[i] / counts["tumour"][i].clamp_min(1)).tolist() for i, n in enumerate(names)},
        "mean": {
            g: {n: (sums[g][i] / counts[g][i].clamp_min(1)).tolist() for i, n in enumerate(names)}
            for g in TUMOUR_LABELS
        },
        "label_rows": {g: {n: int(counts[g][i]) for i, n in enumerate(names)} for g in TUMOUR_LABELS},
        "random": random.tolist(),
        "random_units": [direction_unit(tumour_rows, d) for d in random],
    }
    out["mean_diff"] = {}
    for population in names:
        if population == REFERENCE:
            continue
        entries = []
        for group in TUMOUR_LABELS:
            a, p = names.index(REFERENCE), names.index(population)
            means = sums[group] / counts[group].clamp_min(1)[:, None]
            difference = means[a] - means[p]
            direction = (difference / difference.norm().clamp_min(1e-12)).float()
            entries.append(
                {
                    "group": group,
                    "direction": direction.tolist(),
                    "unit": direction_unit(tumour_rows, direction),
                    "rows": [int(counts[group][a]), int(counts[group][p])],
                }
            )
        out["mean_diff"][population] = entries
    return out


def direction_unit(rows: torch.Tensor, direction: torch.Tensor) -> float:
    """The typical activation along a unit direction: QUANTILE of |<h, u>| over the rows."""
    if not len(rows):
        return 1.0
    projection = (rows.double() @ direction.double()).abs()
    sample = projection if len(projection) <= 1_000_000 else projection[:: len(projection) // 1_000_000 + 1]
    return float(np.quantile(sample.numpy(), QUANTILE))
