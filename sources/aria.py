"""Project Aria -> recordings (paper section 4.1's head-worn IMU and video, from Aria glasses): each VRS file
becomes one recording of data.py's format, read by projectaria-tools (optional: pip install --no-deps
projectaria-tools; numpy is its only need).

The IMU (right at 1 kHz or left at 800 Hz) keeps its native rate and is rotated, through the device calibration,
into the frame of the upright RGB image; the RGB frames are turned upright and squared as CLIP's preprocessing
does; an Aria Everyday Activities speech.csv becomes the narrations.

    python -m sources.aria recording.vrs --out data/aria [--imu right] [--size 224] [--narrations speech.csv]
"""
import argparse
import contextlib
import csv
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import data
from data import DataError, need

IMU_STREAMS = {"right": "imu-right", "left": "imu-left"}  # --imu -> stream label (1 kHz and 800 Hz)
RGB = "camera-rgb"
INSTALL = "pip install --no-deps projectaria-tools"
SPEECH_GAP_SEC = 1.0  # speech.csv words separated by a longer pause start a new utterance
IMU_FRAME = ("x right, y down, z forward: the frame of the upright camera-rgb image (camera-rgb calibration, "
                  "turned like the frames); acc = rectified specific force [m/s^2] (at rest 9.81 along 'up', -y "
                  "when level), gyro = rectified angular velocity [rad/s]")


@contextlib.contextmanager
def _fds_to(log):
    """Point file descriptors 1 and 2 at the file `log` while inside: the C++ reader logs there, not to us."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, s in zip((1, 2), saved):
            os.dup2(s, fd)
            os.close(s)


def _quarter_turns(k):
    """(3, 3): camera coordinates -> those of the image turned by k * 90 degrees counter-clockwise (np.rot90)."""
    return np.linalg.matrix_power(np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]), k)  # one turn: x' = y, y' = -x


def _upright_turns(path, calib, R_dev_cam):
    """np.rot90's k that turns the RGB image upright, from the calibration: the central pupil frame's up axis
    (CPF: x left, y up, z forward) must point to the image's top (-y). Gen1's sideways sensor gives k = 3
    (90 degrees clockwise); Gen2's upright frames give k = 0."""
    up = R_dev_cam.T @ calib.get_transform_device_cpf().rotation().to_matrix()[:, 1]  # (3,) in camera coords
    k = [k for k in range(4) if (_quarter_turns(k) @ up)[1] < -0.7]
    need(k, f"{path}: the calibration's up direction {np.round(up, 2)} is along no image axis")
    return k[0]


def _clip_square(img, size):
    """(H, W, 3) -> (size, size, 3) as CLIP's preprocessing: shorter side resized to size (bicubic), centre crop."""
    h, w = img.shape[:2]
    im = Image.fromarray(np.ascontiguousarray(img)).resize(
        (max(size, round(w * size / min(h, w))), max(size, round(h * size / min(h, w)))), Image.BICUBIC)
    x0, y0 = (im.width - size) // 2, (im.height - size) // 2
    return np.asarray(im.crop((x0, y0, x0 + size, y0 + size)))


