"""Pictures of a recording: IMU panels, activity band, a strip of frames and the narrations on one time axis.

Owns the preview picture of ANY recording in the format of data.py (synthetic, Ego4D, your own), and the IMU
plot that evaluate.py reuses for its retrieval pictures. PIL only.

    python data.py show data/synthetic/syn001_kitchen --out docs/preview.png [--width 1200 --height 800]
"""
import numpy as np
from PIL import Image, ImageDraw, ImageFont

import data

_PLOT_LEFT, _PLOT_RIGHT = 64, 10  # margins of draw_signals' panels [px]; `show` aligns its time axis to them
_AXIS_COLORS = ((214, 39, 40), (44, 160, 44), (31, 119, 180))  # x, y, z
_ACTIVITY_COLORS = ((66, 133, 244), (219, 68, 55), (158, 158, 158), (171, 71, 188), (255, 167, 38),
                    (38, 166, 154), (121, 85, 72))  # in data.ACTIVITIES order


def _polyline(values, x0, x1, y_of):
    """Points of a polyline over [x0, x1]; long signals become a min/max envelope per pixel column."""
    n, cols = len(values), max(2, int(x1 - x0))
    if n <= 2 * cols:
        return list(zip(np.linspace(x0, x1, n).tolist(), y_of(values).tolist()))
    edges = np.linspace(0, n, cols + 1).astype(int)[:-1]
    lo, hi = np.minimum.reduceat(values, edges), np.maximum.reduceat(values, edges)
    xs = np.repeat(np.linspace(x0, x1, cols), 2)
    ys = y_of(np.stack([lo, hi], axis=1).reshape(-1))
    return list(zip(xs.tolist(), ys.tolist()))


