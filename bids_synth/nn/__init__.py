"""The neural synthesis engine, pure torch (plus numpy; no MONAI, nipype or BIDS imports).

==============  ================================================================================
blocks          dimension-generic conv/norm blocks
unet            U-Net / residual U-Net, 3D or 2.5D (``SlabNet``)
red             RED-CNN residual encoder-decoder (RED-WGAN generator)
discriminator   3D PatchGAN (pix2pix discriminator, WGAN-GP critic)
factory         ``build_network(name, **kwargs)``
losses          masked L1/L2, SSIM, LSGAN, gradient penalty
devices         device choice, autocast (bf16/fp16), out-of-memory detection
intensity       bundle-declared intensity normalisation and its inverse
data            patch sources (volumes, self-supervised pairs, head model)
trainers        regression, pix2pix, CycleGAN, WGAN-GP trainers
loop            ``fit``: epochs, validation, CSV log, checkpoints, exact resume
checkpoint      checkpoint save/load (safetensors weights)
history         training log CSV and plot
fusion          inference-only network rewrites
inference       ``predict_volume``: sliding-window inference with Gaussian blending
slabs           2.5D: randomised slab batches for training, orthogonal-slab inference
==============  ================================================================================
"""
