"""The picture of a recording: IMU panels, activity band, a strip of frames and the narrations on one time axis.

Owns the preview of ANY recording in the format of data.py (synthetic, Ego4D, Aria, your own); its IMU panels are
evaluate.py's draw_signals, the plot of its retrieval pictures. PIL only.

    python -m sources.world show data/synthetic/syn001_kitchen --out docs/preview.png [--width 1200 --height 800]
"""
import numpy as np
from PIL import Image, ImageDraw, ImageFont

import data
from evaluate import PLOT_MARGINS, draw_signals

_ACTIVITY_COLORS = ((66, 133, 244), (219, 68, 55), (158, 158, 158), (171, 71, 188), (255, 167, 38),
                    (38, 166, 154), (121, 85, 72))  # in data.ACTIVITIES order


def draw_recording(rec, width=1200, height=800, n_frames=10):
    """One picture of a recording: IMU panels, activity band, a strip of frames and the narrations, all on a
    shared time axis."""
    if not (400 <= width <= 8000 and 300 <= height <= 8000 and 1 <= n_frames <= 50):
        raise data.DataError(f"preview size {width}x{height} with {n_frames} frames: need width in [400, 8000], "
                             f"height in [300, 8000] and 1-50 frames")
    duration = float(max(rec.imu_t[-1], rec.frames_t[-1]))
    x0, x1 = PLOT_MARGINS[0], width - PLOT_MARGINS[1]
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

