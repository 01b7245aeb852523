"""MedSegLens: sparse-autoencoder lenses on brain-tumour segmentation networks.

The library is split by what a reader looks for: `data` (cases, cohorts, files),
`synth` (synthetic cohorts from real MNI anatomy), `metrics`, `models`
(backbones, training, inference), `sae` (activation capture and sparse
autoencoders), `interpret`, `diffing`, `steering`, `scene` (MRML scene code for
Slicer and slicer-core), `worker` (background process protocol), `viewer`
(browser), `cli`.
"""

__version__ = "0.1.0"
