"""Latent labels come from `medseglens interpret`'s latents.json (format medseglens-latents v1)."""

from __future__ import annotations

import json

import pytest

from MedSegLensLib.diffing import label_text, labels_for
from MedSegLensLib.errors import InputError


def test_interpret_document_names_latents_by_index_and_a_bad_file_is_refused(tmp_path):
    document = {
        "format": "medseglens-latents",
        "version": 1,
        "category_counts": {"edema": 1},
        "latents": [
            {"index": 0, "active": False, "category": "inactive", "description": "never fires"},
            {"index": 1, "active": True, "category": "edema", "description": "peritumoural edema (AUROC 0.97)"},
        ],
    }
    sae_dir = tmp_path / "sae"
    sae_dir.mkdir()
    (sae_dir / "latents.json").write_text(json.dumps(document))
    labels = labels_for(sae_dir)
    assert label_text(labels, 1) == "edema: peritumoural edema (AUROC 0.97)"
    assert label_text(labels, 0) == "inactive: never fires" and label_text(labels, 7) == ""
    assert labels_for(tmp_path / "no-labels-here") == {}
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(InputError, match="broken.json"):
        labels_for(sae_dir, broken)
