"""Grids of image thumbnails with captions (mistakes, samples), drawn with Pillow alone.

A matplotlib figure with one axes per thumbnail took 1.5–2.5 s per grid here (layout, a 2.6 MB
PNG); pasting thumbnails into one image and captioning it takes a tenth of that. The result is a
PIL image: it displays inline in Jupyter and `plots.png_bytes` writes it like any figure.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..data.images import ImageDecodeError, load_image
from ..display import printable
from ..preprocessing import Preprocessing

THUMB = 150  # px: the model's crop, shrunk
GAP = 8
BACKGROUND = "white"


@dataclass
class Tile:
    """One thumbnail of a contact sheet, with its caption."""

    path: Path
    caption: list[str]  # one or two short lines under the thumbnail


@dataclass
class Section:
    """A titled, coloured row of tiles."""

    title: str
    colour: str
    tiles: list[Tile] = field(default_factory=list)


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def thumbnail(path: Path, preprocessing: Preprocessing, size: int = THUMB) -> Image.Image | None:
    """The model's crop of `path`, shrunk to `size` px; None if unreadable."""
    try:
        crop = preprocessing.crop(load_image(path, preprocessing.resize_short))
    except ImageDecodeError:
        return None
    return crop.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)


def fit(text: str, font, width: int) -> str:
    """`text` cut with an ellipsis to fit `width` pixels."""
    text = printable(text)
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def contact_sheet(sections: list[Section], preprocessing: Preprocessing, columns: int = 6) -> Image.Image:
    """Each section: a coloured title, then its tiles `columns` to a row, captions underneath."""
    title_font, caption_font = _font(15), _font(12)
    line, title_height, cell_w = 15, 24, THUMB + GAP
    paths = [tile.path for s in sections for tile in s.tiles]
    with ThreadPoolExecutor(4) as pool:
        thumbs = dict(zip(paths, pool.map(lambda p: thumbnail(p, preprocessing), paths)))
    cell_heights = [THUMB + GAP + line * max((len(t.caption[:2]) for t in s.tiles), default=0) for s in sections]
    heights = [title_height + max(1, -(-len(s.tiles) // columns)) * h for s, h in zip(sections, cell_heights)]
    sheet = Image.new("RGB", (GAP + columns * cell_w, sum(heights) + GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    top = GAP
    for section, height, cell_h in zip(sections, heights, cell_heights):
        draw.text((GAP, top), fit(section.title, title_font, columns * cell_w), fill=section.colour, font=title_font)
        if not section.tiles:
            draw.text((GAP, top + title_height), "none", fill="#555555", font=caption_font)
        for i, tile in enumerate(section.tiles):
            x, y = GAP + (i % columns) * cell_w, top + title_height + (i // columns) * cell_h
            if (thumb := thumbs[tile.path]) is not None:
                sheet.paste(thumb, (x, y))
            else:
                draw.rectangle((x, y, x + THUMB - 1, y + THUMB - 1), outline="#999999")
            for n, text in enumerate(tile.caption[:2]):
                position = (x, y + THUMB + 2 + n * line)
                draw.text(position, fit(text, caption_font, THUMB), fill=section.colour, font=caption_font)
        top += height
    return sheet
