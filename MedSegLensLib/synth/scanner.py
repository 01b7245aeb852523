"""The scanner: what a field strength and protocol do to an ideal image.

Applied to the whole head, then the brain is cut out (skull stripping), as in
BraTS preprocessing: a smooth coil bias (one per session, shared by the four
sequences), lower in-plane resolution, thick axial slices re-interpolated onto
the grid, motion ghosts along the phase-encoding (anterior-posterior) axis,
Rician noise, and an arbitrary scanner gain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from .populations import PopulationShift
from .random_fields import smooth_field, uniform

BIAS_LENGTH_MM = 90.0
GAIN_RANGE = (400.0, 1200.0)  # white matter in scanner units
PHASE_AXIS = 1  # anterior-posterior


@dataclass(frozen=True)
class Protocol:
    """One case's draw of the population's scanner parameters."""

    noise: float
    slice_thickness_mm: float
    inplane_blur_mm: float
    bias_amplitude: float
    ghosting: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def sample_protocol(rng: np.random.Generator, shift: PopulationShift) -> Protocol:
    return Protocol(
        noise=uniform(rng, shift.noise),
        slice_thickness_mm=uniform(rng, shift.slice_thickness_mm),
        inplane_blur_mm=uniform(rng, shift.inplane_blur_mm),
        bias_amplitude=uniform(rng, shift.bias_amplitude),
        ghosting=uniform(rng, shift.ghosting),
    )


def coil_bias(rng: np.random.Generator, shape: tuple[int, ...], protocol: Protocol, spacing: float) -> np.ndarray:
    """The receive coil's smooth sensitivity profile, shared by every sequence of a session."""
    if protocol.bias_amplitude <= 0:
        return np.ones(shape, dtype=np.float32)
    return np.exp(protocol.bias_amplitude * smooth_field(rng, shape, spacing, BIAS_LENGTH_MM)).astype(np.float32)


def acquire(
    rng: np.random.Generator, image: np.ndarray, brain: np.ndarray, bias: np.ndarray, protocol: Protocol, spacing: float
) -> np.ndarray:
    """Scanner image (float32, positive inside `brain`, 0 outside) of an ideal image in white-matter units."""
    signal = np.clip(image, 0.0, None).astype(np.float32) * bias
    if protocol.inplane_blur_mm > 0:
        sigma = protocol.inplane_blur_mm / 2.355 / spacing
        signal = ndimage.gaussian_filter(signal, (sigma, sigma, 0.0))
    signal = thick_slices(signal, protocol.slice_thickness_mm, spacing, offset=rng.uniform())
    if protocol.ghosting > 0:
        signal = _ghost(signal, protocol.ghosting)
    if protocol.noise > 0:
        real = signal + protocol.noise * rng.standard_normal(signal.shape, dtype=np.float32)
        imaginary = protocol.noise * rng.standard_normal(signal.shape, dtype=np.float32)
        signal = np.sqrt(real**2 + imaginary**2)
    signal *= rng.uniform(*GAIN_RANGE)
    return np.where(brain, np.maximum(signal, 1.0), 0.0).astype(np.float32)


def thick_slices(volume: np.ndarray, thickness_mm: float, spacing: float, offset: float = 0.0) -> np.ndarray:
    """Average over axial slabs `thickness_mm` thick, then interpolate back from the slab centres."""
    per_slice = thickness_mm / spacing
    if per_slice <= 1.0:
        return volume
    slab = ndimage.uniform_filter1d(volume, size=max(int(round(per_slice)), 1), axis=2, mode="nearest")
    depth = volume.shape[2]
    centres = np.arange(offset * per_slice, depth, per_slice)
    sampled = slab[:, :, np.clip(np.rint(centres).astype(int), 0, depth - 1)]
    position = np.clip((np.arange(depth) - centres[0]) / per_slice, 0, len(centres) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(centres) - 1)
    weight = (position - low).astype(np.float32)
    return sampled[:, :, low] * (1 - weight) + sampled[:, :, high] * weight


def _ghost(volume: np.ndarray, strength: float) -> np.ndarray:
    """Alternate k-space lines phase-shifted: a half-field-of-view ghost of amplitude `strength`."""
    spectrum = np.fft.fft(volume, axis=PHASE_AXIS)
    phase = np.ones(volume.shape[PHASE_AXIS], dtype=np.complex64)
    phase[1::2] = np.exp(2j * np.arcsin(min(strength, 0.99)))
    shape = [1, 1, 1]
    shape[PHASE_AXIS] = -1
    return np.abs(np.fft.ifft(spectrum * phase.reshape(shape), axis=PHASE_AXIS)).astype(np.float32)
