"""Loss functions: masked (optionally emphasised) L1/L2, SSIM, least-squares GAN and the WGAN
gradient penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over voxels where ``mask`` > 0 (all voxels if ``mask`` is None)."""
    if mask is None:
        return values.mean()
    weights = (mask > 0).to(values.dtype).expand_as(values)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def masked_l1(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    return masked_mean((prediction - target).abs(), mask)


def masked_l2(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    return masked_mean((prediction - target) ** 2, mask)


def emphasised_mean(
    values: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    emphasis: tuple[float, float],
    prediction: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted mean of ``values`` over the mask, where voxels whose ``target`` is at least
    ``emphasis[0]`` weigh ``emphasis[1]`` times (e.g. bone in a CT: a rare class that a plain
    regression loss blurs towards the soft tissue around it). With ``prediction`` the voxels
    where it is at least the threshold weigh as much too, so that calling a voxel bone costs as
    much as missing bone: the target alone makes "bone" the cheaper error where it is uncertain."""
    threshold, factor = emphasis
    emphasised = target >= threshold
    if prediction is not None:
        emphasised = emphasised | (prediction.detach() >= threshold)
    weights = torch.where(emphasised, float(factor), 1.0).to(values.dtype)
    if mask is not None:
        weights = weights * (mask > 0).to(values.dtype)
    weights = weights.expand_as(values)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian blur of a (B, C, *spatial) tensor, channel by channel."""
    dims = x.dim() - 2
    conv = F.conv3d if dims == 3 else F.conv2d
    channels = x.shape[1]
    for axis in range(dims):
        shape = [1] * dims
        shape[axis] = kernel.numel()
        weight = kernel.reshape(1, 1, *shape).repeat(channels, 1, *([1] * dims))
        x = conv(x, weight, groups=channels)
    return x


def ssim(
    prediction: torch.Tensor,
    target: torch.Tensor,
    *,
    data_range: float = 1.0,
    window: int = 7,
    sigma: float = 1.5,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean structural similarity with a Gaussian window (2D or 3D), differentiable.

    With ``mask`` the SSIM map is averaged over windows centred inside the mask.
    """
    kernel = _gaussian_window(window, sigma, prediction.device, torch.float32)
    x, y = prediction.float(), target.float()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _blur(x, kernel), _blur(y, kernel)
    var_x = _blur(x * x, kernel) - mu_x**2
    var_y = _blur(y * y, kernel) - mu_y**2
    cov = _blur(x * y, kernel) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    if mask is not None:
        crop = window // 2
        inner = tuple(slice(crop, size - crop) for size in mask.shape[2:])
        mask = mask[(slice(None), slice(None), *inner)]
    return masked_mean(ssim_map, mask)


def lsgan_loss(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss (pix2pix/CycleGAN): push scores to 1 for real, 0 for fake."""
    target = torch.ones_like(scores) if real else torch.zeros_like(scores)
    return F.mse_loss(scores.float(), target.float())


def gradient_penalty(
    critic, real: torch.Tensor, fake: torch.Tensor, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """WGAN-GP penalty: (‖∇ critic(x̂)‖₂ − 1)² at random interpolates x̂ of real and fake."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, generator=generator, device="cpu").to(real.device, real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = critic(mixed)
    (grads,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((grads.flatten(1).norm(dim=1) - 1) ** 2).mean()
