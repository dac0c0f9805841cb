"""The random distortions of training images: one affine warp per image, drawn in the input pipeline."""

from __future__ import annotations

import numpy as np
import scipy.ndimage
import tensorflow as tf
from tensorflow import keras

from src.core.config import IMAGE_SIDE, N_CLASSES, Config
from src.models.augmentation import Distortions, sampling_points, warp
from src.training.trainer import batches

SEED = tf.constant([3, 4], tf.int64)
CENTRE = (IMAGE_SIDE - 1) / 2.0


def rows(count=32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, IMAGE_SIDE * IMAGE_SIDE), dtype=np.float32)


def warps(distortions: Distortions, count=2000) -> np.ndarray:
    """`count` drawn warps as 3x3 matrices that map an output pixel (x, y, 1) to the input point it reads."""
    numbers = distortions.transforms(count, SEED).numpy()
    matrices = np.zeros((count, 3, 3))
    matrices[:, :2, :] = numbers[:, :6].reshape(count, 2, 3)
    matrices[:, 2, 2] = 1.0
    assert np.all(numbers[:, 6:] == 0)  # affine: no perspective
    return matrices


def test_a_warp_keeps_shape_dtype_and_range_and_changes_the_pixels():
    pixels = rows()
    warped = Distortions(10.0, 0.1, 0.1)(pixels, SEED).numpy()
    assert warped.shape == pixels.shape and warped.dtype == np.float32
    assert warped.min() >= 0.0 and warped.max() <= pixels.max()
    assert not np.allclose(warped, pixels, atol=0.05)


def test_no_distortion_is_the_identity():
    pixels = rows()
    np.testing.assert_array_equal(Distortions(0.0, 0.0, 0.0)(pixels, SEED).numpy(), pixels)


def test_the_same_seed_draws_the_same_warps_and_another_seed_others():
    distortions, pixels = Distortions(10.0, 0.1, 0.1), rows()
    first = distortions(pixels, SEED).numpy()
    np.testing.assert_array_equal(distortions(pixels, SEED).numpy(), first)
    assert not np.allclose(distortions(pixels, tf.constant([3, 5], tf.int64)).numpy(), first)


def test_a_shift_moves_the_image_by_at_most_its_share_of_the_side():
    matrices = warps(Distortions(0.0, 0.0, 0.1))
    np.testing.assert_allclose(matrices[:, :2, :2], np.broadcast_to(np.eye(2), (len(matrices), 2, 2)), atol=1e-6)
    offsets = matrices[:, :2, 2]
    assert np.abs(offsets).max() <= 0.1 * IMAGE_SIDE + 1e-5
    assert np.abs(offsets).max() > 0.09 * IMAGE_SIDE  # the draws span the range


def test_a_zoom_scales_about_the_centre_within_its_range():
    matrices = warps(Distortions(0.0, 0.2, 0.0))
    scale = matrices[:, 0, 0]
    np.testing.assert_allclose(matrices[:, 1, 1], scale, atol=1e-6)
    np.testing.assert_allclose(matrices[:, [0, 1], [1, 0]], 0.0, atol=1e-6)
    assert scale.min() >= 0.8 - 1e-6 and scale.max() <= 1.2 + 1e-6
    assert scale.min() < 0.81 and scale.max() > 1.19
    np.testing.assert_allclose(matrices @ [CENTRE, CENTRE, 1.0], [[CENTRE, CENTRE, 1.0]] * len(matrices), atol=1e-4)


def test_a_rotation_turns_about_the_centre_within_its_range():
    matrices = warps(Distortions(30.0, 0.0, 0.0))
    degrees = np.degrees(np.arctan2(matrices[:, 1, 0], matrices[:, 0, 0]))
    assert np.abs(degrees).max() <= 30.0 + 1e-4 and np.abs(degrees).max() > 29.0
    # A rotation: orthonormal, no scaling, the centre fixed.
    products = np.einsum("nij,nkj->nik", matrices[:, :2, :2], matrices[:, :2, :2])
    np.testing.assert_allclose(products, np.broadcast_to(np.eye(2), products.shape), atol=1e-5)
    np.testing.assert_allclose(matrices @ [CENTRE, CENTRE, 1.0], [[CENTRE, CENTRE, 1.0]] * len(matrices), atol=1e-4)


def test_all_three_compose_into_one_warp_whose_scale_is_the_zoom():
    matrices = warps(Distortions(20.0, 0.1, 0.1))
    determinant = np.linalg.det(matrices[:, :2, :2])
    assert determinant.min() >= 0.9**2 - 1e-5 and determinant.max() <= 1.1**2 + 1e-5
    # The input point read for the centre is the centre less the shift, turned and scaled.
    assert np.abs(matrices @ [CENTRE, CENTRE, 1.0] - [CENTRE, CENTRE, 1.0]).max() <= 1.1 * 0.1 * IMAGE_SIDE * 2**0.5


