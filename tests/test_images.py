"""Reading image files (`netspec.data.datasets.read_image`, shared by image folders and
`netspec predict`): Pillow gives the pixels torchvision's deprecated decoders gave, 16-bit
images are scaled, and what could block, explode or crash is one line."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import unblocked_after
from netspec.data.datasets import MAX_PIXELS, DataError, read_image


def _picture(h: int = 37, w: int = 41) -> np.ndarray:
    """An RGB picture with smooth gradients (what JPEG is made for) and noise (what it is not)."""
    y, x = np.mgrid[0:h, 0:w]
    noise = np.random.default_rng(0).integers(0, 256, (h, w), dtype=np.uint8)
    return np.dstack([(x * 6) % 256, (y * 7) % 256, noise]).astype(np.uint8)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("pictures")
    rgb = _picture()
    gray = rgb[..., 2]
    made = {"rgb.png": Image.fromarray(rgb), "gray.png": Image.fromarray(gray),
            "rgba.png": Image.fromarray(np.dstack([rgb, gray])), "gray_alpha.png": Image.fromarray(gray).convert("LA"),
            "palette.png": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE),
            "rgb.jpg": Image.fromarray(rgb), "gray.jpg": Image.fromarray(gray)}
    for name, im in made.items():
        im.save(root / name, quality=90) if name.endswith(".jpg") else im.save(root / name)
    return {name: str(root / name) for name in made}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", ["rgb.png", "gray.png", "rgba.png", "gray_alpha.png", "palette.png", "rgb.jpg", "gray.jpg"])
def test_pillow_gives_the_pixels_torchvision_gave(pictures, name, channels):
    """The decoder that read_image replaced (torchvision.io, deprecated in 0.29), called here as it
    was called: every pixel the same, grayscale conversions included."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    with pytest.warns(DeprecationWarning):
        old = decode_image(read_file(pictures[name]), mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing deprecated is left on the way
        new = read_image(pictures[name], channels, None)
    assert new.dtype == old.dtype == torch.uint8 and new.shape == old.shape == (channels, 37, 41)
    assert torch.equal(new, old)


def _png16(path, pixels: np.ndarray) -> None:
    """A 16-bit PNG: gray (H×W) or RGB (H×W×3), big-endian samples (Pillow writes 16-bit gray only)."""
    import struct
    import zlib

    h, w = pixels.shape[:2]
    kind = 0 if pixels.ndim == 2 else 2

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = b"".join(b"\0" + pixels[i].astype(">u2").tobytes() for i in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, kind, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", ["gray", "rgb"])
def test_a_16_bit_png_reads_as_its_8_bit_picture(tmp_path, kind, channels):
    """torchvision gave 16-bit PNGs as uint16, which predict then scaled as if 8-bit (every pixel
    255 after a resize): the 16-bit picture of an 8-bit one (v * 257) must read as that one."""
    eight = _picture(8, 8) if kind == "rgb" else _picture(8, 8)[..., 2]
    Image.fromarray(eight).save(tmp_path / "8.png")
    _png16(tmp_path / "16.png", eight.astype(np.uint16) * 257)
    for size in (None, (4, 4)):
        assert torch.equal(read_image(str(tmp_path / "16.png"), channels, size),
                           read_image(str(tmp_path / "8.png"), channels, size))


def test_gif_and_webp_into_a_grayscale_model_are_one_channel(tmp_path):
    """torchvision's GIF and WebP decoders ignored the gray mode (3 channels into a 1-channel model)."""
    rgb = Image.fromarray(_picture())
    rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "x.gif")
    rgb.save(tmp_path / "x.webp", lossless=True)
    for name in ("x.gif", "x.webp"):
        gray, color = read_image(str(tmp_path / name), 1, None), read_image(str(tmp_path / name), 3, None)
        assert gray.shape == (1, 37, 41) and color.shape == (3, 37, 41)
        weights = torch.tensor([9794, 19234, 3740]).view(3, 1, 1)
        assert torch.equal(gray[0], ((color.long() * weights).sum(0) >> 15).to(torch.uint8))


def test_animated_images_are_refused_before_decoding_their_frames(tmp_path):
    """30 frames on a 4000×4000 canvas in a few hundred KB decoded to 1.4 GB through torchvision
    (and stacked N×C×H×W into a crash): one line from the header, whatever the frame count."""
    frames = [Image.new("P", (4000, 4000), i) for i in range(30)]
    frames[0].save(tmp_path / "many.gif", save_all=True, append_images=frames[1:])
    assert os.path.getsize(tmp_path / "many.gif") < 2**20
    Image.new("RGB", (8, 8)).save(tmp_path / "two.webp", save_all=True, append_images=[Image.new("RGB", (8, 8), "red")])
    for name, what in (("many.gif", "an animated GIF (4000x4000)"), ("two.webp", "an animated WEBP (8x8)")):
        with pytest.raises(DataError, match=r"cannot read image .*: " + what.replace("(", r"\(").replace(")", r"\)")):
            read_image(str(tmp_path / name), 3, (8, 8))


def test_special_files_named_like_images_never_block(tmp_path):
    """A FIFO named .png: opening it the usual way waits for a writer forever."""
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    with unblocked_after(fifo), pytest.raises(DataError, match="this is a FIFO, not a regular file"):
        read_image(str(fifo), 3, None)
    with pytest.raises(DataError, match="this is a directory, not a regular file"):
        read_image(str(tmp_path), 3, None)
    with pytest.raises(DataError, match="this is a device or socket, not a regular file"):
        read_image("/dev/zero", 3, None)


def test_formats_are_the_image_suffixes_only(tmp_path):
    """Pillow is not asked to guess among every format it knows (EPS would run Ghostscript)."""
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png", format="TIFF")
    with pytest.raises(DataError, match="not a JPEG, PNG, GIF, WebP or BMP image"):
        read_image(str(tmp_path / "x.png"), 3, None)
    Image.new("F", (8, 8)).save(tmp_path / "f.png", format="TIFF")
    with pytest.raises(DataError, match="not a JPEG, PNG, GIF, WebP or BMP image"):
        read_image(str(tmp_path / "f.png"), 3, None)
    Image.new("RGB", (8, 8), "white").save(tmp_path / "x.bmp")
    assert read_image(str(tmp_path / "x.bmp"), 3, None).eq(255).all()


def test_truncated_and_oversized_images_are_one_line(tmp_path):
    Image.fromarray(_picture()).save(tmp_path / "x.png")
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read image .*cut.png"):
        read_image(str(tmp_path / "cut.png"), 3, None)
    side = int(MAX_PIXELS ** 0.5) + 1
    Image.new("1", (side, side)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match=f"is {side}x{side} pixels, over the"):
        read_image(str(tmp_path / "big.png"), 1, (8, 8))
