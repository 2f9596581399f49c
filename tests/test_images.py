import numpy as np
import pytest
from PIL import Image

from taco.data.images import build_cache, decode_image, to_rgb
from taco.data.sources.synthetic import _INVERSE_ORIENTATION
from taco.errors import ConfigError, DataError


def _display_image(w=80, h=60):
    """An asymmetric picture: a red top-left corner and a blue bottom edge."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 3, : w // 3] = (255, 0, 0)
    a[-h // 4 :, :] = (0, 0, 255)
    return a


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    display = Image.fromarray(_display_image())
    stored = display.transpose(_INVERSE_ORIENTATION[orientation]) if orientation > 1 else display
    exif = Image.Exif()
    exif[274] = orientation
    path = tmp_path / "x.JPG"
    stored.save(path, "JPEG", quality=95, exif=exif.tobytes())
    got = decode_image(path, 40, expected=(80, 60)).astype(int)
    want = np.asarray(display.resize((40, 40), Image.Resampling.BILINEAR)).astype(int)
    assert np.abs(got - want).mean() < 8


def test_size_mismatch_is_reported(tmp_path):
    path = tmp_path / "x.jpg"
    Image.fromarray(_display_image()).save(path)
    with pytest.raises(ValueError, match="does not match the annotation's 60x80"):
        decode_image(path, 32, expected=(60, 80))


def test_large_jpeg_uses_reduced_decode_and_keeps_content(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(_display_image(1600, 1200)).save(path, quality=90)
    got = decode_image(path, 64, expected=(1600, 1200))
    assert got.shape == (64, 64, 3) and got[5, 5, 0] > 200 and got[-3, 30, 2] > 200


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_modes_become_rgb(mode):
    base = Image.fromarray(_display_image())
    if mode == "I;16":
        im = Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257)
    else:
        im = base.convert(mode)
    out = to_rgb(im)
    assert out.mode == "RGB" and out.size == base.size


def test_letterbox_keeps_aspect(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.full((30, 90, 3), 200, np.uint8)).save(path)
    got = decode_image(path, 30, resize="letterbox")
    assert got[0].max() == 0 and got[15, 15].min() == 200  # padded top, content in the middle


def _files(tmp_path, n=4):
    paths, sizes = [], []
    for i in range(n):
        p = tmp_path / f"img{i}.jpg"
        Image.fromarray(_display_image()).save(p)
        paths.append(p)
        sizes.append((80, 60))
    return paths, np.array(sizes)


def test_cache_is_built_once_and_rebuilt_when_inputs_change(tmp_path):
    paths, sizes = _files(tmp_path)
    first = build_cache(paths, sizes, 16, tmp_path / "c", "hash1")
    assert first.built and first.array.shape == (4, 16, 16, 3)
    assert isinstance(first.array, np.memmap)
    again = build_cache(paths, sizes, 16, tmp_path / "c", "hash1")
    assert not again.built
    assert build_cache(paths, sizes, 24, tmp_path / "c", "hash1").built  # size changed
    assert build_cache(paths, sizes, 16, tmp_path / "c", "hash2").built  # annotations changed
    Image.fromarray(_display_image()[::-1].copy()).save(paths[0])  # an image changed
    assert build_cache(paths, sizes, 16, tmp_path / "c", "hash1").built


def test_bad_images_all_listed_before_training_and_nothing_cached(tmp_path):
    paths, sizes = _files(tmp_path, 5)
    paths[1].write_bytes(b"")  # empty
    paths[2].write_bytes(paths[2].read_bytes()[:200])  # truncated
    paths[3].unlink()  # missing
    with pytest.raises(DataError) as err:
        build_cache(paths, sizes, 16, tmp_path / "c", "h")
    text = str(err.value)
    assert "3 image(s) cannot be used" in text
    for p in paths[1:4]:
        assert str(p) in text
    assert "file not found" in text and "on_bad_image=skip" in text
    assert not list((tmp_path / "c").glob("*.npy"))  # nothing a later run could trust


def test_skip_policy_keeps_the_good_rows(tmp_path):
    paths, sizes = _files(tmp_path, 4)
    paths[2].write_bytes(b"not an image")
    cache = build_cache(paths, sizes, 16, tmp_path / "c", "h", on_bad_image="skip")
    assert list(cache.good_rows) == [0, 1, 3]
    assert cache.bad[0][0] == 2 and str(paths[2]) in cache.bad[0][1].path


def test_bad_config_values():
    """Their rules are the data module's annotations (stated once, checked before a build)."""
    from taco.schema import check_config

    target = "taco.data.datamodule.TacoDataModule"
    for key, value, allowed in [
        ("resize", "stretch", "'squash' | 'letterbox'"),
        ("on_bad_image", "ignore", "'error' | 'skip'"),
    ]:
        with pytest.raises(ConfigError) as err:
            check_config({"dataset": {"_target_": target, "name": "x", "root": ".", key: value}})
        assert str(err.value) == f"dataset.{key}={value!r} is not allowed: expected {allowed}"