def test_the_warp_is_a_rotation_then_a_zoom_then_a_shift_of_the_drawn_sizes():
    # Built independently from the same draws: Keras' RandomRotation, RandomZoom and RandomTranslation, in that
    # order, each a map from output pixel to input point; applied in order, the later ones' maps come first.
    rotation, zoom, shift = 20.0, 0.2, 0.1
    draws = tf.random.stateless_uniform((50, 4), SEED, minval=-1.0, maxval=1.0).numpy()
    expected = []
    for turn, scale, right, down in draws:
        angle = np.radians(turn * rotation)
        about_centre = np.array([[1, 0, CENTRE], [0, 1, CENTRE], [0, 0, 1]])
        to_centre = np.linalg.inv(about_centre)
        rotate = about_centre @ [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
        zoomed = about_centre @ np.diag([1 + scale * zoom, 1 + scale * zoom, 1])
        moved = np.array([[1, 0, -right * shift * IMAGE_SIDE], [0, 1, -down * shift * IMAGE_SIDE], [0, 0, 1]])
        expected.append(rotate @ to_centre @ zoomed @ to_centre @ moved)
    np.testing.assert_allclose(warps(Distortions(rotation, zoom, shift), count=50), expected, atol=1e-4)


def test_the_settings_reach_the_warp_in_their_places():
    config = Config(family="cnn", scaling="unit", augment_rotation=7.0, augment_zoom=0.2, augment_shift=0.3)
    assert Distortions.of(config) == Distortions(rotation_degrees=7.0, zoom=0.2, shift=0.3)
    assert Distortions.of(Config(family="cnn", scaling="unit")) is None


def test_the_elastic_settings_reach_the_warp():
    config = Config(family="cnn", scaling="unit", augment_elastic=30.0, elastic_sigma=5.0)
    assert config.augmented
    assert Distortions.of(config) == Distortions(0.0, 0.0, 0.0, elastic=30.0, elastic_sigma=5.0)


def test_the_resampling_is_tensorflows_own_where_there_is_no_elastic_field():
    # The elastic warp resamples by its own bilinear reading: with a zero field it must be the affine warp's,
    # out to the edges (a half turn, large zooms and shifts push most points off the image).
    pixels = rows(64)
    for distortions in (Distortions(10.0, 0.1, 0.1), Distortions(180.0, 0.9, 0.9)):
        transforms = distortions.transforms(64, SEED)
        fields = tf.zeros((64, 2, IMAGE_SIDE, IMAGE_SIDE))
        images = tf.reshape(pixels, (-1, IMAGE_SIDE, IMAGE_SIDE))
        ours = tf.reshape(warp(images, *sampling_points(transforms, fields)), (64, -1)).numpy()
        np.testing.assert_allclose(ours, distortions(pixels, SEED).numpy(), atol=1e-6)


def test_the_elastic_field_is_smoothed_noise_scaled_by_alpha():
    distortions = Distortions(0.0, 0.0, 0.0, elastic=34.0, elastic_sigma=4.0)
    fields = distortions.displacements(5, SEED).numpy()
    noise = tf.random.stateless_uniform((5, 2, IMAGE_SIDE, IMAGE_SIDE), SEED, minval=-1.0, maxval=1.0).numpy()
    expected = 34.0 * np.array(
        [
            [scipy.ndimage.gaussian_filter(plane, 4.0, mode="constant") for plane in field]
            for field in noise.astype(np.float64)
        ]
    )
    np.testing.assert_allclose(fields, expected, atol=1e-5)
    # Smooth: neighbouring pixels move nearly together, unlike the noise.
    assert np.abs(np.diff(fields, axis=-1)).mean() < 0.2 * np.abs(fields).mean()


def test_an_elastic_warp_moves_each_pixel_by_its_own_displacement():
    # One lit pixel, where the field (alone: no affine part) is largest: the output pixels that read it
    # are those about it less the (nearly constant, being smooth) displacement there.
    distortions = Distortions(0.0, 0.0, 0.0, elastic=40.0, elastic_sigma=6.0)
    field = distortions.displacements(1, tf.random.experimental.stateless_fold_in(SEED, 1)).numpy()[0]
    middle = np.zeros((IMAGE_SIDE, IMAGE_SIDE), bool)
    middle[8:20, 8:20] = True
    row, column = np.unravel_index(np.argmax(np.where(middle, np.hypot(*field), 0.0)), middle.shape)
    image = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.float32)
    image[row, column] = 1.0
    warped = distortions(image.reshape(1, -1), SEED).numpy().reshape(IMAGE_SIDE, IMAGE_SIDE)
    down, right = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE]
    centre_of_mass = np.array([(warped * right).sum() / warped.sum(), (warped * down).sum() / warped.sum()])
    assert np.abs(centre_of_mass - [column, row]).max() > 0.5  # it did move
    np.testing.assert_allclose(centre_of_mass, [column - field[0, row, column], row - field[1, row, column]], atol=0.1)


