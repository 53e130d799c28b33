"""Head kinematics -> IMU: the pose of the glasses over a recording, and the sensors that measure it.

Owns the synthetic world's physics (the stand-in for Ego4D/Aria's head-worn IMU, paper section 4.1): an activity
plan (people.py) becomes a smooth head trajectory on a 1 kHz grid, and the trajectory becomes noise-free
specific force and angular velocity in the sensor frame. Frames of reference: world x east, y north, z up,
g_world = (0, 0, -9.81); sensor = camera frame of the glasses, x right, y down, z forward; R(t) maps sensor to
world coordinates. Nothing to run here: `python -m sources.world synth --out DIR` uses it (see __init__.py).
"""
from dataclasses import dataclass

import numpy as np

G = 9.81
GRAVITY_WORLD = np.array([0.0, 0.0, -G])  # world frame: x east, y north, z up


@dataclass
class Trajectory:
    """The true pose of the glasses on a dense, uniform time grid."""
    t: np.ndarray  # (n,) seconds
    p: np.ndarray  # (n, 3) position in the world [m], z up
    v: np.ndarray  # (n, 3) velocity [m/s]
    a: np.ndarray  # (n, 3) acceleration [m/s^2], gravity not included
    R: np.ndarray  # (n, 3, 3) sensor -> world rotation; columns: sensor x (right), y (down), z (forward)
    floor: np.ndarray  # (n,) height of the floor under the person [m] (changes on stairs)
    heading: np.ndarray  # (n,) direction of the body [rad] (0 = world +x, counter-clockwise)
    phase: np.ndarray  # (n,) gait phase [rad]: a foot lands at every multiple of 2 pi
    seated: np.ndarray  # (n,) 0 standing ... 1 seated


def smootherstep(x):
    """0 -> 1 on [0, 1] with zero first and second derivatives at both ends (C2 joins)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6 * x - 15) + 10)


def _blend_track(t, keys, v0):
    """A parameter over time: starts at v0; key (t_start, seconds, target) moves it to target with a smootherstep.
    Keys are time-ordered and each blend ends before the next key starts."""
    v, prev = np.full(len(t), float(v0)), float(v0)
    for start, seconds, target in keys:
        i, j = np.searchsorted(t, [start, start + seconds])
        v[i:j] = prev + (target - prev) * smootherstep((t[i:j] - start) / seconds)
        v[j:], prev = target, target
    return v


def _cumint(x, dt):
    """Cumulative trapezoidal integral along axis 0, starting at 0."""
    return np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(0.5 * (x[1:] + x[:-1]), axis=0) * dt])


def rotation(yaw, pitch, roll):
    """Sensor -> world rotations (..., 3, 3) of the head from yaw (about world z; 0 looks along +x,
    counter-clockwise positive), pitch (positive looks up) and roll (positive tilts the right ear down).

    The columns are the sensor axes in the world: x right, y down, z forward (a camera frame)."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    forward = np.stack([cp * cy, cp * sy, sp], axis=-1)
    left0 = np.stack([-sy, cy, np.zeros_like(sy)], axis=-1)  # level left axis, before roll
    up0 = np.stack([-sp * cy, -sp * sy, cp], axis=-1)  # head up axis, before roll
    left = cr[..., None] * left0 + sr[..., None] * up0
    up = -sr[..., None] * left0 + cr[..., None] * up0
    return np.stack([-left, -up, forward], axis=-1)  # (..., 3, 3)


