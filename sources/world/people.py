"""People and what they do: persons, activity plans (a Markov chain of segments) and Ego4D-style narrations.

Owns everything random about a synthetic recording except its objects and sensor noise (paper section 4.1's
Ego4D narrations, simulated): who wears the glasses (height, gait), which activities follow each other for how
long with which speeds and gaze, and the "#C C ..." narrations, each time-stamped inside the segment it
describes. Nothing to run here: `python -m sources.world synth --out DIR` uses it (see __init__.py).
"""
from dataclasses import dataclass

import numpy as np

from data import ACTIVITIES


@dataclass
class Segment:
    """One activity segment of a plan."""
    label: str  # one of ACTIVITIES
    start: float  # seconds since the start of the recording
    end: float  # seconds
    seated: bool  # posture at the end of the segment
    p: dict  # sampled targets: speed [m/s], turn [rad/s], step_hz, bob [m], sway [m], climb [m/s], pitch [rad], ...


@dataclass
class WorldPlan:
    """Everything random about one recording except objects and sensor noise (those have their own streams)."""
    seed: int  # SynthConfig.seed
    index: int  # recording index
    scene: str  # one of world.SCENES
    duration: float  # seconds
    person: dict  # per-person body and gait parameters
    start_seated: bool  # posture at t = 0
    heading0: float  # initial walking direction [rad] (0 = world +x, counter-clockwise)
    segments: list  # [Segment], contiguous from 0 to duration
    narrations: list  # [{"t", "text"}]
    micro: np.ndarray  # (3, 6, 3) amplitude, frequency [Hz], phase of micro-sway for x, y, z, yaw, pitch, roll
    imu_bias: np.ndarray  # (6,) constant bias added to [acc, gyro]


def _u(rng, lo, hi):
    """A uniform draw rounded to 4 decimals, so plans read well in meta.json."""
    return round(float(rng.uniform(lo, hi)), 4)


def _sample_person(rng):
    height = _u(rng, 1.55, 1.95)
    return {
        "height_m": height, "eye_height_m": round(0.93 * height, 4),
        "walk_speed_mps": _u(rng, 1.2, 1.6), "walk_step_hz": _u(rng, 1.6, 2.1), "walk_bob_m": _u(rng, 0.012, 0.025),
        "sway_m": _u(rng, 0.01, 0.03), "run_speed_mps": _u(rng, 2.5, 4.0), "run_step_hz": _u(rng, 2.5, 3.0),
        "run_bob_m": _u(rng, 0.03, 0.05), "sit_drop_m": _u(rng, 0.4, 0.6), "sit_sec": _u(rng, 1.0, 2.0),
        "pitch_habit_rad": _u(rng, -0.14, 0.0), "seated_gaze_rad": _u(rng, -1.05, -0.8),
        "micro_sway_m": _u(rng, 0.002, 0.006),
        "micro_sway_rad": _u(rng, 0.004, 0.015),
    }


# Weights of the next activity given the posture (a small Markov chain: standing up needs a seated person).
_NEXT_STANDING = {"walking": 0.28, "running": 0.10, "standing still": 0.13, "looking around": 0.15,
                  "sitting down": 0.17, "climbing stairs": 0.17}
_NEXT_SEATED = {"standing up": 0.75, "looking around": 0.25}


def _next_activity(rng, prev, seated, scene, time_left):
    weights = dict(_NEXT_SEATED if seated else _NEXT_STANDING)
    if time_left < 6.5:  # sitting down (stop, turn round, sit) needs 6 s
        weights.pop("sitting down", None)
    if scene == "kitchen" and not seated:
        weights["running"] = 0.03
    if prev != "walking":
        weights.pop(prev, None)
    labels = list(weights)
    p = np.array([weights[k] for k in labels])
    return labels[rng.choice(len(labels), p=p / p.sum())]


