"""The emoji text-to-image dataset: Noto Color Emoji glyphs and their Unicode names.

Debian's ``fonts-noto-color-emoji`` ships ~3,600 colour glyphs: every code point of the
font's cmap plus every sequence its GSUB ligatures form (skin tones, ZWJ families, flags,
keycaps). Each is drawn by Pillow (``embedded_color=True`` at the font's only bitmap size,
109), composited on white, and scaled to ``side`` px with antialiasing. Its prompt is its
Unicode name, lower-cased ("red apple"), for sequences the components' names joined
("woman technologist" for U+1F469 U+200D U+1F4BB reads "woman personal computer").

A fixed 10% of the prompts (chosen by a hash of the name, so the split never depends on
the font's version or order) is held out of every training set: the teacher, the feature
networks and the student never see them; the report's distribution distances use them.

:func:`load_emoji` caches the rendered set as one ``.npz`` (written atomically) per side.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_SIZE = 109  # the font's only bitmap strike: other sizes fail to open
HELD_OUT_PERCENT = 10
_ZWJ, _VS16 = 0x200D, 0xFE0F
_SKIN = {0x1F3FB: "light skin tone", 0x1F3FC: "medium-light skin tone", 0x1F3FD: "medium skin tone",
         0x1F3FE: "medium-dark skin tone", 0x1F3FF: "dark skin tone"}  # fmt: skip


class EmojiFontMissing(FileNotFoundError):
    """The Noto Color Emoji font is not installed."""


@dataclass(frozen=True)
class EmojiSet:
    """Rendered glyphs: ``images`` uint8 (N, side, side, 3) RGB on white; ``prompts`` and
    ``sequences`` (the glyphs' text) of length N; ``held_out`` bool (N,)."""

    images: np.ndarray
    prompts: list[str]
    sequences: list[str]
    held_out: np.ndarray

    def split(self, held_out: bool) -> "EmojiSet":
        keep = self.held_out if held_out else ~self.held_out
        idx = np.flatnonzero(keep)
        return EmojiSet(
            self.images[idx], [self.prompts[i] for i in idx], [self.sequences[i] for i in idx], self.held_out[idx]
        )

    def __len__(self) -> int:
        return len(self.prompts)


def is_held_out(prompt: str) -> bool:
    """True for the fixed ~10% of prompts no training sees (a hash of the prompt decides)."""
    return int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16) % 100 < HELD_OUT_PERCENT


def _component_name(cp: int) -> str | None:
    if cp in (_ZWJ, _VS16, 0x20E3):  # joiner, emoji presentation, combining keycap
        return "keycap" if cp == 0x20E3 else None
    if cp in _SKIN:
        return _SKIN[cp]
    if 0x1F1E6 <= cp <= 0x1F1FF:  # regional indicator letters: a flag's country code
        return chr(ord("a") + cp - 0x1F1E6)
    if 0xE0020 <= cp <= 0xE007F:  # tag characters of subdivision flags (gbeng, ...)
        return chr(cp - 0xE0000) if 0xE0061 <= cp <= 0xE007A else None
    name = unicodedata.name(chr(cp), "")
    return name.lower() if name else None


def prompt_for(sequence: str) -> str | None:
    """The prompt of a glyph's code point sequence, or None where no name is known."""
    cps = [ord(c) for c in sequence]
    regional = [cp for cp in cps if 0x1F1E6 <= cp <= 0x1F1FF]
    tags = [cp for cp in cps if 0xE0061 <= cp <= 0xE007A]
    if regional or tags:
        code = "".join(chr(ord("a") + cp - 0x1F1E6) for cp in regional) + "".join(chr(cp - 0xE0000) for cp in tags)
        return f"flag {code}"
    words = [w for w in (_component_name(cp) for cp in cps) if w]
    return " ".join(words) if words else None


