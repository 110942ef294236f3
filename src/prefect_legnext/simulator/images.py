"""Deterministic, checkable images for the simulator (Pillow only).

Each operation leaves a trace a test can verify by comparing pixels:

- `inpaint` changes every pixel inside the mask and no pixel outside it.
- `retexture` keeps the layout, i.e. the mean colour of every 16x16 block, and
  replaces the texture inside the blocks with a zero-mean pattern.
- `upscale` doubles the size, `remove_background` makes the background transparent.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

BLOCK = 16  # the layout cell retexture preserves
MAX_SIDE = 2048


def _rng(seed: int) -> random.Random:
    return random.Random(seed)


def _color(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(30, 226), rng.randrange(30, 226), rng.randrange(30, 226))


def _round(side: float) -> int:
    return max(BLOCK, min(MAX_SIDE, int(side) // BLOCK * BLOCK))


def generate(seed: int, size: tuple[int, int]) -> Image.Image:
    """A new picture: a two-colour gradient under a few shapes, all from `seed`."""
    rng = _rng(seed)
    width, height = size
    ramp = Image.linear_gradient("L").rotate(rng.choice((0, 90, 180, 270))).resize(size)
    image = ImageOps.colorize(ramp, _color(rng), _color(rng))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(4, 9)):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1 = min(width, x0 + rng.randrange(width // 8, width // 2))
        y1 = min(height, y0 + rng.randrange(height // 8, height // 2))
        shape = rng.choice(("ellipse", "rectangle", "triangle"))
        if shape == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=_color(rng))
        elif shape == "rectangle":
            draw.rectangle((x0, y0, x1, y1), fill=_color(rng))
        else:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=_color(rng))
    return image


def _pattern(seed: int, size: tuple[int, int], amplitude: int) -> Image.Image:
    """A greyscale pattern around 128 whose mean over every BLOCK x BLOCK cell is 128."""
    rng = _rng(seed)
    kind = rng.choice(("vertical", "horizontal", "diagonal", "checker"))
    half = rng.choice((1, 2, 4))  # 2 * half divides BLOCK: every cell row holds whole periods
    tile = Image.new("L", (BLOCK, BLOCK))
    for y in range(BLOCK):
        for x in range(BLOCK):
            phase = {
                "vertical": x // half,
                "horizontal": y // half,
                "diagonal": (x + y) // half,
                "checker": x // half + y // half,
            }[kind]
            tile.putpixel((x, y), 128 + amplitude if phase % 2 == 0 else 128 - amplitude)
    pattern = Image.new("L", size)
    for y in range(0, size[1], BLOCK):
        for x in range(0, size[0], BLOCK):
            pattern.paste(tile, (x, y))
    return pattern


def retexture(source: Image.Image, seed: int) -> Image.Image:
    """Same layout (16x16 block means), new texture."""
    source = fit_to_blocks(source.convert("RGB"))
    amplitude = _rng(seed).randrange(24, 41)
    cells = (source.width // BLOCK, source.height // BLOCK)
    layout = source.resize(cells, Image.Resampling.BOX).resize(
        source.size, Image.Resampling.NEAREST
    )
    # Keep room for the pattern so that no pixel clips and block means stay exact.
    layout = layout.point(lambda v: min(max(v, amplitude), 255 - amplitude))
    pattern = _pattern(seed, source.size, amplitude).convert("RGB")
    return ImageChops.add(layout, pattern, scale=1.0, offset=-128)


def inpaint(source: Image.Image, mask: Image.Image, seed: int) -> Image.Image:
    """Every channel of every pixel inside `mask` (mode L, 255 = repaint) changes; nothing else."""
    source = source.convert("RGB")
    shift = _pattern(seed, source.size, _rng(seed).randrange(20, 41)).convert("RGB")
    # shift is 88..168 per channel: never 0 modulo 256, so every masked pixel changes.
    repainted = ImageChops.add_modulo(source, shift)
    return Image.composite(repainted, source, mask)


def polygon_mask(
    size: tuple[int, int], polygons: Sequence[tuple[int, int, list[int]]]
) -> Image.Image:
    """Rasterise ``(width, height, points)`` polygons, scaled from their own image size."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for width, height, points in polygons:
        sx, sy = size[0] / width, size[1] / height
        vertices = [(points[i] * sx, points[i + 1] * sy) for i in range(0, len(points), 2)]
        draw.polygon(vertices, fill=255)
    return mask


