"""Ego4D -> recordings (paper section 4.1): each video that has IMU becomes one recording of data.py's format.

Reads an Ego4D download (the Ego4D CLI, an accepted licence): full_scale/<uid>.mp4, imu/<uid>.csv and
annotations/narration.json, under v1/ or v2/. The video is decoded in-process by PyAV at the official 10 fps,
centre-cropped and resized; the IMU keeps Ego4D's own (uncalibrated) units and clock; the "#C" narrations of both
passes are kept, raw (data.clean_narration cleans them when windows are made).

    python -m sources.ego4d --root EGO4D_DIR --out data/ego4d [--videos UID,...] [--size 224] [--fps 10] [--workers 4]

An interrupted import resumes: the videos already written (each one atomically) are skipped.
"""
import argparse
import contextlib
import itertools
import json
import multiprocessing
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

import data
from data import DataError, load_file, need

FPS = 10.0  # the official IMU2CLIP preprocessing samples Ego4D video at 10 fps
COLUMNS = ("canonical_timestamp_ms", "accl_x", "accl_y", "accl_z", "gyro_x", "gyro_y", "gyro_z")


def _read_csv(path, chunk_rows=200_000):
    """Parse an Ego4D IMU CSV into (t_ms (N,), values (N, 6): accl xyz then gyro xyz), NaN where missing.
    Parsed in chunks of lines, so an hour of 200 Hz IMU never needs the whole file as strings."""
    parts, row = [], 1
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not the header's
            header = f.readline().strip()
            need(header, f"{path}: empty file, expected a header {','.join(COLUMNS)}")
            names = [h.strip().strip('"') for h in header.split(",")]
            missing = [c for c in COLUMNS if c not in names]
            need(not missing, f"{path}: missing column(s) {', '.join(missing)} (header: {header})")
            cols = [names.index(c) for c in COLUMNS]
            while chunk := list(itertools.islice(f, chunk_rows)):
                first, row = row + 1, row + len(chunk)  # the file's lines first..row (blank ones too)
                if not (lines := [ln for ln in chunk if ln.strip()]):
                    continue
                try:
                    s = np.char.strip(np.loadtxt(lines, delimiter=",", dtype=str, ndmin=2)[:, cols], ' "')  # (n, 7)
                    s[np.isin(np.char.lower(s), ("", "null", "nan", "none", "na"))] = "nan"  # missing values
                    parts.append(s.astype(np.float64))
                except (ValueError, IndexError) as e:
                    raise DataError(f"{path}: unreadable rows among lines {first}-{row} ({e})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text CSV ({e.reason} at byte {e.start})") from None
    need(parts, f"{path}: no data rows after the header")
    x = np.concatenate(parts)  # (N, 7)
    return x[:, 0], x[:, 1:]


def _clean_imu(path, t_ms, values, duration_sec):
    """Drop rows without a timestamp, sort, drop duplicate timestamps and rows with missing values (they
    become gaps that windowing drops, never zeros), and rows outside the video; report every count."""
    has_t = np.isfinite(t_ms)
    need(has_t.any(), f"{path}: every canonical_timestamp_ms is missing ({len(t_ms)} rows)")
    t_ms, values = t_ms[has_t], values[has_t]
    out_of_order = int((np.diff(t_ms) < 0).sum())
    bad = ~np.isfinite(values).all(axis=1)  # rows with missing values
    order = np.lexsort((bad, t_ms))  # by time, and at one time the complete rows first (a stable sort)
    t_ms, values, bad = t_ms[order], values[order], bad[order]
    dup = np.concatenate([[False], np.diff(t_ms) == 0])  # keep the first (complete, if any) row of each timestamp
    bad &= ~dup  # each dropped row is counted under its first reason
    t = t_ms / 1000.0
    outside = ((t < 0) | (t > duration_sec + 1.0)) & ~dup & ~bad
    report = {"rows": len(has_t), "dropped_missing_timestamp": int((~has_t).sum()), "out_of_order": out_of_order,
              "dropped_duplicate_timestamp": int(dup.sum()), "dropped_missing_values": int(bad.sum()),
              "dropped_outside_video": int(outside.sum()), "t_min_sec": float(t[0]), "t_max_sec": float(t[-1])}
    keep = ~(dup | bad | outside)
    t, values = t[keep], values[keep]
    need(len(t) >= 2, f"{path}: fewer than 2 usable IMU rows ({report})")
    report.update(kept=len(t), max_gap_sec=float(np.diff(t).max()), rate_hz=float(1.0 / np.median(np.diff(t))))
    return t, values.astype(np.float32), report


