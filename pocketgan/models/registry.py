"""Named generator sizes: the builder registry every command and exporter uses."""

from __future__ import annotations

from pocketgan.models.generator import Generator, GeneratorConfig

GENERATOR_SIZES: dict[str, GeneratorConfig] = {
    "tiny": GeneratorConfig(ngf=16, token_dim=32, heads=2),
    "small": GeneratorConfig(ngf=32, token_dim=64, heads=4),
    "base": GeneratorConfig(ngf=48, token_dim=64, heads=4),
}
DEFAULT_SIZE = "small"


def generator_config(size: str) -> GeneratorConfig:
    try:
        return GENERATOR_SIZES[size]
    except KeyError:
        raise ValueError(f"unknown generator size {size!r}; choose one of {sorted(GENERATOR_SIZES)}") from None


def build_generator(size_or_config: str | GeneratorConfig = DEFAULT_SIZE) -> Generator:
    config = generator_config(size_or_config) if isinstance(size_or_config, str) else size_or_config
    return Generator(config)