def draw_signals(imu, width, height, title=None):
    """Plot IMU channels (6, T) as two labelled panels, acc [m/s^2] and gyro [rad/s], x/y/z in red/green/blue."""
    imu = np.asarray(imu, np.float64)
    if imu.ndim != 2 or imu.shape[0] != 6 or imu.shape[1] < 2:
        raise ValueError(f"draw_signals: expected imu of shape (6, T) with T >= 2, got {imu.shape}")
    img = Image.new("RGB", (width, height), "white")
    draw, font = ImageDraw.Draw(img), ImageFont.load_default(size=11)
    top = 18 if title else 4
    if title:
        draw.text((_PLOT_LEFT, 2), title, fill="black", font=font)
    gap = 6
    panel = (height - top - gap - 4) // 2
    x0, x1 = _PLOT_LEFT, width - _PLOT_RIGHT
    for g, (name, unit) in enumerate((("acc", "m/s^2"), ("gyro", "rad/s"))):
        y0 = top + g * (panel + gap)
        y1 = y0 + panel
        sig = imu[3 * g:3 * g + 3]
        lo, hi = float(sig.min()), float(sig.max())
        pad = max(0.05 * (hi - lo), 1e-3)
        lo, hi = lo - pad, hi + pad
        y_of = lambda v, lo=lo, hi=hi, y0=y0, y1=y1: y1 - (v - lo) / (hi - lo) * (y1 - y0)  # noqa: E731
        draw.rectangle([x0, y0, x1, y1], outline=(170, 170, 170))
        if lo < 0 < hi:
            draw.line([(x0, y_of(0.0)), (x1, y_of(0.0))], fill=(215, 215, 215))
        for c in range(3):
            draw.line(_polyline(sig[c], x0 + 1, x1 - 1, y_of), fill=_AXIS_COLORS[c], width=1)
        draw.text((4, y0), f"{hi:.1f}", fill=(90, 90, 90), font=font)
        draw.text((4, y1 - 12), f"{lo:.1f}", fill=(90, 90, 90), font=font)
        draw.text((4, (y0 + y1) // 2 - 12), name, fill="black", font=font)
        draw.text((4, (y0 + y1) // 2), unit, fill=(90, 90, 90), font=font)
        for c, axis in enumerate("xyz"):
            draw.text((x1 - 50 + 16 * c, y0 + 2), axis, fill=_AXIS_COLORS[c], font=font)
    return img


def draw_recording(rec, width=1200, height=800, n_frames=10):
    """One picture of a recording: IMU panels, activity band, a strip of frames and the narrations, all on a
    shared time axis."""
    if not (400 <= width <= 8000 and 300 <= height <= 8000 and 1 <= n_frames <= 50):
        raise data.DataError(f"preview size {width}x{height} with {n_frames} frames: need width in [400, 8000], "
                             f"height in [300, 8000] and 1-50 frames")
    duration = float(max(rec.imu_t[-1], rec.frames_t[-1]))
    x0, x1 = _PLOT_LEFT, width - _PLOT_RIGHT
    x_of = lambda t: x0 + (x1 - x0) * t / duration  # noqa: E731
    img = Image.new("RGB", (width, height), "white")
    draw, font, big = ImageDraw.Draw(img), ImageFont.load_default(size=11), ImageFont.load_default(size=13)
    title = (f"{rec.id}   source={rec.meta.get('source')}   scene={rec.meta.get('scene')}   {duration:.1f} s   "
             f"IMU {len(rec.imu)} samples   video {len(rec.frames)} frames")
    draw.text((8, 4), title, fill="black", font=big)
    legend = sum(draw.textlength(a, font=font) + 22 for a in data.ACTIVITIES)
    x = width - legend - 4
    if x > 16 + draw.textlength(title, font=big):  # activity colours, when there is room
        for a, color in zip(data.ACTIVITIES, _ACTIVITY_COLORS):
            draw.rectangle([x, 7, x + 10, 17], fill=color)
            draw.text((x + 13, 6), a, fill="black", font=font)
            x += draw.textlength(a, font=font) + 22
    y = 24
    signals_h = int(0.4 * height)
    img.paste(draw_signals(np.asarray(rec.imu).T, width, signals_h), (0, y))  # (N, 6) -> (6, N)
    y += signals_h + 2
    for s in rec.segments:  # activity band
        known = s["label"] in data.ACTIVITIES
        color = _ACTIVITY_COLORS[data.ACTIVITIES.index(s["label"])] if known else (120, 120, 120)
        a, b = x_of(s["start"]), x_of(s["end"])
        draw.rectangle([a, y, max(a, b - 1), y + 14], fill=color)
        if draw.textlength(s["label"], font=font) < b - a - 4:
            draw.text((a + 3, y + 1), s["label"], fill="white", font=font)
    draw.text((4, y + 1), "activity", fill="black", font=font)
    y += 18
    slot = (x1 - x0) / n_frames
    tile = int(min(slot - 4, 0.22 * height))
    for i in range(n_frames):
        t = (i + 0.5) * duration / n_frames
        j = int(np.clip(np.searchsorted(rec.frames_t, t), 0, len(rec.frames) - 1))
        frame = Image.fromarray(np.asarray(rec.frames[j])).resize((tile, tile), Image.NEAREST)
        img.paste(frame, (int(x_of(t) - tile / 2), y))
        draw.text((int(x_of(t) - tile / 2), y + tile + 1), f"{rec.frames_t[j]:.1f} s", fill=(90, 90, 90), font=font)
    draw.text((4, y), "video", fill="black", font=font)
    y += tile + 16
    draw.text((4, y), "narrations", fill="black", font=font)
    rows = max(1, (height - y - 2) // 13)
    row_end = [x0] * rows
    for n in sorted(rec.narrations, key=lambda n: n["t"]):
        x = x_of(n["t"])
        draw.line([(x, y - 3), (x, y + 1)], fill="black")
        r = int(np.argmin(row_end))
        if row_end[r] > x:
            continue  # no free row here: the tick is still drawn
        text = data.clean_narration(n["text"])
        while text and x + draw.textlength(text, font=font) > width - 2:
            text = text[:-2] + "~"
        draw.text((x, y + 2 + 13 * r), text, fill=(40, 40, 40), font=font)
        row_end[r] = x + draw.textlength(text, font=font) + 6
    return img

