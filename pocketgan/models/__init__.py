"""Generator networks (torch)."""

from pocketgan.models.generator import Generator, GeneratorConfig
from pocketgan.models.registry import DEFAULT_SIZE, GENERATOR_SIZES, build_generator, generator_config

__all__ = ["DEFAULT_SIZE", "GENERATOR_SIZES", "Generator", "GeneratorConfig", "build_generator", "generator_config"]
