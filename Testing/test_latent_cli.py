"""`medseglens latents`: the latent browser's rows and one latent's map, on a tiny model and SAE."""

from __future__ import annotations

import json

import numpy as np
import pytest
from slicer_support import assets_fixture

from MedSegLensLib.cli.main import main
from MedSegLensLib.data import read_case, read_volume
from MedSegLensLib.models import load_model
from MedSegLensLib.sae import encode_case, load_sae

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


assets = assets_fixture("latent-cli")


@pytest.fixture(scope="module")
def firing(assets):
    """How many layer voxels each latent fires on, computed here without the CLI."""
    codes = encode_case(load_model(assets.model, device="cpu"), load_sae(assets.sae), read_case(assets.flipped))
    return codes.firing_counts(), codes


def latents(assets, *extra: str) -> int:
    return main(
        [
            "latents",
            "--model",
            str(assets.model),
            "--sae",
            str(assets.sae),
            "--case",
            str(assets.flipped),
            "--threads",
            "1",
            *extra,
        ]
    )


def test_lists_every_active_latent_and_writes_its_rows(assets, firing, tmp_path, capsys):
    counts, _ = firing
    out = tmp_path / "rows.json"
    assert latents(assets, "--top", "0", "--sort", "latent", "--json", str(out)) == 0
    lines = capsys.readouterr().out.splitlines()
    active = np.flatnonzero(counts).tolist()
    assert lines[0].startswith(f"planted: {len(active)} active latents of {len(counts)}")
    assert [int(line.split("|")[0]) for line in lines[1:]] == active  # sorted by index
    rows = json.loads(out.read_text())["latents"]
    assert {row["latent"]: row["active_voxels"] for row in rows} == {j: int(counts[j]) for j in active}
    assert latents(assets, "--json", str(out)) == 2  # no silent overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_filter_keeps_only_the_named_latent(assets, firing, capsys):
    counts, _ = firing
    strongest = int(np.argmax(counts))
    assert latents(assets, "--filter", str(strongest)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f"1 match '{strongest}'")
    assert len(lines) == 2 and int(lines[1].split("|")[0]) == strongest


def test_map_is_written_in_the_input_geometry_with_its_peak(assets, firing, tmp_path, capsys):
    counts, codes = firing
    latent = int(np.argmax(counts))
    out = tmp_path / "map.nrrd"
    assert latents(assets, "--top", "1", "--map", str(latent), "--out", str(out)) == 0
    mapped = read_volume(out)
    source = read_volume(assets.flipped / "planted-t1n.nii.gz")
    np.testing.assert_allclose(mapped.grid.affine, source.grid.affine, atol=1e-5)
    case = read_case(assets.flipped)
    expected = case.to_source(codes.latent_map(latent, on="image"))
    np.testing.assert_allclose(mapped.array, expected, rtol=1e-6, atol=1e-6)
    peak = np.unravel_index(int(np.argmax(mapped.array)), mapped.array.shape)
    peak_ras = (source.grid.affine @ np.array([*peak, 1.0]))[:3]
    printed = capsys.readouterr().out.splitlines()[-1]
    assert printed.startswith(f"{out}: map of latent {latent}, peak")
    assert printed.endswith("at RAS " + ", ".join(f"{v:.1f}" for v in peak_ras) + " mm")


def test_map_without_out_is_a_one_line_error(assets, capsys):
    assert latents(assets, "--map", "0") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medseglens latents: error: --map LATENT and --out FILE go together") and "\n" not in err
