"""The sparse autoencoder: TopK or BatchTopK codes over per-voxel activation rows.

Layout (rows are inputs, as `nn.Linear` stores weights):
    pre   = (x * input_scale - b_dec) @ W_enc.T + b_enc         (encoder, ReLU'd)
    codes = TopK(pre) per row | BatchTopK(pre) over the batch in training,
            pre * (pre > threshold) at inference for BatchTopK (no batch needed)
    x_hat = (codes @ W_dec + b_dec) / input_scale                (decoder rows unit norm)

During training inputs are multiplied by `input_scale` so that their mean squared
norm is `d_in`; `fold_input_scale()` moves the scale into biases, threshold and
codes so the exported SAE works on raw activations with the decoder still unit-norm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import ParameterError
from . import sparse_ops

# The encoder starts as a quarter of the decoder's transpose: Adam moves each weight by about the learning
# rate, so small encoder rows turn towards the data in fewer steps, and the first reconstructions are small
# instead of random vectors as large as the input. Held-out FVU (bench/sae_throughput.py rows, docs/sae.md):
# 0.527 -> 0.301 after 48 steps (256 -> 4096 latents), 0.220 -> 0.206 after 586 steps (128 -> 1024).
ENCODER_INIT_SCALE = 0.25

Kind = Literal["batchtopk", "topk"]
KINDS: tuple[str, ...] = ("batchtopk", "topk")


def check_dictionary(n_latents: int, k: int, kind: str) -> None:
    """Refuse a latent count, k or kind no SAE can have (shared by the SAE and its training settings)."""
    if kind not in KINDS:
        raise ParameterError(f"SAE kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    if n_latents < 1:
        raise ParameterError(f"latents={n_latents}: an SAE needs at least one latent")
    if not 1 <= k <= n_latents:
        raise ParameterError(f"k={k} must be between 1 and the number of latents ({n_latents})")


@dataclass(frozen=True)
class SAEConfig:
    d_in: int
    n_latents: int
    k: int
    kind: Kind = "batchtopk"

    def __post_init__(self) -> None:
        if self.d_in < 1:
            raise ParameterError(f"SAE input size must be positive (d_in={self.d_in})")
        check_dictionary(self.n_latents, self.k, self.kind)

    def to_dict(self) -> dict:
        return asdict(self)


class SparseAutoencoder(nn.Module):
    """A TopK / BatchTopK sparse autoencoder with a unit-norm decoder."""

    def __init__(self, config: SAEConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        w_dec = torch.randn(config.n_latents, config.d_in, generator=generator)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec * ENCODER_INIT_SCALE)  # encoder starts as the decoder's transpose, scaled
        self.b_enc = nn.Parameter(torch.zeros(config.n_latents))
        self.b_dec = nn.Parameter(torch.zeros(config.d_in))
        # Inference threshold (BatchTopK): learned during training; <= 0 means "not learned yet".
        self.register_buffer("threshold", torch.tensor(0.0))
        self.register_buffer("input_scale", torch.tensor(1.0))
        self.info = None  # io.SAEInfo: the model and layer it belongs to (set by save_sae/load_sae)

    @property
    def d_in(self) -> int:
        return self.config.d_in

    @property
    def n_latents(self) -> int:
        return self.config.n_latents

    # -- inference -------------------------------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.d_in:
            raise ParameterError(
                f"activations have shape {tuple(x.shape)} but this SAE takes (rows, {self.d_in}); "
                "use the SAE trained for this layer"
            )
        return torch.addmm(self.b_enc, x * self.input_scale - self.b_dec, self.W_enc.t())

    def encode_sparse(self, x: torch.Tensor) -> sparse_ops.SparseCodes:
        """Codes of each row on its own: TopK per row, or the learned threshold for BatchTopK."""
        pre = self.pre_activations(x)
        if self.config.kind == "topk":
            return sparse_ops.topk_per_row(pre, self.config.k)
        if float(self.threshold) <= 0:
            raise ParameterError("this BatchTopK SAE has no learned threshold yet; train it before encoding")
        return sparse_ops.above(pre, float(self.threshold))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense codes (rows x latents)."""
        return self.encode_sparse(x).to_dense(self.n_latents)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes @ self.W_dec + self.b_dec) / self.input_scale

    @torch.no_grad()
    def decode_sparse(self, codes: sparse_ops.SparseCodes) -> torch.Tensor:
        return (sparse_ops.decode(codes, self.W_dec) + self.b_dec) / self.input_scale

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_sparse(self.encode_sparse(x))

    # -- constraints and export --------------------------------------------------------------
    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def project_decoder_gradient(self) -> None:
        """Drop the gradient component along each decoder row (it would only change the norm)."""
        grad = self.W_dec.grad
        if grad is not None:
            grad -= (grad * self.W_dec).sum(1, keepdim=True) * self.W_dec

    @torch.no_grad()
    def fold_input_scale(self) -> float:
        """Make the SAE take raw activations: returns the scale that was folded in.

        With s = input_scale, codes become codes/s (same selection, as s > 0),
        so b_enc, b_dec and the threshold are divided by s and W_dec keeps unit rows.
        """
        scale = float(self.input_scale)
        self.b_enc /= scale
        self.b_dec /= scale
        self.threshold /= scale
        self.input_scale.fill_(1.0)
        return scale