def _read_speech(path, t0_ns, duration):
    """AEA speech.csv (startTime_ns,endTime_ns,written[,confidence], on the VRS's device clock) -> narrations
    [{"t": utterance midpoint in seconds since t0, "text"}] inside [0, duration], and the number dropped.
    Words are joined into utterances until a pause longer than SPEECH_GAP_SEC."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows, header = list(reader), reader.fieldnames or []
        words = sorted((int(r["startTime_ns"]), int(r["endTime_ns"]), r["written"].strip()) for r in rows)
    except (OSError, csv.Error, AttributeError, KeyError, TypeError, ValueError) as e:  # a short row: None
        raise DataError(f"{path}: not an AEA speech.csv with startTime_ns,endTime_ns,written ({e!r})") from None
    need({"startTime_ns", "endTime_ns", "written"} <= set(header), f"{path}: not an AEA speech.csv, whose header "
          f"has startTime_ns,endTime_ns,written (found {header})")
    utterances = []
    for start, end, text in words:
        if utterances and start - utterances[-1][1] <= SPEECH_GAP_SEC * 1e9:
            utterances[-1] = (utterances[-1][0], max(end, utterances[-1][1]), f"{utterances[-1][2]} {text}")
        else:
            utterances.append((start, end, text))
    narrations = [{"t": ((a + b) / 2 - t0_ns) / 1e9, "text": text} for a, b, text in utterances]
    kept = [n for n in narrations if 0 <= n["t"] <= duration]
    return kept, len(narrations) - len(kept)


def _stream(path, provider, label, records):
    """The stream ID of `label` in this file, which must hold at least `records` records."""
    labels = [provider.get_label_from_stream_id(s) for s in provider.get_all_streams()]
    need(label in labels, f"{path}: no {label} stream (it has {', '.join(map(str, labels))})")
    sid = provider.get_stream_id_from_label(label)
    need(provider.get_num_data(sid) >= records, f"{path}: the {label} stream holds {provider.get_num_data(sid)} "
          f"record(s), needs at least {records} (a truncated file?)")
    return sid


def _read_vrs(path, imu_label, size):
    """Read one VRS (inside _fds_to): -> imu_ns (N,), imu (N, 6), frames_ns (F,), frames (F, S, S, 3), info."""
    from projectaria_tools.core import data_provider
    from projectaria_tools.core.sensor_data import TimeDomain
    provider = data_provider.create_vrs_data_provider(str(path))
    need(provider is not None, f"{path}: not a readable VRS file")
    imu_sid, rgb_sid = _stream(path, provider, imu_label, 2), _stream(path, provider, RGB, 1)
    calib = provider.get_device_calibration()
    imu_cal = calib and calib.get_imu_calib(imu_label)
    need(imu_cal is not None and calib.get_camera_calib(RGB) is not None,
          f"{path}: no device calibration for {imu_label} and {RGB}")
    R_dev_cam = calib.get_camera_calib(RGB).get_transform_device_camera().rotation().to_matrix()
    k = _upright_turns(path, calib, R_dev_cam)
    # imu -> device -> camera -> upright image; specific force and angular velocity rotate alike
    R = _quarter_turns(k) @ R_dev_cam.T @ imu_cal.get_transform_device_imu().rotation().to_matrix()
    samples = [provider.get_imu_data_by_index(imu_sid, i) for i in range(provider.get_num_data(imu_sid))]
    valid = [s for s in samples if s.accel_valid and s.gyro_valid]
    need(len(valid) >= 2, f"{path}: {len(valid)} of the {len(samples)} {imu_label} samples are valid, need >= 2")
    imu = np.array([np.concatenate([imu_cal.raw_to_rectified_accel(np.array(s.accel_msec2)).ravel(),
                                    imu_cal.raw_to_rectified_gyro(np.array(s.gyro_radsec)).ravel()])
                    for s in valid]).reshape(-1, 2, 3)  # (N, 2, 3): acc, gyro in the IMU's frame
    imu = np.einsum("ij,ngj->ngi", R, imu).reshape(-1, 6)  # (N, 6) in the upright image frame
    imu_ns = np.array([s.capture_timestamp_ns for s in valid], dtype=np.int64)
    frames, frames_ns = [], []
    for i in range(provider.get_num_data(rgb_sid)):  # one full-size image in memory at a time
        image, record = provider.get_image_data_by_index(rgb_sid, i)
        frames.append(_clip_square(np.rot90(image.to_numpy_array(), k), size))  # (S, S, 3) upright
        frames_ns.append(record.capture_timestamp_ns)
    info = {"device_version": str(calib.get_device_version()).split(".")[-1], "imu_stream": imu_label,
            "imu_native_rate_hz": float(provider.get_nominal_rate_hz(imu_sid)), "imu_resampled": False,
            "imu_samples_invalid": len(samples) - len(valid), "upright_rot90_k": k,
            "t0_device_ns": int(provider.get_first_time_ns_all_streams(TimeDomain.DEVICE_TIME))}
    del provider  # closes the file while its log still goes to the log file
    return imu_ns, imu, np.array(frames_ns, dtype=np.int64), np.stack(frames), info


def import_aria(vrs_files, out, imu="right", size=224, narrations=None):
    """Convert Project Aria VRS files into recordings under out, named after the file (AEA's recording.vrs:
    after its folder). IMU at its native rate, times in seconds since the recording's first record. -> report."""
    need(size >= 1, f"--size {size}: must be a positive number of pixels")
    vrs_files, out = [Path(v) for v in vrs_files], Path(out)
    for v in vrs_files + ([Path(narrations)] if narrations else []):
        need(v.is_file(), f"{v}: {'a directory, not a file' if v.is_dir() else 'missing file'}")
    need(narrations is None or len(vrs_files) == 1,
          f"{narrations}: --narrations belongs to one recording, got {len(vrs_files)} VRS files")
    ids = [v.parent.name if v.stem == "recording" else v.stem for v in vrs_files]
    need(len(set(ids)) == len(ids), f"two VRS files would make the same recording id: {ids}")
    report = {}
    for vrs, rec_id in zip(vrs_files, ids):
        with tempfile.TemporaryFile("w+", errors="replace") as log:
            with _fds_to(log):
                try:
                    imu_ns, values, frames_ns, frames, info = _read_vrs(vrs, IMU_STREAMS[imu], size)
                except ImportError:
                    raise DataError(f"{vrs}: the Aria import needs projectaria-tools: {INSTALL}") from None
                except RuntimeError as e:  # the reader's own failures
                    raise DataError(f"{vrs}: projectaria-tools could not read it ({e})") from None
            log.seek(0)
            lost = re.search(r"(\d+) records are beyond the end of the file", log.read())
        t0 = info["t0_device_ns"]
        imu_t, frames_t = (imu_ns - t0) / 1e9, (frames_ns - t0) / 1e9
        _, first = np.unique(imu_t, return_index=True)  # sorted, without repeated timestamps
        info["imu_samples_repeated"] = len(imu_t) - len(first)
        info["records_lost_to_truncation"] = int(lost[1]) if lost else 0
        duration = float(max(imu_t[-1], frames_t[-1]))
        texts, dropped = _read_speech(narrations, t0, duration) if narrations else ([], 0)
        info.update(file=str(vrs), narrations_file=narrations and str(narrations), narrations_kept=len(texts),
                    narrations_dropped=dropped)
        meta = {"source": "aria", "imu_frame": IMU_FRAME, "aria": info}
        data.write_recording(out / rec_id, values[first], imu_t[first], frames, frames_t, texts, meta=meta)
        rate = (len(first) - 1) / (imu_t[first][-1] - imu_t[first][0])
        print(f"aria {rec_id}: {len(first)} {info['imu_stream']} samples at {rate:.0f} Hz over {duration:.3f} s, "
              f"{len(frames)} frames {size}x{size}, narrations {len(texts)} kept / {dropped} dropped (outside)"
              + (f"; truncated file: {lost[1]} records past its end are lost" if lost else ""))
        report[rec_id] = info
    return report


@data.command
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sources.aria", description=__doc__.splitlines()[0])
    parser.add_argument("vrs", nargs="+", help="VRS file(s), one recording each")
    parser.add_argument("--out", required=True, help="dataset directory to write the recordings into")
    parser.add_argument("--imu", choices=tuple(IMU_STREAMS), default="right", help="IMU stream (default: %(default)s)")
    parser.add_argument("--size", type=data.number(int, at_least=1, at_most=4096), default=224,
                        help="side of the square frames [px] (default: %(default)s)")
    parser.add_argument("--narrations", default=None, help="AEA speech.csv of the (one) VRS file")
    args = parser.parse_args(argv)
    data.lock_out(args.out)  # one import per --out at a time (data.command releases it)
    import_aria(args.vrs, args.out, args.imu, args.size, args.narrations)


if __name__ == "__main__":
    main()
