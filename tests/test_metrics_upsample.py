"""The bilinear upsampling is bit-exact with cv2.resize(INTER_LINEAR) (the arithmetic the public code uses)."""
import cv2
import numpy as np
import pytest

from eval.metrics.reference import upsample_ref
from eval.metrics.upsample import axis_coeffs, upsample, upsample_into


@pytest.mark.parametrize("shape", [(14, 14), (7, 7), (13, 17), (2, 2), (224, 224), (300, 200)])
def test_upsample_equals_cv2_exactly(shape):
    rng = np.random.default_rng(sum(shape))
    maps = (0.3 * rng.standard_normal((3, *shape))).astype(np.float32)
    want = np.stack([cv2.resize(m, (224, 224), interpolation=cv2.INTER_LINEAR) for m in maps])
    got = upsample(maps, 224)
    assert got.dtype == np.float32 and got.shape == (3, 224, 224)
    assert np.array_equal(got, want)
    assert np.array_equal(np.stack([upsample_ref(m) for m in maps]), want)


def test_upsample_keeps_leading_axes_and_other_sizes():
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((2, 3, 14, 14)).astype(np.float32)
    got = upsample(maps, 100)
    assert got.shape == (2, 3, 100, 100)
    assert np.array_equal(got[1, 2], cv2.resize(maps[1, 2], (100, 100), interpolation=cv2.INTER_LINEAR))


def test_upsample_into_a_rectangular_output_equals_cv2():
    rng = np.random.default_rng(4)
    src = (0.3 * rng.standard_normal((7, 11))).astype(np.float32)
    out = np.empty((20, 33), np.float32)
    tmp = np.empty((7, 33), np.float32)
    upsample_into(src, *axis_coeffs(7, 20), *axis_coeffs(11, 33), tmp, out)
    assert np.array_equal(out, cv2.resize(src, (33, 20), interpolation=cv2.INTER_LINEAR))