def _sample_segment(rng, label, start, person, seated, level):
    """Duration and targets of one segment; targets are reached smoothly at the segment start."""
    P = person
    p = {"speed": 0.0, "turn": 0.0, "step_hz": P["walk_step_hz"], "bob": 0.0, "sway": 0.0, "climb": 0.0,
         "pitch": round(P["pitch_habit_rad"] + _u(rng, -0.03, 0.06), 4)}
    if label == "walking":
        dur = _u(rng, 6, 20)
        p.update(speed=round(P["walk_speed_mps"] * _u(rng, 0.9, 1.1), 4),
                 turn=round(float(np.clip(rng.normal(0, 0.15), -0.35, 0.35)), 4),
                 step_hz=round(P["walk_step_hz"] * _u(rng, 0.95, 1.05), 4),
                 bob=round(P["walk_bob_m"] * _u(rng, 0.85, 1.15), 4), sway=P["sway_m"],
                 pitch=round(P["pitch_habit_rad"] - _u(rng, 0.05, 0.17), 4))
    elif label == "running":
        dur = _u(rng, 4, 12)
        p.update(speed=round(P["run_speed_mps"] * _u(rng, 0.92, 1.08), 4),
                 turn=round(float(np.clip(rng.normal(0, 0.1), -0.25, 0.25)), 4),
                 step_hz=round(P["run_step_hz"] * _u(rng, 0.95, 1.05), 4),
                 bob=round(P["run_bob_m"] * _u(rng, 0.85, 1.15), 4), sway=round(0.7 * P["sway_m"], 4),
                 pitch=round(P["pitch_habit_rad"] - _u(rng, 0.0, 0.1), 4))
    elif label == "standing still":
        dur = _u(rng, 4, 12)
    elif label == "looking around":
        dur = _u(rng, 5, 14)
        p.update(yaw_amp=_u(rng, 0.5, 1.2), yaw_period=_u(rng, 2.5, 5.0), yaw_phase=_u(rng, 0, 2 * np.pi),
                 pitch_amp=_u(rng, 0.12, 0.35), pitch_period=_u(rng, 3.0, 6.0), pitch_phase=_u(rng, 0, 2 * np.pi))
    elif label == "sitting down":  # stop (the speed blend takes <= 1 s), turn round to the seat, sit down
        dur, t_spin, spin_sec = _u(rng, 6, 10), start + 1.0, _u(rng, 1.2, 1.6)
        p.update(t_spin=t_spin, spin_sec=spin_sec, spin=round(float(rng.choice([-np.pi, np.pi])), 4),
                 t_transition=round(t_spin + spin_sec + _u(rng, 0.2, 0.5), 4),
                 transition_sec=round(P["sit_sec"] * _u(rng, 0.9, 1.1), 4), posture=-P["sit_drop_m"],
                 lean=_u(rng, 0.25, 0.5))  # forward head pitch at mid-transition [rad]
    elif label == "standing up":
        dur = _u(rng, 4, 9)
        p.update(t_transition=round(start + _u(rng, 0.8, 1.5), 4),
                 transition_sec=round(P["sit_sec"] * _u(rng, 0.9, 1.1), 4),
                 posture=0.0, lean=_u(rng, 0.25, 0.5))
    elif label == "climbing stairs":
        dur = _u(rng, 5, 12)
        up = level < 0.5 or (level < 5.0 and rng.random() < 0.5)
        step_hz = _u(rng, 1.5, 1.9)
        p.update(speed=_u(rng, 0.45, 0.7), step_hz=step_hz, bob=_u(rng, 0.015, 0.025), sway=P["sway_m"],
                 climb=round((1 if up else -1) * _u(rng, 0.15, 0.18) * step_hz, 4),
                 pitch=round(P["pitch_habit_rad"] - (_u(rng, 0.45, 0.65) if up else _u(rng, 0.55, 0.75)), 4))
    else:
        raise ValueError(f"unknown activity {label!r}")
    return dur, p


def plan_recording(cfg, index, activities=None):
    """The activity plan of recording `index`: a Markov chain of segments that respects posture.

    With `activities` (a sequence of ACTIVITIES that respects posture), the plan has exactly those segments
    and lasts as long as their sampled durations add up to, whatever cfg.minutes says."""
    rng = np.random.default_rng([cfg.seed, index])
    scene = cfg.scenes[index % len(cfg.scenes)]
    person = _sample_person(rng)
    duration = round(cfg.minutes * 60.0, 6)
    seated = start_seated = bool(rng.random() < 0.15)
    if activities is not None:
        activities = list(activities)
        seated = start_seated = activities[0] == "standing up"
        duration = float("inf")
    heading0 = _u(rng, 0, 2 * np.pi)
    segments, t, level, prev = [], 0.0, 0.0, None
    while t < duration - 1e-9 and (activities is None or len(segments) < len(activities)):
        if activities is None:
            label = _next_activity(rng, prev, seated, scene, duration - t)
        else:
            label = activities[len(segments)]
        if label not in (_NEXT_SEATED if seated else [a for a in ACTIVITIES if a != "standing up"]):
            raise ValueError(f"plan_recording: activity {label!r} at segment {len(segments)} is unknown or "
                             f"impossible {'seated' if seated else 'standing'}")
        dur, p = _sample_segment(rng, label, t, person, seated, level)
        if duration - (t + dur) < 4.0:  # the last segment takes the remainder (every segment lasts >= 4 s)
            dur = duration - t
        seated = {"sitting down": True, "standing up": False}.get(label, seated)
        segments.append(Segment(label, round(t, 6), round(min(t + dur, duration), 6), seated, p))
        level += p["climb"] * dur
        t, prev = t + dur, label
    duration = round(min(t, duration), 6)
    micro = np.stack([rng.uniform(0, 1, (6, 3)), rng.uniform(0.1, 0.7, (6, 3)), rng.uniform(0, 2 * np.pi, (6, 3))])
    micro[0, :3] *= person["micro_sway_m"] / 1.5  # positions [m]
    micro[0, 3:] *= person["micro_sway_rad"] / 1.5  # angles [rad]
    imu_bias = np.concatenate([rng.normal(0, cfg.acc_bias, 3), rng.normal(0, cfg.gyro_bias, 3)])
    narrations = _narrate(rng, scene, segments, start_seated)
    return WorldPlan(cfg.seed, index, scene, duration, person, start_seated, heading0, segments, narrations,
                     micro, imu_bias)


