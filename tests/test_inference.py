import numpy as np
import pytest
from PIL import Image

from mnist_jax import inference
from mnist_jax.model import Classifier, init_params


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def user_photo(digit: np.ndarray, path, size=112, mode="RGB"):
    """An MNIST digit as a user might have it: large, dark ink on light paper, in colour."""
    image = Image.fromarray(255 - digit[..., 0]).resize((size, size), Image.Resampling.BILINEAR)
    image.convert(mode).save(path)
    return path


@pytest.mark.parametrize("name,mode", [("digit.png", "RGB"), ("digit.jpg", "RGB"), ("digit_la.png", "LA")])
def test_user_images_become_mnist_like(mnist, tmp_path, name, mode):
    images, _ = mnist["test"]
    for digit in images[:8]:
        loaded = inference.load_image(user_photo(digit, tmp_path / name, mode=mode))
        assert loaded.shape == (28, 28, 1) and loaded.dtype == np.uint8
        assert loaded.max() == 255 and np.median(loaded) == 0  # light digit on a dark background
        # Same digit, same place, give or take the one-pixel rounding of the centring.
        assert max(correlation(np.roll(loaded, (dy, dx), (0, 1)), digit)
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1)) > 0.8
        # And the same as the 28x28 original through the same pipeline.
        assert correlation(loaded, inference.to_mnist(Image.fromarray(digit[..., 0]))) > 0.9


def test_light_on_dark_images_are_not_inverted(mnist, tmp_path):
    digit = mnist["test"][0][0]
    Image.fromarray(digit[..., 0]).save(tmp_path / "plain.png")
    loaded = inference.load_image(tmp_path / "plain.png")
    assert correlation(loaded, digit) > 0.9


def test_classify_gives_probabilities_and_top_k():
    import jax

    params = init_params(Classifier(), jax.random.key(0))
    probs = inference.classify(params, np.zeros((2, 28, 28, 1), np.uint8))
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    top = inference.top_k(probs[0], 3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]


@pytest.mark.parametrize("content,message", [(None, "file not found"), (b"", "not an image"),
                                             (b"hello, not a picture", "not an image")])
def test_bad_image_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "input.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(inference.ImageError, match=message) as info:
        inference.load_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