def head_trajectory(plan, rate_hz=1000.0):
    """The pose of the glasses over the whole recording, on a grid at `rate_hz`.

    Every segment sets targets (speed, turn rate, step rate, bob, sway, stair climb rate, base pitch) that are
    reached by C2 blends from the previous values, so position and orientation are smooth across segments.
    Heading, gait phase and position are integrals of those tracks; sitting down turns the body round to the
    seat, then sit/stand transitions move a posture track with a forward head lean; once seated the gaze drops
    to the lap; looking around adds enveloped yaw/pitch sweeps (and lifts a seated gaze); micro-sway is always on."""
    n = int(round(plan.duration * rate_hz)) + 1
    t = np.arange(n) / rate_hz  # (n,)
    dt = 1.0 / rate_hz
    names = ("speed", "turn", "step_hz", "bob", "sway", "climb", "pitch")
    keys = {k: [] for k in names}
    posture_keys, spin_keys, spun = [], [], 0.0
    look_yaw, look_pitch, look_env, lean = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    for s in plan.segments:
        blend = min(1.0, 0.4 * (s.end - s.start))
        for k in names:
            keys[k].append((s.start, blend, s.p[k]))
        i0, i1 = np.searchsorted(t, [s.start, s.end])
        tau = t[i0:i1] - s.start
        if "t_transition" in s.p:
            posture_keys.append((s.p["t_transition"], s.p["transition_sec"], s.p["posture"]))
            u = np.clip((t[i0:i1] - s.p["t_transition"]) / s.p["transition_sec"], 0.0, 1.0)
            lean[i0:i1] -= s.p["lean"] * np.sin(np.pi * u) ** 2
        if "spin" in s.p:  # turning round on the spot (180 degrees) to sit on the seat behind
            spun += s.p["spin"]
            spin_keys.append((s.p["t_spin"], s.p["spin_sec"], spun))
        if s.label == "looking around":
            env = smootherstep(tau) * smootherstep(s.end - s.start - tau)  # 1 s fade in and out
            look_env[i0:i1] = env
            look_yaw[i0:i1] += env * s.p["yaw_amp"] * np.sin(2 * np.pi * tau / s.p["yaw_period"] + s.p["yaw_phase"])
            look_pitch[i0:i1] += env * s.p["pitch_amp"] * np.sin(
                2 * np.pi * tau / s.p["pitch_period"] + s.p["pitch_phase"])
    track = {k: _blend_track(t, keys[k], plan.segments[0].p[k]) for k in names}
    posture = _blend_track(t, posture_keys, -plan.person["sit_drop_m"] if plan.start_seated else 0.0)
    seated = posture / -plan.person["sit_drop_m"]  # (n,) 0 standing ... 1 seated
    amp, freq, phase0 = plan.micro  # (6, 3) each
    micro = (amp[..., None] * np.sin(2 * np.pi * freq[..., None] * t + phase0[..., None])).sum(axis=1)  # (6, n)

    heading = plan.heading0 + _cumint(track["turn"], dt) + _blend_track(t, spin_keys, 0.0)  # direction of travel
    phase = _cumint(2 * np.pi * track["step_hz"], dt)  # gait phase: one cycle per step
    side = track["sway"] * np.sin(phase / 2)  # lateral sway at half the step rate [m]
    x = _cumint(track["speed"] * np.cos(heading), dt) - np.sin(heading) * side + micro[0]
    y = _cumint(track["speed"] * np.sin(heading), dt) + np.cos(heading) * side + micro[1]
    floor = _cumint(track["climb"] * (1 - np.cos(phase)), dt)  # stairs: the rise happens within each step
    z = floor + plan.person["eye_height_m"] + posture + track["bob"] * np.cos(phase) + micro[2]
    yaw = heading + look_yaw + 0.8 * side + micro[3]  # the head follows the sway a little (~1 deg)
    gaze = plan.person["seated_gaze_rad"] * seated * (1 - look_env)  # seated: at the lap, unless looking around
    pitch = track["pitch"] + gaze + look_pitch + lean + 0.4 * track["bob"] * np.sin(phase) + micro[4]
    roll = 1.0 * side + micro[5]

    p = np.stack([x, y, z], axis=1)  # (n, 3)
    v = np.gradient(p, dt, axis=0, edge_order=2)  # (n, 3)
    a = np.gradient(v, dt, axis=0, edge_order=2)  # (n, 3)
    return Trajectory(t, p, v, a, rotation(yaw, pitch, roll), floor, heading, phase, seated)


def imu_from_trajectory(traj, rate_hz):
    """Noise-free IMU of a trajectory, sampled at `rate_hz` (a divisor of the grid rate) from t = 0 up to, not
    including, the last grid point: times (N,), specific force (N, 3) [m/s^2], angular velocity (N, 3) [rad/s].

    acc = R^T (a_world - g_world); gyro = vee(R^T dR/dt), with dR/dt by central differences on the dense grid
    (1 kHz by default), then point-sampled."""
    dt = traj.t[1] - traj.t[0]
    idx = np.arange(0, len(traj.t) - 1, int(round(1.0 / (rate_hz * dt))))  # (N,)
    R = traj.R[idx]  # (N, 3, 3)
    acc = np.einsum("nji,nj->ni", R, traj.a[idx] - GRAVITY_WORLD)  # (N, 3) in the sensor frame
    return traj.t[idx], acc, angular_velocity(traj, idx)


def angular_velocity(traj, idx):
    """The head's angular velocity in the sensor frame at grid points idx (N,): vee(R^T dR/dt), (N, 3) [rad/s]."""
    R_dot = np.gradient(traj.R, traj.t[1] - traj.t[0], axis=0, edge_order=2)[idx]  # (N, 3, 3)
    W = np.einsum("nji,njk->nik", traj.R[idx], R_dot)  # (N, 3, 3) skew-symmetric [omega]_x
    return 0.5 * np.stack([W[:, 2, 1] - W[:, 1, 2], W[:, 0, 2] - W[:, 2, 0], W[:, 1, 0] - W[:, 0, 1]], axis=1)