def _decode_video(mp4, size, tmp_dir, fps=FPS):
    """Decode an mp4 in-process with PyAV (FFmpeg's libraries, from pip) through FFmpeg's own filters, as
    `ffmpeg -vf fps=FPS,crop=...,scale=S:S` would: frame k at time k / fps (the frame nearest it), the centre
    square, resized to size x size. -> uint8 (F, size, size, 3) RGB, memory-mapped from a raw file in tmp_dir (the
    caller removes it), so that an hour of video never sits in memory."""
    import av  # (here: only this importer decodes video)
    raw, n = Path(tmp_dir) / f"{mp4.stem}.rgb", 0
    try:
        with av.open(str(mp4)) as container, open(raw, "wb") as out:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # decode on several threads
            graph = av.filter.Graph()
            chain = [graph.add_buffer(template=stream), graph.add("fps", f"{fps:g}"),
                     graph.add("crop", "'min(iw,ih)':'min(iw,ih)'"), graph.add("scale", f"{size}:{size}"),
                     graph.add("format", "rgb24"), graph.add("buffersink")]
            for a, b in zip(chain, chain[1:]):
                a.link_to(b)
            graph.configure()
            for frame in itertools.chain(container.decode(stream), [None]):  # None: the end, flush the filters
                graph.push(frame)
                while True:
                    try:
                        out.write(graph.pull().to_ndarray().tobytes())  # (size, size, 3)
                        n += 1
                    except (av.BlockingIOError, av.EOFError):  # the filters want the next frame, or are done
                        break
    except (av.FFmpegError, IndexError) as e:  # not a video, no video stream, a damaged file
        raise DataError(f"{mp4}: could not decode it ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None
    need(n, f"{mp4}: could not decode it (no frames decoded)")
    return np.memmap(raw, dtype=np.uint8, mode="r", shape=(n, size, size, 3))


def _narrations(path, narr_json, uid):
    """Narrations of one video: (the entries of both passes that mention the camera wearer, "#C" in any case, as raw
    {"t", "text"} by time; the entry count)."""
    entry, total, kept = narr_json.get(uid, {}), 0, []
    for pass_name in ("narration_pass_1", "narration_pass_2"):
        try:
            narrations = (entry.get(pass_name) or {}).get("narrations") or []
            need(isinstance(narrations, list), f"{path}: video {uid}'s {pass_name} narrations is not a list")
        except AttributeError:
            raise DataError(f"{path}: video {uid}'s {pass_name} is not an object with a narrations list") from None
        total += len(narrations)
        for n in narrations:
            try:
                text, t = str(n["narration_text"]), float(n["timestamp_sec"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: video {uid} has a narration without narration_text/timestamp_sec: "
                                f"{str(n)[:80]}") from None
            if "#c" in text.lower():  # the camera wearer is in it (the official filter, any case)
                kept.append({"t": t, "text": text})
    kept.sort(key=lambda n: n["t"])
    return kept, total


def _file(root, rel):
    """root/v1/rel, else root/v2/rel, else None."""
    return next((root / v / rel for v in ("v1", "v2") if (root / v / rel).exists()), None)


def _import_video(job):
    """One video -> one recording (a worker's job under --workers): decode, clean the IMU, write. -> its report."""
    uid, csv_path, mp4, narrations, n_total, out, size, fps = job
    t_ms, values = _read_csv(csv_path)
    with tempfile.TemporaryDirectory(dir=out, prefix=".ego4d-") as tmp:
        frames = _decode_video(mp4, size, tmp, fps)  # (F, S, S, 3)
        frames_t, duration = np.arange(len(frames)) / fps, len(frames) / fps  # the fps filter's k / fps grid
        imu_t, imu, rep = _clean_imu(csv_path, t_ms, values, duration)
        rep.update(narrations_total=n_total, narrations_kept=len(narrations), frames=len(frames))
        meta = {"source": "ego4d", "imu_rate_hz": round(rep["rate_hz"], 3), "video_fps": fps, "duration_sec": duration,
                "imu_units": {"acc": "uncalibrated (Ego4D accl_*)", "gyro": "uncalibrated (Ego4D gyro_*)"},
                "imu_frame": "Ego4D head-mounted camera IMU, device axes as in the CSV",
                "ego4d": {"video_uid": uid, "size": size, "import": rep}}
        data.write_recording(out / uid, imu, imu_t, frames, frames_t, narrations, meta=meta)
    return uid, rep


def _imported(out, uid, size, fps):
    """Whether video uid is already a recording in out (an interrupted import's), imported with the same settings;
    DataError when it was imported with others."""
    if not (out / uid).is_dir():
        return False
    rec = data.read_recording(out / uid)
    same = rec.meta.get("video_fps") == fps and rec.frames.shape[1] == size
    need(same, f"{out / uid}: already imported with --size {rec.frames.shape[1]} --fps {rec.meta.get('video_fps')}; "
         f"remove it or use another --out")
    return True


def import_ego4d(root, out, videos=None, size=224, fps=FPS, workers=1):
    """Convert Ego4D videos (full_scale mp4 + IMU CSV + narration.json) into recordings under out, `workers` videos
    at a time (each video is independent). Videos already in out are skipped, so an interrupted import resumes.
    videos: list of video uids (default: every uid that has both an IMU CSV and an mp4). -> report dict."""
    need(size >= 1, f"--size {size}: must be a positive number of pixels")
    need(fps > 0 and workers >= 1, f"--fps {fps:g} and --workers {workers}: must be positive")
    root, out = Path(root), Path(out)
    imu_dir = _file(root, "imu")
    need(imu_dir, f"{root}: no v1/imu or v2/imu directory; is this an Ego4D download?")
    narr_path = _file(root, "annotations/narration.json")
    narr_json = load_file(narr_path) if narr_path else {}
    need(isinstance(narr_json, dict), f"{narr_path}: expected an object mapping video_uid to narration passes")
    if videos is None:
        videos = sorted(p.stem for p in imu_dir.glob("*.csv") if _file(root, f"full_scale/{p.stem}.mp4"))
        need(videos, f"{root}: no video has both {imu_dir}/<uid>.csv and full_scale/<uid>.mp4")
    report = {"narration_file": str(narr_path) if narr_path else None, "skipped": [], "videos": {}}
    made = [d for d in (out, *out.parents) if not d.exists()]  # the directories this import will create
    try:
        jobs = []
        for uid in videos:
            csv_path, mp4 = imu_dir / f"{uid}.csv", _file(root, f"full_scale/{uid}.mp4")
            need(csv_path.is_file(), f"{csv_path}: no IMU CSV for video {uid}")
            need(mp4 and mp4.is_file(), f"{root}/v1/full_scale/{uid}.mp4: no video for {uid} (nor under v2/)")
            if _imported(out, uid, size, fps):
                report["skipped"].append(uid)
                continue
            jobs.append((uid, csv_path, mp4, *_narrations(narr_path, narr_json, uid), out, size, fps))
        out.mkdir(parents=True, exist_ok=True)
        # the workers ignore Ctrl-C: the main process stops them, and says so in one line
        with (multiprocessing.Pool(workers, signal.signal, (signal.SIGINT, signal.SIG_IGN)) if workers > 1
              else contextlib.nullcontext()) as pool:
            done = pool.imap_unordered(_import_video, jobs) if pool else map(_import_video, jobs)
            for k, (uid, rep) in enumerate(done):
                report["videos"][uid] = rep
                print(f"ego4d {k + 1}/{len(jobs)} {uid}: {rep['kept']}/{rep['rows']} IMU rows kept, {rep['frames']} "
                      f"frames, {rep['narrations_kept']}/{rep['narrations_total']} narrations kept", file=sys.stderr)
    except BaseException:
        for d in made:  # innermost first: a failed import leaves no empty directory behind
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise
    report["videos"] = dict(sorted(report["videos"].items()))  # the same report whatever the workers' order
    return report


@data.command
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sources.ego4d", description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="Ego4D download directory (holds v1/ or v2/)")
    parser.add_argument("--out", required=True, help="dataset directory to write the recordings into")
    parser.add_argument("--videos", default=None, help="comma-separated video uids (default: all with IMU)")
    parser.add_argument("--size", type=data.number(int, at_least=1, at_most=4096), default=224,
                        help="side of the square frames [px] (default: %(default)s)")
    parser.add_argument("--fps", type=data.number(float, above=0), default=FPS, help="frames stored per second; "
                        "windows use the frame nearest each time they need (default: %(default)s, as the official "
                        "preprocessing)")
    parser.add_argument("--workers", type=data.number(int, at_least=1, at_most=256), default=1,
                        help="videos decoded in parallel (default: %(default)s)")
    args = parser.parse_args(argv)
    data.lock_out(args.out)  # one import per --out at a time (data.command releases it)
    videos = [v.strip() for v in args.videos.split(",") if v.strip()] if args.videos else None
    print(json.dumps(import_ego4d(args.root, args.out, videos, args.size, args.fps, args.workers), indent=1))


if __name__ == "__main__":
    main()
