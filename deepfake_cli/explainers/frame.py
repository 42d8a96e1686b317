"""From the model's input frame back to the image's own pixels: undo the backbone's resize and crop (or pad).

A backbone sees an S x S crop of a resized copy of the image (`backbones._tower._geometry`: resize modes
shortest / squash / longest / none, then a centre crop, or a pad where the image is smaller), after the
optional `--align SIZE:QUALITY` step (shorter side to SIZE, centre crop SIZE x SIZE). Each of these is an
axis-aligned scale plus an offset, so a pixel centre of the file maps to one point of the model frame; the
evidence map is read there (nearest model-frame pixel), and is NaN where the point falls outside the frame
(cropped away: the model never saw that pixel). Pure numpy: no torch, no image decoding.
"""

from __future__ import annotations

import numpy as np

# one step: (scale_x, scale_y, offset_x, offset_y, out_width, out_height): x_out = x_in * scale_x + offset_x,
# and a point outside [0, out_width) x [0, out_height) was cut away by this step
Step = tuple[float, float, float, float, int, int]


def _resized_size(w: int, h: int, resize: int, mode: str) -> tuple[int, int]:
    """The size after the backbone's Resize, as `_tower._resize` / `_fit_longest_and_pad` compute it."""
    if mode == "none":
        return w, h
    if mode == "squash":
        return resize, resize
    if mode == "longest":
        ratio = max(w, h) / resize
        return max(1, round(w / ratio)), max(1, round(h / ratio))
    # shortest: torchvision's Resize(int): the shorter side to `resize`, the longer one truncated
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = resize, int(resize * long / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)


def _crop_offset(size: int, crop: int, mode: str) -> int:
    """Where the resized image's first pixel lands in the crop x crop frame (negative: cropped)."""
    if mode == "longest":  # timm's CenterCropOrPad, as `_fit_longest_and_pad`
        return (crop - size) // 2 if size <= crop else -int(round((size - crop) / 2.0))
    # torchvision CenterCrop: pad a smaller side first (odd pixel right / bottom), then crop the centre
    pad = (crop - size) // 2 if crop > size else 0
    padded = max(size, crop)
    return pad - int(round((padded - crop) / 2.0))


def geometry_steps(width: int, height: int, preprocessing: dict) -> list[Step]:
    """The steps from a `width` x `height` file to the model's input frame, for a model's recorded
    `preprocessing` (keys input_size, resize, resize_mode, align as `BackboneConfig.preprocessing` and the
    model card write them)."""
    steps: list[Step] = []
    w, h = int(width), int(height)
    align = preprocessing.get("align")
    if align:  # `data.transforms.align_image`: shorter side to SIZE (rounded), crop SIZE x SIZE (floor offsets)
        size = int(str(align).split(":")[0])
        scale = size / min(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        steps.append((nw / w, nh / h, -float((nw - size) // 2), -float((nh - size) // 2), size, size))
        w, h = size, size
    crop = int(preprocessing.get("crop") or preprocessing["input_size"])
    mode = preprocessing.get("resize_mode", "shortest")
    nw, nh = _resized_size(w, h, int(preprocessing.get("resize") or crop), mode)
    steps.append((nw / w, nh / h, float(_crop_offset(nw, crop, mode)), float(_crop_offset(nh, crop, mode)),
                  crop, crop))
    return steps


def _axis(n: int, steps: list[Step], axis: int) -> np.ndarray:
    """Model-frame index (int) of each pixel centre along one axis of the file; -1 where cut away."""
    pos = np.arange(n, dtype=np.float64) + 0.5
    ok = np.ones(n, dtype=bool)
    for step in steps:
        pos = pos * step[axis] + step[2 + axis]
        ok &= (pos >= 0) & (pos < step[4 + axis])
    idx = np.floor(pos).astype(np.int64)
    return np.where(ok, idx, -1)


def to_image_frame(model_map: np.ndarray, width: int, height: int, preprocessing: dict) -> np.ndarray:
    """A map over the model's S x S input frame -> float32 (height, width) over the file's pixels, NaN where
    the model never saw the pixel."""
    model_map = np.asarray(model_map, dtype=np.float32)
    steps = geometry_steps(width, height, preprocessing)
    if model_map.shape != (steps[-1][5], steps[-1][4]):
        raise ValueError(f"map of shape {model_map.shape} is not the model frame {steps[-1][5]}x{steps[-1][4]}")
    cols, rows = _axis(int(width), steps, 0), _axis(int(height), steps, 1)
    out = model_map[np.ix_(np.maximum(rows, 0), np.maximum(cols, 0))]
    out[rows < 0, :] = np.nan
    out[:, cols < 0] = np.nan
    return out


def seen_box(width: int, height: int, preprocessing: dict) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the part of the file the model sees (x1, y1 exclusive)."""
    steps = geometry_steps(width, height, preprocessing)
    cols, rows = np.flatnonzero(_axis(int(width), steps, 0) >= 0), np.flatnonzero(_axis(int(height), steps, 1) >= 0)
    if not len(cols) or not len(rows):
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