def font_sequences(font: Path = FONT) -> list[str]:
    """Every glyph's text: the cmap's code points and the GSUB ligatures' sequences, sorted."""
    from fontTools.ttLib import TTFont

    if not font.is_file():
        raise EmojiFontMissing(f"{font} is missing: install Debian's fonts-noto-color-emoji")
    tt = TTFont(str(font))
    cmap = tt.getBestCmap()
    glyph_text = {glyph: chr(cp) for cp, glyph in sorted(cmap.items(), reverse=True)}
    found = {chr(cp) for cp in cmap if cp > 0xFF and unicodedata.category(chr(cp)) == "So"}
    for lookup in tt["GSUB"].table.LookupList.Lookup:
        for sub in lookup.SubTable:
            for first, ligatures in getattr(sub, "ligatures", {}).items():
                for lig in ligatures:
                    parts = [first, *lig.Component]
                    if all(p in glyph_text for p in parts):
                        found.add("".join(glyph_text[p] for p in parts))
    return sorted(found)


def render(sequence: str, side: int, font: object) -> np.ndarray | None:
    """One glyph as uint8 (side, side, 3) on white, or None when Pillow draws no single glyph."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((10, 10), sequence, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None or box[2] - box[0] > 140:  # nothing drawn, or several glyphs side by side
        return None
    glyph = canvas.crop(box)
    w, h = glyph.size
    square = Image.new("RGBA", (max(w, h),) * 2, (255, 255, 255, 0))
    square.alpha_composite(glyph, ((max(w, h) - w) // 2, (max(w, h) - h) // 2))
    white = Image.new("RGBA", square.size, (255, 255, 255, 255))
    white.alpha_composite(square)
    return np.asarray(white.convert("RGB").resize((side, side), Image.Resampling.LANCZOS))


def render_emoji(side: int = 32, font: Path = FONT, progress: bool = True) -> EmojiSet:
    """Render every glyph of ``font`` at ``side`` px (about a minute on 2 cores)."""
    from PIL import ImageFont
    from tqdm import tqdm

    face = ImageFont.truetype(str(font), FONT_SIZE)
    images, prompts, sequences, seen = [], [], [], set()
    # GSUB also forms sign-first orders ("male sign pedestrian") that draw the same glyph as the
    # real sequence: person-first sequences go first, and a glyph drawn before is skipped
    order = sorted(font_sequences(font), key=lambda s: (ord(s[0]) in (0x2640, 0x2642), len(s), s))
    for sequence in tqdm(order, desc="render emoji", unit="glyph", disable=not progress):
        prompt = prompt_for(sequence)
        if not prompt or prompt in seen:
            continue
        image = render(sequence, side, face)
        if image is None or image.tobytes() in seen:
            continue
        seen.update((prompt, image.tobytes()))
        images.append(image)
        prompts.append(prompt)
        sequences.append(sequence)
    held = np.array([is_held_out(p) for p in prompts], dtype=bool)
    return EmojiSet(np.stack(images), prompts, sequences, held)


def default_cache() -> Path:
    return Path.home() / ".cache" / "pocketgan" / "emoji"


def load_emoji(side: int = 32, cache: Path | None = None, progress: bool = True) -> EmojiSet:
    """The rendered set, from ``cache`` (default ``~/.cache/pocketgan/emoji``) or rendered and cached."""
    path = Path(cache or default_cache()) / f"emoji-{side}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return EmojiSet(
                data["images"], [str(p) for p in data["prompts"]], [str(s) for s in data["sequences"]], data["held_out"]
            )
    emoji = render_emoji(side, progress=progress)
    save_emoji(path, emoji)
    return emoji


def save_emoji(path: Path, emoji: EmojiSet) -> None:
    """Write ``emoji`` as the cache file ``path`` (``emoji-<side>.npz``), atomically."""
    import io

    from pocketgan.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        images=emoji.images,
        prompts=np.array(emoji.prompts),
        sequences=np.array(emoji.sequences),
        held_out=emoji.held_out,
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(path), buffer.getvalue())
