"""Training modes: one trainer class per mode, each owning its networks and optimizers.

* ``regression``: paired, masked L1 (or L2) + (1 − SSIM).
* ``pix2pix``: paired conditional GAN, L1 + least-squares adversarial loss with a PatchGAN that
  sees (source, image).
* ``cyclegan``: unpaired, two generators and two PatchGANs, cycle-consistency and identity losses.
* ``wgan-gp``: RED-WGAN style, content (L2) loss + Wasserstein critic with gradient penalty.

Self-supervised training (noise2self, through-plane super-resolution) is ``regression`` on pairs
made by a data ``pair_fn`` (:mod:`bids_synth.nn.data`). ``networks["generator"]`` is the network a
bundle exports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from bids_synth.nn.devices import amp_dtype, autocast, needs_grad_scaler
from bids_synth.nn.factory import build_network
from bids_synth.nn.losses import (
    emphasised_mean,
    gradient_penalty,
    lsgan_loss,
    masked_l1,
    masked_l2,
    masked_mean,
    ssim,
)

MODES = ("regression", "pix2pix", "cyclegan", "wgan-gp")


#: the name under which a checkpoint keeps the generator's moving average of weights
GENERATOR_AVERAGE = "generator_average"


class Trainer(ABC):
    """Networks, their Adam optimizers, mixed precision and one ``train_step`` per batch.

    With ``average_decay`` the trainer also keeps an exponential moving average of the generator's
    weights, updated after every generator step (Polyak averaging, as in ``torch.optim.swa_utils``);
    predictions and exports then use the average, which evens out the step-to-step wander of a
    constant learning rate.
    """

    betas = (0.5, 0.999)  # the usual Adam momentum for adversarial training

    def __init__(
        self,
        networks: dict[str, nn.Module],
        *,
        lr: float,
        device: torch.device,
        amp: str,
        seed: int,
        average_decay: float | None = None,
    ):
        self.device = device
        self.dtype = amp_dtype(device, amp)
        self.networks = {name: net.to(device) for name, net in networks.items()}
        self.optimizers = {
            name: torch.optim.Adam(net.parameters(), lr=lr, betas=self.betas)
            for name, net in self.networks.items()
        }
        self.scaler = (
            torch.amp.GradScaler(device.type) if needs_grad_scaler(device, self.dtype) else None
        )
        self.rng = torch.Generator().manual_seed(seed)
        self.average = (
            None
            if average_decay is None
            else AveragedModel(
                self.generator,
                multi_avg_fn=get_ema_multi_avg_fn(average_decay),
                use_buffers=True,
            )
        )

    @property
    def generator(self) -> nn.Module:
        return self.networks["generator"]

    @property
    def inference_generator(self) -> nn.Module:
        """The network that predicts and is exported: the weight average once it has one."""
        if self.average is None or int(self.average.n_averaged) == 0:
            return self.generator
        return self.average.module

    def checkpointed_networks(self) -> dict[str, nn.Module]:
        """The networks a checkpoint holds: the trained ones and the generator's average."""
        if self.average is None:
            return self.networks
        return {**self.networks, GENERATOR_AVERAGE: self.average}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimisation step on ``batch``; returns the named loss values."""
        for net in self.networks.values():
            net.train()
        batch = {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
        return {name: float(value.detach()) for name, value in self._step(batch).items()}

    @torch.inference_mode()
    def predict(self, source: torch.Tensor) -> torch.Tensor:
        """The generator's output for a source batch (eval mode, float32 on the CPU)."""
        network = self.inference_generator
        network.eval()
        with autocast(self.device, self.dtype):
            return network(source.to(self.device)).float().cpu()

    def set_lr(self, lr: float) -> None:
        """Set every optimizer's learning rate."""
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = lr

    def _forward(self):
        return autocast(self.device, self.dtype)

    def _optimize(self, loss: torch.Tensor, *names: str) -> None:
        """Back-propagate ``loss`` once and step the optimizers of the named networks."""
        optimizers = [self.optimizers[name] for name in names]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            for optimizer in optimizers:
                self.scaler.step(optimizer)
            self.scaler.update()
        if self.average is not None and "generator" in names:
            self.average.update_parameters(self.generator)

    @abstractmethod
    def _step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Compute the losses of ``batch`` (on the device) and update the networks."""

    def state_dict(self) -> dict:
        """Optimizer, loss-scaler and random state (the network weights are saved separately)."""
        return {
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng": self.rng.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.rng.set_state(state["rng"])


def _content_loss(
    prediction, target, mask, kind: str, emphasis=None, symmetric: bool = False, scale=None
) -> torch.Tensor:
    """Masked L1 (``kind`` "l1") or L2 error, of the error over ``scale`` (per sample) when
    given; ``emphasis`` (threshold, factor) weighs the voxels whose target (``symmetric``: or
    prediction) is at least the threshold ``factor`` times."""
    error = prediction - target
    if scale is not None:
        error = error / scale.view(-1, *([1] * (error.ndim - 1)))
    error = error**2 if kind == "l2" else error.abs()
    if emphasis is None:
        return masked_mean(error, mask)
    return emphasised_mean(error, target, mask, emphasis, prediction if symmetric else None)


#: the least noise rms a noise-relative loss divides by (normalised units: 1 % of the head's
#: percentile range), so that nearly noise-free pairs do not dominate it
NOISE_SD_FLOOR = 0.01


class RegressionTrainer(Trainer):
    """Content loss (L1 or L2, optionally bone-emphasised) between prediction and target; with
    ``noise_relative`` each denoising pair's error is divided by its noise rms (``noise_sd``),
    so that every noise level counts alike, as mean PSNR weighs them."""

    betas = (0.9, 0.999)

    def __init__(
        self,
        networks,
        *,
        content: str = "l1",
        ssim_weight: float = 0.5,
        emphasis: tuple[float, float] | None = None,
        symmetric_emphasis: bool = False,
        noise_relative: bool = False,
        **kwargs,
    ):
        super().__init__(networks, **kwargs)
        self.content, self.ssim_weight, self.emphasis = content, ssim_weight, emphasis
        self.symmetric_emphasis, self.noise_relative = symmetric_emphasis, noise_relative

    def _step(self, batch):
        with self._forward():
            prediction = self.generator(batch["source"])
        prediction = prediction.float()
        target, mask = batch["target"], batch["mask"]
        scale = batch["noise_sd"].clamp_min(NOISE_SD_FLOOR) if self.noise_relative else None
        losses = {
            "content": _content_loss(
                prediction,
                target,
                mask,
                self.content,
                self.emphasis,
                self.symmetric_emphasis,
                scale,
            )
        }
        if self.ssim_weight:
            data_range = float((target.max() - target.min()).clamp_min(1e-3))
            losses["ssim"] = 1 - ssim(prediction, target, data_range=data_range, mask=mask)
        losses["loss"] = losses["content"] + self.ssim_weight * losses.get("ssim", 0.0)
        self._optimize(losses["loss"], "generator")
        return losses


class Pix2PixTrainer(Trainer):
    def __init__(self, networks, *, l1_weight: float = 100.0, **kwargs):
        super().__init__(networks, **kwargs)
        self.l1_weight = l1_weight

    def _step(self, batch):
        source, target, mask = batch["source"], batch["target"], batch["mask"]
        critic = self.networks["discriminator"]
        with self._forward():
            fake = self.generator(source)
            d_real = critic(torch.cat([source, target], 1))
            d_fake = critic(torch.cat([source, fake.detach()], 1))
        d_loss = 0.5 * (lsgan_loss(d_real, True) + lsgan_loss(d_fake, False))
        self._optimize(d_loss, "discriminator")
        with self._forward():
            adversarial = lsgan_loss(critic(torch.cat([source, fake], 1)), True)
        l1 = masked_l1(fake.float(), target, mask)
        g_loss = adversarial + self.l1_weight * l1
        self._optimize(g_loss, "generator")
        return {"loss": g_loss, "l1": l1, "adversarial": adversarial, "discriminator": d_loss}


class CycleGANTrainer(Trainer):
    """``generator``: source → target, ``inverse``: target → source; ``critic_target``/``critic_source``."""

    def __init__(
        self, networks, *, cycle_weight: float = 10.0, identity_weight: float = 5.0, **kwargs
    ):
        super().__init__(networks, **kwargs)
        self.cycle_weight, self.identity_weight = cycle_weight, identity_weight

    def _step(self, batch):
        a, b = batch["source"], batch["target"]
        forward, inverse = self.generator, self.networks["inverse"]
        critic_a, critic_b = self.networks["critic_source"], self.networks["critic_target"]
        with self._forward():
            fake_b, fake_a = forward(a), inverse(b)
            adversarial = lsgan_loss(critic_b(fake_b), True) + lsgan_loss(critic_a(fake_a), True)
            cycle = (inverse(fake_b).float() - a).abs().mean() + (
                forward(fake_a).float() - b
            ).abs().mean()
            identity = torch.zeros((), device=self.device)
            if self.identity_weight and a.shape[1] == b.shape[1]:
                identity = (forward(b).float() - b).abs().mean() + (
                    inverse(a).float() - a
                ).abs().mean()
        g_loss = adversarial + self.cycle_weight * cycle + self.identity_weight * identity
        self._optimize(g_loss, "generator", "inverse")
        with self._forward():
            d_loss = 0.5 * (
                lsgan_loss(critic_b(b), True)
                + lsgan_loss(critic_b(fake_b.detach()), False)
                + lsgan_loss(critic_a(a), True)
                + lsgan_loss(critic_a(fake_a.detach()), False)
            )
        self._optimize(d_loss, "critic_source", "critic_target")
        return {
            "loss": g_loss,
            "adversarial": adversarial,
            "cycle": cycle,
            "identity": identity,
            "discriminator": d_loss,
        }


class WGANGPTrainer(Trainer):
    """Generator content loss (L2) + ``adversarial_weight`` × Wasserstein loss; ``critic_steps``
    critic updates with gradient penalty per generator update."""

    def __init__(
        self,
        networks,
        *,
        adversarial_weight: float = 1e-3,
        gp_weight: float = 10.0,
        critic_steps: int = 5,
        **kwargs,
    ):
        super().__init__(networks, **kwargs)
        self.adversarial_weight, self.gp_weight, self.critic_steps = (
            adversarial_weight,
            gp_weight,
            critic_steps,
        )

    def _step(self, batch):
        source, target, mask = batch["source"], batch["target"], batch["mask"]
        critic = self.networks["critic"]
        with torch.no_grad(), self._forward():
            fake = self.generator(source).float()
        for _ in range(self.critic_steps):
            with self._forward():
                wasserstein = critic(target).float().mean() - critic(fake).float().mean()
            # outside autocast: the penalty's double backward runs in fp32
            penalty = gradient_penalty(critic, target, fake, generator=self.rng)
            critic_loss = -wasserstein + self.gp_weight * penalty
            self._optimize(critic_loss, "critic")
        with self._forward():
            fake = self.generator(source)
            adversarial = -critic(fake).float().mean()
        content = masked_l2(fake.float(), target, mask)
        g_loss = content + self.adversarial_weight * adversarial
        self._optimize(g_loss, "generator")
        return {"loss": g_loss, "content": content, "wasserstein": wasserstein, "penalty": penalty}


def build_trainer(
    mode: str,
    *,
    architecture: str,
    network_kwargs: dict,
    device: torch.device,
    amp: str = "off",
    lr: float = 2e-4,
    seed: int = 0,
    critic_layers: int = 3,
    **loss_options,
) -> Trainer:
    """Seed torch, build the networks ``mode`` needs around the generator and return its trainer.

    ``network_kwargs`` (with ``in_channels``/``out_channels``) describe the generator; critics are
    PatchGANs with ``critic_layers`` strided layers (patches need at least 2 ** (critic_layers + 3)
    voxels per axis). ``loss_options`` go to the trainer (e.g. ``ssim_weight``).
    """
    if mode not in MODES:
        raise ValueError(f"unknown training mode {mode!r}; expected one of {MODES}")
    torch.manual_seed(seed)
    in_ch, out_ch = network_kwargs.get("in_channels", 1), network_kwargs.get("out_channels", 1)
    networks = {"generator": build_network(architecture, **network_kwargs)}
    common = dict(lr=lr, device=device, amp=amp, seed=seed)
    if mode == "regression":
        return RegressionTrainer(networks, **common, **loss_options)
    if mode == "pix2pix":
        networks["discriminator"] = build_network(
            "patchgan", in_channels=in_ch + out_ch, layers=critic_layers
        )
        return Pix2PixTrainer(networks, **common, **loss_options)
    if mode == "cyclegan":
        networks["inverse"] = build_network(
            architecture, **{**network_kwargs, "in_channels": out_ch, "out_channels": in_ch}
        )
        networks["critic_source"] = build_network(
            "patchgan", in_channels=in_ch, layers=critic_layers
        )
        networks["critic_target"] = build_network(
            "patchgan", in_channels=out_ch, layers=critic_layers
        )
        return CycleGANTrainer(networks, **common, **loss_options)
    networks["critic"] = build_network(
        "patchgan", in_channels=out_ch, layers=critic_layers, norm="none"
    )
    return WGANGPTrainer(networks, **common, **loss_options)
