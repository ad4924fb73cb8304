"""Concepts: PEFT LoRA on the generator's crucial layers + concept embedding tokens."""

from pocketgan.concepts.concept import CONCEPT_FILES, Concept, validate_concept_name
from pocketgan.concepts.lora import inject_lora, load_lora_state_dict, lora_state_dict, merge_lora, pad_lora, ranks_of

__all__ = [
    "CONCEPT_FILES",
    "Concept",
    "inject_lora",
    "load_lora_state_dict",
    "lora_state_dict",
    "merge_lora",
    "pad_lora",
    "ranks_of",
    "validate_concept_name",
]