# --------------------------------------------------------------------------------------
# Narrations: Ego4D-style templates with synonyms and scene nouns
# --------------------------------------------------------------------------------------

_SCENE_WORDS = {
    "park": {"place": ["the park", "the garden", "the meadow"],
             "path": ["the path", "the park path", "the gravel path", "the trail"],
             "seat": ["the bench", "the park bench", "the low wall"],
             "thing": ["the trees", "the lawn", "the bushes", "the lamp post"],
             "stairs": ["the stone steps", "the stairs", "the garden steps"]},
    "kitchen": {"place": ["the kitchen", "the room", "the house"],
                "path": ["the kitchen", "the hallway", "the corridor", "the room"],
                "seat": ["the chair", "the stool", "the kitchen chair"],
                "thing": ["the counter", "the cabinets", "the fridge", "the table"],
                "stairs": ["the stairs", "the staircase", "the steps"]},
    "street": {"place": ["the street", "the city", "the neighbourhood"],
               "path": ["the sidewalk", "the street", "the pavement", "the road"],
               "seat": ["the bench", "the bus stop bench", "the low wall"],
               "thing": ["the buildings", "the parked cars", "the shop windows", "the street lamp"],
               "stairs": ["the stairs", "the steps", "the stairway"]},
}
_TEMPLATES = {
    "walking": ["walks along {path}", "walks through {place}", "strolls along {path}", "walks forward in {place}",
                "walks towards {thing}", "moves along {path}"],
    "turning left": ["turns left along {path}", "walks and turns left in {place}", "turns left towards {thing}"],
    "turning right": ["turns right along {path}", "walks and turns right in {place}", "turns right towards {thing}"],
    "running": ["runs along {path}", "jogs through {place}", "runs forward on {path}", "jogs along {path}",
                "runs past {thing}"],
    "standing still": ["stands still in {place}", "stands by {thing}", "stands on {path}", "pauses near {thing}",
                       "waits in {place}"],
    "sitting down": ["sits down on {seat}", "takes a seat on {seat}", "sits down on {seat} in {place}"],
    "seated": ["sits on {seat}", "rests on {seat}", "sits still on {seat}"],
    "standing up": ["stands up from {seat}", "gets up from {seat}", "rises from {seat}"],
    "stood up": ["stands next to {seat}", "stands still in {place}", "stands near {thing}"],
    "looking around": ["looks around {place}", "looks around", "turns the head to look at {thing}",
                       "glances around {place}", "scans {place}", "looks at {thing}"],
    "looking around seated": ["looks around from {seat}", "looks around while sitting on {seat}",
                              "glances at {thing} from {seat}"],
    "stairs up": ["climbs up {stairs}", "walks up {stairs}", "goes up {stairs}", "climbs {stairs}"],
    "stairs down": ["walks down {stairs}", "goes down {stairs}", "descends {stairs}", "climbs down {stairs}"],
}


def _say(rng, scene, key):
    template = _TEMPLATES[key][rng.integers(len(_TEMPLATES[key]))]
    words = {k: v[rng.integers(len(v))] for k, v in _SCENE_WORDS[scene].items()}
    return "#C C " + template.format(**words)


def _narrate(rng, scene, segments, start_seated):
    """About one narration every 2-4 s, each time-stamped inside the segment it describes."""
    out = []
    for i, s in enumerate(segments):
        seated_before = segments[i - 1].seated if i else start_seated
        if s.label in ("sitting down", "standing up"):  # the transition first, then the posture it left
            t = s.p["t_transition"] + s.p["transition_sec"] / 2
            first, rest = s.label, "seated" if s.label == "sitting down" else "stood up"
        else:
            t = s.start + _u(rng, 0.6, 1.8)
            first = {"looking around": "looking around seated" if seated_before else "looking around",
                     "climbing stairs": "stairs up" if s.p["climb"] > 0 else "stairs down"}.get(s.label, s.label)
            if s.label == "walking" and abs(s.p["turn"]) > 0.15 and rng.random() < 0.5:
                first = "turning left" if s.p["turn"] > 0 else "turning right"  # z up: a positive yaw rate turns left
            rest = first
        key = first
        while t < s.end - 0.4:
            out.append({"t": round(t, 3), "text": _say(rng, scene, key)})
            t, key = t + _u(rng, 2.0, 4.0), rest
    return out

