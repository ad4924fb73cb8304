"""A diffusion photo editor trained here: the teacher that colorize and restore are distilled from.

- :mod:`.tasks`: the self-supervised edits (a photo -> the input the editor sees) and their
  instructions.
- :mod:`.pixel_space`: the identity "VAE" that makes a Stable Diffusion InstructPix2Pix
  pipeline run in pixel space.
- :mod:`.pipeline`: the architecture and the pipeline built from it (a real
  ``StableDiffusionInstructPix2PixPipeline``, loaded like a hub checkpoint).
- :mod:`.train`: ``pocketgan train-teacher``, resumable.
- :mod:`.report`: teacher against student (docs/diffusion-teacher.md).
"""