def image_mask(mask_image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A black-and-white mask image resized to `size`; white (>127) is repainted."""
    grey = mask_image.convert("L").resize(size, Image.Resampling.NEAREST)
    return grey.point(lambda v: 255 if v > 127 else 0)


def variation(source: Image.Image, seed: int, strong: bool) -> Image.Image:
    other = generate(seed, source.size)
    return Image.blend(source.convert("RGB"), other, 0.5 if strong else 0.2)


def enhance(source: Image.Image, seed: int) -> Image.Image:
    sharp = source.convert("RGB").filter(ImageFilter.UnsharpMask(radius=2, percent=120))
    return Image.blend(sharp, generate(seed, source.size), 0.1)


def upscale(source: Image.Image, creative: bool, seed: int) -> Image.Image:
    size = (_round(source.width * 2), _round(source.height * 2))
    big = source.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    return Image.blend(big, generate(seed, size), 0.15) if creative else big


def pan(source: Image.Image, direction: int, scale: float, seed: int) -> Image.Image:
    """Extend down (0), right (1), up (2) or left (3) by `scale`, filling the new part."""
    width, height = source.size
    vertical = direction in (0, 2)
    size = (width, _round(height * scale)) if vertical else (_round(width * scale), height)
    canvas = generate(seed, size)
    offset = {0: (0, 0), 1: (0, 0), 2: (0, size[1] - height), 3: (size[0] - width, 0)}[direction]
    canvas.paste(source.convert("RGB"), offset)
    return canvas


def outpaint(source: Image.Image, scale: float, seed: int) -> Image.Image:
    size = (_round(source.width * scale), _round(source.height * scale))
    canvas = generate(seed, size)
    canvas.paste(
        source.convert("RGB"), ((size[0] - source.width) // 2, (size[1] - source.height) // 2)
    )
    return canvas


def place(
    source: Image.Image, canvas_size: tuple[int, int], box: tuple[int, int, int, int], seed: int
) -> Image.Image:
    """Put `source` resized to box (width, height, x, y) on a generated canvas."""
    width, height, x, y = box
    canvas = generate(seed, (_round(canvas_size[0]), _round(canvas_size[1])))
    scale_x, scale_y = canvas.width / canvas_size[0], canvas.height / canvas_size[1]
    resized = source.convert("RGB").resize(
        (max(1, int(width * scale_x)), max(1, int(height * scale_y)))
    )
    canvas.paste(resized, (int(x * scale_x), int(y * scale_y)))
    return canvas


def remove_background(source: Image.Image) -> Image.Image:
    """Transparent where a pixel is close to the top-left corner's colour."""
    rgb = source.convert("RGB")
    corner = Image.new("RGB", rgb.size, rgb.getpixel((0, 0)))
    distance = ImageChops.difference(rgb, corner).convert("L")
    alpha = distance.point(lambda v: 255 if v > 24 else 0)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(alpha)
    return rgba


def blend(sources: Sequence[Image.Image], size: tuple[int, int]) -> Image.Image:
    result = sources[0].convert("RGB").resize(size)
    for count, image in enumerate(sources[1:], start=2):
        result = Image.blend(result, image.convert("RGB").resize(size), 1 / count)
    return result


def grid(images: Sequence[Image.Image]) -> Image.Image:
    """The 2x2 composite Legnext returns as ``image_url`` for a grid job."""
    width, height = images[0].size
    sheet = Image.new("RGB", (width * 2, height * 2))
    for index, image in enumerate(images[:4]):
        sheet.paste(
            image.convert("RGB").resize((width, height)),
            ((index % 2) * width, (index // 2) * height),
        )
    return sheet


def fit_to_blocks(image: Image.Image) -> Image.Image:
    size = (_round(image.width), _round(image.height))
    return image if image.size == size else image.resize(size)


def describe(source: Image.Image, seed: int) -> list[str]:
    """Four prompts naming the picture's dominant colours."""
    r, g, b = source.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))  # type: ignore[misc]
    rng = _rng(seed)
    moods = ["serene", "dramatic", "vivid", "muted", "dreamy", "stark"]
    subjects = ["landscape", "still life", "city at night", "portrait", "abstract study"]
    return [
        f"a {rng.choice(moods)} {rng.choice(subjects)} in rgb({r},{g},{b}) tones --ar 1:1"
        for _ in range(4)
    ]


def shorten(prompt: str) -> list[str]:
    words = [w for w in prompt.split() if not w.startswith("--")]
    return [" ".join(words[: max(1, len(words) // d)]) for d in (1, 2, 3, 4)]


def to_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def from_bytes(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def video(seed: int, size: int) -> bytes:
    """Bytes that look like an MP4 (an ftyp box) of the requested size; not decodable."""
    header = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    return header + _rng(seed).randbytes(max(0, size - len(header)))