def test_the_elastic_field_keeps_the_affine_draws_and_follows_its_seed():
    pixels = rows()
    elastic = Distortions(10.0, 0.1, 0.1, elastic=34.0)
    first = elastic(pixels, SEED).numpy()
    assert first.shape == pixels.shape and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= pixels.max() + 1e-6
    np.testing.assert_array_equal(elastic(pixels, SEED).numpy(), first)
    assert not np.allclose(elastic(pixels, tf.constant([3, 5], tf.int64)).numpy(), first)
    assert not np.allclose(Distortions(10.0, 0.1, 0.1)(pixels, SEED).numpy(), first, atol=0.05)
    np.testing.assert_array_equal(elastic.transforms(32, SEED), Distortions(10.0, 0.1, 0.1).transforms(32, SEED))
    # And the warp uses them: a vanishing field leaves the affine warp of the same seed.
    faint = Distortions(10.0, 0.1, 0.1, elastic=1e-4)(pixels, SEED).numpy()
    np.testing.assert_allclose(faint, Distortions(10.0, 0.1, 0.1)(pixels, SEED).numpy(), atol=1e-3)


def test_the_image_moves_where_the_warp_says():
    # A single lit pixel: bilinear sampling keeps its centre of mass exactly where the shift puts it.
    image = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.float32)
    image[12, 15] = 1.0
    distortions = Distortions(0.0, 0.0, 0.1)
    (matrix,) = warps(distortions, count=1)
    warped = distortions(image.reshape(1, -1), SEED).numpy().reshape(IMAGE_SIDE, IMAGE_SIDE)
    down, right = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE]
    centre_of_mass = [(warped * right).sum() / warped.sum(), (warped * down).sum() / warped.sum()]
    # Output pixel p reads input point p + t (t: the matrix's translation): the content moves by -t.
    np.testing.assert_allclose(centre_of_mass, [15 - matrix[0, 2], 12 - matrix[1, 2]], atol=1e-4)


def pipeline(distorting: tf.Variable, seed=7):
    keras.utils.set_random_seed(0)
    features, targets = rows(48), np.eye(N_CLASSES, dtype=np.float32)[np.arange(48) % N_CLASSES]
    return features, targets, batches(features, targets, 16, seed, 1, Distortions(10.0, 0.1, 0.1), distorting)


def epoch(dataset) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*((images.numpy(), labels.numpy()) for images, labels in dataset), strict=True)
    return np.concatenate(images), np.concatenate(labels)


def test_the_pipeline_distorts_every_epoch_anew_and_repeatably():
    features, targets, dataset = pipeline(tf.Variable(True))
    first, second = epoch(dataset), epoch(dataset)
    assert not np.allclose(first[0], second[0])
    # No row comes through as it was.
    assert not (first[0][:, None, :] == features[None, :, :]).all(axis=2).any()
    # Every row once an epoch, its label beside it.
    assert sorted(first[1].argmax(1)) == sorted(targets.argmax(1)) == sorted(second[1].argmax(1))
    again = pipeline(tf.Variable(True))[2]
    np.testing.assert_array_equal(epoch(again)[0], first[0])
    np.testing.assert_array_equal(epoch(again)[0], second[0])


def test_each_batch_and_each_epoch_draws_its_own_warps():
    # The same image in every row: only the draws tell the rows apart.
    keras.utils.set_random_seed(0)
    features = np.repeat(rows(1), 32, axis=0)
    targets = np.zeros((32, N_CLASSES), np.float32)
    dataset = batches(features, targets, 16, 7, 1, Distortions(10.0, 0.1, 0.1), tf.Variable(True))
    images = np.concatenate([epoch(dataset)[0], epoch(dataset)[0]])
    assert len(np.unique(images.round(5), axis=0)) == len(images)


def test_switched_off_the_pipeline_passes_each_row_through_with_its_label():
    distorting = tf.Variable(True)
    features, targets, dataset = pipeline(distorting)
    distorting.assign(False)
    images, labels = epoch(dataset)
    order = [int(np.flatnonzero((features == image).all(axis=1))[0]) for image in images]
    assert sorted(order) == list(range(len(features)))
    np.testing.assert_array_equal(labels, targets[order])
