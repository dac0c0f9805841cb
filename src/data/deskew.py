"""Deskewing: each digit sheared upright by its own second moments and centred, as classic MNIST work does.

A slanted stroke is the largest difference between two writers' digits that the network must
otherwise learn; undoing it before the network sees the image (training and test alike) leaves
it less to learn. For every image, the ink's centre (r, c), its row variance and its row-column
covariance give the slant alpha = cov / var; the output pixel (i, j) reads the input at
(i + r - m, j + c - m + alpha (i - m)), m the frame's centre, by bilinear interpolation with
zeros outside the frame. An image without ink is left as it is.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from src.core.config import IMAGE_SIDE as SIDE
from src.core.config import N_PIXELS

CENTRE = (SIDE - 1) / 2
ROWS, COLS = np.mgrid[:SIDE, :SIDE].astype(np.float64)  # each pixel's row and column
# Images at a time, a chunk per thread (NumPy lets go of the GIL while it computes): about 100 MB of float64
# temporaries a chunk, so a few threads at most, whatever the machine's cores.
CHUNK = 1_024
THREADS = min(4, os.cpu_count() or 1)


def deskew(images: np.ndarray) -> np.ndarray:
    """`images` (n, 784) of 0..255 pixels, each deskewed and centred, in the same dtype and shape.

    Whole-number pixels come back rounded to whole numbers; float pixels (on any scale) as read.
    """
    flat = images.reshape(len(images), N_PIXELS)
    out = np.empty(flat.shape, flat.dtype)
    whole_numbers = np.issubdtype(images.dtype, np.integer)

    def fill(start: int) -> None:
        block = _deskew_chunk(flat[start : start + CHUNK])
        # Rounded and cast chunk by chunk: done on all 70,000 images at once, in float64, it took a third of the time.
        out[start : start + CHUNK] = np.clip(np.rint(block), 0, 255) if whole_numbers else block

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(fill, range(0, len(flat), CHUNK)))
    return out.reshape(images.shape)


def slants(images: np.ndarray) -> np.ndarray:
    """Each image's slant: the ink's row-column covariance over its row variance (0 for no ink)."""
    return _moments(images.reshape(len(images), SIDE, SIDE).astype(np.float64))[2]


def _moments(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each image's ink centre (row, column) and slant; the frame's centre and 0 for an image without ink."""
    total = ink.sum(axis=(1, 2))
    # The centre as the mean over normalised weights, as since `--deskew` began: the raw-sum quotient below
    # differs in the last bit, which moves a few pixels by one level and would change earlier runs' bytes.
    weights = ink / np.where(total > 0, total, 1.0)[:, None, None]
    r = np.where(total > 0, (ROWS * weights).sum(axis=(1, 2)), CENTRE)
    c = np.where(total > 0, (COLS * weights).sum(axis=(1, 2)), CENTRE)
    row_sum, col_sum = (ROWS * ink).sum(axis=(1, 2)), (COLS * ink).sum(axis=(1, 2))
    row_squares = (ROWS**2 * ink).sum(axis=(1, 2))
    # Variance and covariance (times total squared) from raw sums: ink on one row must have no variance, not
    # a rounding error that divides into any slant. Exact for whole-number pixels; the tolerance covers floats.
    variance = total * row_squares - row_sum**2
    covariance = total * (ROWS * COLS * ink).sum(axis=(1, 2)) - row_sum * col_sum
    sloped = variance > 1e-9 * total * row_squares
    return r, c, np.divide(covariance, variance, out=np.zeros_like(variance), where=sloped)


def _deskew_chunk(flat: np.ndarray) -> np.ndarray:
    """Up to CHUNK flat images deskewed and centred, as float64."""
    ink = flat.reshape(-1, SIDE, SIDE).astype(np.float64)
    r, c, alpha = (values[:, None, None] for values in _moments(ink))
    source_rows = ROWS + r - CENTRE
    source_cols = COLS + c - CENTRE + alpha * (ROWS - CENTRE)
    return _bilinear(ink, source_rows, source_cols).reshape(len(flat), N_PIXELS)


def _bilinear(ink: np.ndarray, source_rows: np.ndarray, source_cols: np.ndarray) -> np.ndarray:
    """`ink` read at fractional (row, col) positions; pixels beyond the frame read as 0."""
    top, left = np.floor(source_rows), np.floor(source_cols)
    down, right = source_rows - top, source_cols - left
    top, left = top.astype(np.intp), left.astype(np.intp)
    flat = ink.reshape(len(ink), N_PIXELS)
    result = np.zeros_like(source_rows)
    for row_step, row_weight in ((0, 1 - down), (1, down)):
        row = top + row_step
        row_inside = (row >= 0) & (row < SIDE)
        row_start = np.clip(row, 0, SIDE - 1) * SIDE
        for col_step, col_weight in ((0, 1 - right), (1, right)):
            col = left + col_step
            inside = row_inside & (col >= 0) & (col < SIDE)
            # One gather along each image's flat pixels: one index array, where (image, row, col) takes three.
            where = (row_start + np.clip(col, 0, SIDE - 1)).reshape(len(ink), N_PIXELS)
            values = np.take_along_axis(flat, where, axis=1).reshape(source_rows.shape)
            # In place, in the order the bytes were first computed in: (value x row weight) x column weight.
            values[~inside] = 0.0
            values *= row_weight
            values *= col_weight
            result += values
    return result
