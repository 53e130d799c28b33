"""Scenes and the camera: a park, a kitchen or a street, objects along the walked path, and a ray-caster.

Owns what the head-worn camera sees in the synthetic world (the stand-in for Ego4D/Aria video, paper section 4.1):
a 90-degree pinhole camera in the IMU's frame (x right, y down, z forward) ray-casts, in vectorised NumPy, a
textured floor, sky or ceiling, and boxes, cylinders and spheres; the places of the activities (stairs under a
climb, a seat and the sitter's legs, things in a looking-around sweep) are built from the trajectory, and the
head's rotation blurs each exposure. Frames are stored small (48x48 by default); CLIP preprocessing upscales them.
Nothing to run here: `python -m sources.world synth --out DIR` uses it and `python -m sources.world show REC --out
PNG` draws its frames (see __init__.py).
"""
from dataclasses import dataclass, replace

import numpy as np

SCENES = ("park", "kitchen", "street")



@dataclass
class Scene:
    """What the camera sees: palette, sky or ceiling, fog, light, and primitive objects."""
    kind: str  # "park" | "kitchen" | "street": picks the ground texture
    ground_a: np.ndarray  # (3,) RGB in [0, 1]: main ground colour
    ground_b: np.ndarray  # (3,) second ground colour (mowing stripes, tiles, lane paint)
    sky_horizon: np.ndarray  # (3,) sky colour at the horizon, also the fog colour
    sky_zenith: np.ndarray  # (3,) sky colour straight up
    ceiling: float | None  # ceiling height above the floor [m]; None outdoors (sky)
    ceiling_color: np.ndarray  # (3,)
    fog_m: float  # fog distance scale [m]
    fog_max: float  # fog opacity far away, in [0, 1]
    light: np.ndarray  # (3,) unit vector towards the light
    brightness: float  # exposure factor applied to the whole frame
    kinds: np.ndarray  # (K,) int: 0 box, 1 vertical cylinder, 2 sphere
    geom: np.ndarray  # (K, 6) box: x0, y0, z0, x1, y1, z1 (in the frame turned by yaw); cylinder: cx, cy, r, z0,
    #                   z1, 0; sphere: cx, cy, cz, r, 0, 0. Heights: above the floor under the person (steps: world's)
    colors: np.ndarray  # (K, 3) RGB in [0, 1]
    patterns: np.ndarray  # (K,) int: 0 plain, 1 facade with windows, 2 self-lit (lamps)
    yaw: np.ndarray  # (K,) boxes: their frame is the world's turned by yaw about z [rad]; 0 = axis-aligned
    parts: np.ndarray  # (K,) int: 0 object, 1 stair step (world heights; the floor has a hole above it), 2 seat, 3 leg
    active: np.ndarray  # (K, 2) seconds from which to which it exists (the sitter's legs only while seated)


_PALETTES = {
    "park": dict(ground_a=(0.30, 0.52, 0.20), ground_b=(0.38, 0.61, 0.24), sky_horizon=(0.80, 0.88, 0.95),
                 sky_zenith=(0.33, 0.55, 0.88), ceiling=None, ceiling_color=(0.0, 0.0, 0.0), fog_m=35.0,
                 fog_max=0.85),
    "kitchen": dict(ground_a=(0.86, 0.82, 0.74), ground_b=(0.56, 0.46, 0.37), sky_horizon=(0.78, 0.75, 0.70),
                    sky_zenith=(0.78, 0.75, 0.70), ceiling=2.7, ceiling_color=(0.93, 0.92, 0.90), fog_m=18.0,
                    fog_max=0.8),
    "street": dict(ground_a=(0.34, 0.34, 0.36), ground_b=(0.92, 0.92, 0.86), sky_horizon=(0.86, 0.86, 0.84),
                   sky_zenith=(0.52, 0.63, 0.80), ceiling=None, ceiling_color=(0.0, 0.0, 0.0), fog_m=50.0,
                   fog_max=0.85),
}
_BOX, _CYLINDER, _SPHERE = 0, 1, 2
_PLAIN, _WINDOWS, _LIT = 0, 1, 2
_OBJECT, _STEP, _SEAT, _LEG = 0, 1, 2, 3
_STAIR_COLORS = {"park": (0.62, 0.60, 0.56), "kitchen": (0.55, 0.40, 0.27), "street": (0.72, 0.71, 0.68)}
_SEAT_COLORS = {"park": (0.50, 0.33, 0.20), "kitchen": (0.62, 0.44, 0.27), "street": (0.30, 0.32, 0.34)}
_TROUSERS = ((0.14, 0.17, 0.28), (0.10, 0.10, 0.11), (0.52, 0.47, 0.36), (0.28, 0.35, 0.50))


def make_scene(kind, rng=None):
    """The empty scene of a kind; with `rng`, palette, light and exposure are jittered (per recording)."""
    pal = {k: np.array(v, np.float32) if isinstance(v, tuple) else v for k, v in _PALETTES[kind].items()}
    light, brightness = np.array([0.4, 0.3, 0.87]), 1.0
    if rng is not None:
        for k in ("ground_a", "ground_b", "sky_horizon", "sky_zenith", "ceiling_color"):
            pal[k] = np.clip(pal[k] * rng.uniform(0.92, 1.08, 3), 0, 1).astype(np.float32)
        azimuth, elevation = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.2)
        light = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
        brightness = float(rng.uniform(0.85, 1.1))
    return Scene(kind, **pal, light=light / np.linalg.norm(light), brightness=brightness,
                 kinds=np.zeros(0, int), geom=np.zeros((0, 6)), colors=np.zeros((0, 3)), patterns=np.zeros(0, int),
                 yaw=np.zeros(0), parts=np.zeros(0, int), active=np.zeros((0, 2)))


def add_primitives(scene, prims):
    """The scene with primitives (kind, geom, colour, pattern[, yaw, part, (from, to)]) added; the optional
    fields default to an axis-aligned object that always exists."""
    full = [tuple(q) + (0.0, _OBJECT, (-np.inf, np.inf))[len(q) - 4:] for q in prims]
    kinds, geom, colors, patterns, yaw, parts, active = (list(c) for c in zip(*full)) if full else [[]] * 7

    def cat(old, new, dtype):
        return np.concatenate([old, np.array(new, dtype).reshape((-1,) + old.shape[1:])])

    return replace(scene, kinds=cat(scene.kinds, kinds, int), geom=cat(scene.geom, geom, float),
                   colors=cat(scene.colors, colors, float), patterns=cat(scene.patterns, patterns, int),
                   yaw=cat(scene.yaw, yaw, float), parts=cat(scene.parts, parts, int),
                   active=cat(scene.active, active, float))


def _turned_box(c, yaw, length, width, z0, z1):
    """geom of a box centred at c (2,), `length` along the direction yaw and `width` across it."""
    lx, ly = np.cos(yaw) * c[0] + np.sin(yaw) * c[1], -np.sin(yaw) * c[0] + np.cos(yaw) * c[1]  # c in the turned frame
    return (lx - length / 2, ly - width / 2, z0, lx + length / 2, ly + width / 2, z1)


def _box(sx, sy, z0, z1, rng):
    """An axis-aligned box centred at the origin, sx by sy, randomly turned by 90 degrees."""
    if rng.random() < 0.5:
        sx, sy = sy, sx
    return (_BOX, (-sx / 2, -sy / 2, z0, sx / 2, sy / 2, z1))


def _tree(rng, scale=1.0):
    trunk_h, trunk_r, crown_r = scale * rng.uniform(1.6, 2.6), rng.uniform(0.12, 0.22), scale * rng.uniform(1.0, 1.9)
    crown = (rng.uniform(0.16, 0.28), rng.uniform(0.40, 0.58), rng.uniform(0.10, 0.18))
    return [((_CYLINDER, (0, 0, trunk_r, 0, trunk_h + 0.3, 0)), (0.40, 0.28, 0.18), _PLAIN),
            ((_SPHERE, (0, 0, trunk_h + 0.6 * crown_r, crown_r, 0, 0)), crown, _PLAIN)], crown_r


def _random_object(kind, ceiling, rng):
    """Primitives [((kind, geom), colour, pattern)] of one object of the scene kind centred at the origin, and
    the radius of its footprint."""
    r = rng.random()

    def pick(options):
        return options[rng.integers(len(options))]

    if kind == "park":
        if r < 0.45:
            return _tree(rng)
        if r < 0.65:
            radius = rng.uniform(0.35, 0.7)
            return [((_SPHERE, (0, 0, 0.6 * radius, radius, 0, 0)), (0.16, 0.36, 0.14), _PLAIN)], radius
        if r < 0.8:
            return [(_box(1.6, 0.5, 0.0, 0.45, rng), (0.50, 0.33, 0.20), _PLAIN)], 0.85
        return [((_CYLINDER, (0, 0, 0.06, 0, 3.6, 0)), (0.20, 0.20, 0.22), _PLAIN),
                ((_SPHERE, (0, 0, 3.7, 0.18, 0, 0)), (1.0, 0.95, 0.75), _LIT)], 0.2
    if kind == "kitchen":
        if r < 0.3:
            length = rng.uniform(1.2, 2.6)
            return [(_box(length, 0.6, 0.0, 0.9, rng), pick([(0.95, 0.95, 0.93), (0.62, 0.45, 0.30),
                                                             (0.55, 0.58, 0.62)]), _PLAIN)], length / 2
        if r < 0.5:
            return [(_box(1.2, 0.8, 0.0, 0.75, rng), (0.60, 0.42, 0.26), _PLAIN)], 0.75
        if r < 0.7:
            return [(_box(0.7, 0.7, 0.0, rng.uniform(1.6, 2.1), rng), pick([(0.94, 0.94, 0.96), (0.72, 0.74, 0.78)]),
                     _PLAIN)], 0.5
        if r < 0.8:
            return [((_CYLINDER, (0, 0, 0.2, 0, ceiling, 0)), (0.90, 0.88, 0.84), _PLAIN)], 0.2
        length = rng.uniform(3.0, 6.0)
        return [(_box(0.15, length, 0.0, ceiling, rng), pick([(0.85, 0.80, 0.70), (0.70, 0.80, 0.85),
                                                              (0.90, 0.75, 0.70)]), _PLAIN)], length / 2
    if r < 0.45:
        sx, sy = rng.uniform(4, 10), rng.uniform(4, 10)
        return [(_box(sx, sy, 0.0, rng.uniform(6, 18), rng), pick([(0.60, 0.32, 0.25), (0.80, 0.72, 0.58),
                                                                  (0.55, 0.56, 0.60)]), _WINDOWS)], np.hypot(sx, sy) / 2
    if r < 0.65:
        return [(_box(4.2, 1.8, 0.0, 1.45, rng), pick([(0.75, 0.12, 0.10), (0.15, 0.25, 0.60), (0.92, 0.92, 0.92),
                                                       (0.10, 0.10, 0.12), (0.65, 0.66, 0.68)]), _PLAIN)], 2.3
    if r < 0.85:
        return [((_CYLINDER, (0, 0, 0.08, 0, 4.5, 0)), (0.45, 0.45, 0.48), _PLAIN)], 0.1
    return _tree(rng, scale=0.8)


def _moved(kind, geom, c):
    g = np.array(geom, float)
    if kind == _BOX:
        g[[0, 3]] += c[0]
        g[[1, 4]] += c[1]
    else:
        g[:2] += c
    return g


def place_objects(scene, plan, traj, rng):
    """The scene with objects along the walked path: one per 3 m walked or 3 s spent (so standing still is
    surrounded too), and three more in the sweep of every looking around (something to look at). Each is at
    least 0.8 m clear of the path, 3 m where the person runs (open paths)."""
    sub = max(1, int(round(0.1 / (traj.t[1] - traj.t[0]))))  # 10 Hz
    xy, t = traj.p[::sub, :2], traj.t[::sub]  # (M, 2), (M,)
    walked = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    clock = walked / 3.0 + t / 3.0
    spread = {"park": (1.0, 10.0), "kitchen": (0.6, 4.0), "street": (1.0, 6.0)}[scene.kind]
    anchors = [(a, (0, 2 * np.pi), spread, 3) for a in np.searchsorted(clock, np.arange(np.ceil(clock[-1])))]
    clear = np.full(len(t), 0.8)
    for s in plan.segments:
        inside = (t >= s.start) & (t < s.end)
        if s.label == "running":
            clear[inside] = 3.0
        if s.label == "looking around":
            a = int(np.flatnonzero(inside)[len(np.flatnonzero(inside)) // 2])
            seen = s.p["yaw_amp"] + 0.6  # the sweep, widened by most of the half field of view
            sweep = (traj.heading[a * sub] - seen, traj.heading[a * sub] + seen)
            anchors += [(a, sweep, (1.5, 5.0), 10)] * 3  # ten tries: the path often goes on ahead
    path, clear = xy[::5], clear[::5]  # 2 Hz, enough for the clearance test
    prims = []
    for a, angles, dists, tries in anchors:
        for _ in range(tries):
            parts, radius = _random_object(scene.kind, scene.ceiling, rng)
            angle, dist = rng.uniform(*angles), radius + rng.uniform(*dists)
            c = xy[a] + dist * np.array([np.cos(angle), np.sin(angle)])
            if (np.linalg.norm(path - c, axis=1) - clear).min() > radius:
                prims += [(k, _moved(k, g, c), np.clip(np.array(color) * rng.uniform(0.9, 1.1), 0, 1), pattern)
                          for (k, g), color, pattern in parts]
                break
    return add_primitives(scene, prims)


def furnish(scene, plan, traj, rng):
    """The places of the activities, built from the trajectory itself: the steps of every stair climb (one
    tread per stride, its top at the floor height the stride ends on), the seat of every sitting down (right
    behind the person, who walked to it and turned round), and the sitter's legs while seated."""
    def at(sec):  # grid index of a time
        return min(int(round(sec / (traj.t[1] - traj.t[0]))), len(traj.t) - 1)

    segs, prims = plan.segments, []
    for i, s in enumerate(segs):
        shown = (segs[i - 1].start if i else 0.0, segs[i + 1].end if i + 1 < len(segs) else plan.duration)
        if s.label == "climbing stairs":  # the climb rate blends out within 1 s of the next segment
            i0, i1 = at(s.start), at(min(s.end + 1.0, plan.duration))
            lands = [i0] + (i0 + 1 + np.flatnonzero(np.diff(np.floor(traj.phase[i0:i1] / (2 * np.pi))))).tolist()
            for a, b in zip(lands[:-1], lands[1:] + [i1]):
                d = traj.p[b, :2] - traj.p[a, :2]
                if abs(traj.floor[b] - traj.floor[a]) > 0.01:
                    yaw = float(np.arctan2(d[1], d[0]))
                    box = _turned_box((traj.p[a, :2] + traj.p[b, :2]) / 2, yaw, np.hypot(*d) + 0.03, 1.6,
                                      traj.floor[b] - 0.4, traj.floor[b])  # a 0.4 m thick slab
                    prims.append((_BOX, box, _STAIR_COLORS[scene.kind], _PLAIN, yaw, _STEP, shown))
    sits = [0.0] * plan.start_seated + [s.p["t_transition"] for s in segs if s.label == "sitting down"]
    trousers = _TROUSERS[rng.integers(len(_TROUSERS))]
    for t_sit in sits:
        k = at(t_sit)
        h, c = traj.heading[k], traj.p[k, :2]
        fwd, left = np.array([np.cos(h), np.sin(h)]), np.array([-np.sin(h), np.cos(h)])
        width = 0.48 if scene.kind == "kitchen" else rng.uniform(1.2, 1.8)  # chair or bench
        wood = _SEAT_COLORS[scene.kind]
        prims += [(_BOX, _turned_box(c - 0.12 * fwd, h, 0.45, width, 0.0, 0.45), wood, _PLAIN, h, _SEAT),  # seat
                  (_BOX, _turned_box(c - 0.37 * fwd, h, 0.06, width, 0.45, 0.9), wood, _PLAIN, h, _SEAT)]  # back
        j = k + int(np.argmax(traj.seated[k:] >= 0.95))  # fully seated from here: the legs are in view
        up = np.flatnonzero(traj.seated[j:] < 0.95)
        legs = (traj.t[j], traj.t[j + up[0]] if up.size else plan.duration)
        for side in (-0.1, 0.1):
            prims += [(_BOX, _turned_box(c + 0.18 * fwd + side * left, h, 0.48, 0.14, 0.45, 0.6), trousers, _PLAIN,
                       h, _LEG, legs),  # thigh
                      (_BOX, _turned_box(c + 0.42 * fwd + side * left, h, 0.12, 0.11, 0.0, 0.48), trousers, _PLAIN,
                       h, _LEG, legs)]  # shin
    return add_primitives(scene, prims)


def _grain(X, Y):
    """A cheap aperiodic-looking texture in [0, 1], fixed to the world (so it flows past as the camera moves)."""
    return 0.5 + 0.25 * np.sin(5.1 * X + 1.7 * Y) * np.sin(1.3 * X - 4.7 * Y + 0.7) + 0.25 * np.sin(
        2.9 * X - 7.9 * Y + 1.9)


def _ground_color(scene, X, Y):
    """(F, P) world floor coordinates -> (F, P, 3) colour."""
    if scene.kind == "park":  # mowing stripes 2.5 m wide, grass grain
        mix = (np.floor(X / 2.5) % 2) * (0.8 + 0.2 * _grain(X, Y))
    elif scene.kind == "kitchen":  # 0.6 m checker tiles with dark grout
        tx, ty = X / 0.6, Y / 0.6
        mix = (np.floor(tx) + np.floor(ty)) % 2 * 0.35
        mix = np.where((tx % 1 < 0.05) | (ty % 1 < 0.05), 1.0, mix)
    else:  # asphalt grain with dashed lane paint every 8 m
        lane = (np.abs(Y % 8.0 - 4.0) < 0.1) & (X % 6.0 < 3.0)
        mix = np.where(lane, 1.0, 0.1 * _grain(X, Y))
    return scene.ground_a + (scene.ground_b - scene.ground_a) * mix[..., None].astype(np.float32)


def _hit_box(g, ox, oy, oz, dx, dy, dz):
    """Slab test of an axis-aligned box; rays as 1-D arrays of origins and unit directions -> distance (inf: miss)."""
    t_near, t_far = np.full(len(dx), -np.inf, np.float32), np.full(len(dx), np.inf, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for o, d, lo, hi in ((ox, dx, g[0], g[3]), (oy, dy, g[1], g[4]), (oz, dz, g[2], g[5])):
            inv = 1.0 / d
            t0, t1 = (lo - o) * inv, (hi - o) * inv
            t_near = np.maximum(t_near, np.minimum(t0, t1))
            t_far = np.minimum(t_far, np.maximum(t0, t1))
    return np.where((t_near <= t_far) & (t_near > 1e-3), t_near, np.inf)


def _hit_cylinder(g, ox, oy, oz, dx, dy, dz):
    """Side of a vertical cylinder (no caps): |(o + t d - c)_xy| = r with z0 <= z <= z1."""
    qx, qy = ox - g[0], oy - g[1]
    a = dx * dx + dy * dy
    b = qx * dx + qy * dy
    disc = b * b - a * (qx * qx + qy * qy - g[2] ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    z = oz + t * dz
    return np.where((disc > 0) & (t > 1e-3) & (z >= g[3]) & (z <= g[4]), t, np.inf)


def _hit_sphere(g, ox, oy, oz, dx, dy, dz):
    qx, qy, qz = ox - g[0], oy - g[1], oz - g[2]
    b = qx * dx + qy * dy + qz * dz
    disc = b * b - (qx * qx + qy * qy + qz * qz) + g[3] ** 2
    t = -b - np.sqrt(np.maximum(disc, 0))
    return np.where((disc > 0) & (t > 1e-3), t, np.inf)


def _normals(kind, g, p):
    """Outward unit normals (M, 3) at surface points p (M, 3)."""
    if kind == _SPHERE:
        return (p - g[:3]) / g[3]
    if kind == _CYLINDER:
        return np.stack([(p[:, 0] - g[0]) / g[2], (p[:, 1] - g[1]) / g[2], np.zeros(len(p))], axis=1)
    gap = np.concatenate([p - g[:3], g[3:] - p], axis=1)  # (M, 6) distances to the six faces
    face = np.abs(gap).argmin(axis=1)
    normal = np.zeros_like(p)
    normal[np.arange(len(p)), face % 3] = np.where(face < 3, -1.0, 1.0)
    return normal


_HIT = {_BOX: _hit_box, _CYLINDER: _hit_cylinder, _SPHERE: _hit_sphere}


def _bounding_spheres(scene):
    """(K, 3) centres and (K,) radii of spheres that contain each primitive."""
    g, k = scene.geom, scene.kinds
    centre, radius = g[:, :3].copy(), g[:, 3].copy()  # spheres are their own
    box, cyl = k == _BOX, k == _CYLINDER
    centre[box], radius[box] = (g[box, :3] + g[box, 3:]) / 2, np.linalg.norm(g[box, 3:] - g[box, :3], axis=1) / 2
    cy, sy = np.cos(scene.yaw[box]), np.sin(scene.yaw[box])  # turned frame -> world
    x, y = centre[box, 0].copy(), centre[box, 1].copy()
    centre[box, 0], centre[box, 1] = cy * x - sy * y, sy * x + cy * y
    centre[cyl] = np.stack([g[cyl, 0], g[cyl, 1], (g[cyl, 3] + g[cyl, 4]) / 2], axis=1)
    radius[cyl] = np.hypot(g[cyl, 2], (g[cyl, 4] - g[cyl, 3]) / 2)
    return centre, radius


def _screen_rects(scene, pos, R, f, width, height, t, floor):
    """For every (frame, primitive): the pixel rectangle [u0, u1) x [v0, v1) that holds its bounding sphere's
    silhouette, and whether it is on screen at all. Rays outside it cannot hit the primitive, so only these
    pixels are ray-cast: on the default dataset, about 2% of all (pixel, primitive) pairs."""
    c, r = _bounding_spheres(scene)
    rel = c[None] - pos[:, None]  # (F, K, 3)
    rel[..., 2] -= floor[:, None] * (scene.parts == _STEP)  # steps have the world's heights
    cam = np.matmul(rel, R)  # (F, K, 3) centres in camera coordinates, R^T (c - pos)
    rect = []
    for a, size in ((0, width), (1, height)):  # u from the x-z plane, v from the y-z plane: exact for a sphere
        dist = np.hypot(cam[..., a], cam[..., 2])
        centre, half = np.arctan2(cam[..., a], cam[..., 2]), np.arcsin(np.clip(r / np.maximum(dist, 1e-6), 0, 1))
        outside = dist > r  # else the camera is inside the sphere: the whole image
        lim = np.arctan(size / 2 / f + 1.0)  # an angle just past this axis' image edge: beyond it is off screen
        lo = np.where(outside, f * np.tan(np.clip(centre - half, -lim, lim)), -size)
        hi = np.where(outside, f * np.tan(np.clip(centre + half, -lim, lim)), size)
        rect += [(np.floor(lo) + size / 2).clip(0, size).astype(np.int32),
                 (np.ceil(hi) + size / 2).clip(0, size).astype(np.int32)]
    u0, u1, v0, v1 = rect
    near = np.linalg.norm(cam, axis=2) < 2.5 * scene.fog_m + r  # farther, the fog hides it (>= 78% of max_fog)
    exists = (t[:, None] >= scene.active[:, 0]) & (t[:, None] <= scene.active[:, 1])
    return u0, u1, v0, v1, exists & near & (cam[..., 2] > -r) & (u1 > u0) & (v1 > v0)  # (F, K) each


def _draw_objects(scene, pos, R, d, color, depth, f, width, height, t, floor):
    """Ray-cast every primitive, only over the pixels of its screen rectangle in the frames that see it.

    pos (F, 3), R (F, 3, 3), d (F, 3, P) world ray directions; color (F*P, 3) and depth (F*P,) are updated."""
    if len(scene.kinds) == 0:
        return
    u0, u1, v0, v1, seen = _screen_rects(scene, pos, R, f, width, height, t, floor)
    P = width * height
    dx, dy, dz = (d[:, i].reshape(-1) for i in range(3))  # (F*P,) each
    px, py, pz = (np.ascontiguousarray(pos[:, i]) for i in range(3))  # (F,) each
    for k in np.flatnonzero(seen.any(axis=0)):
        fr = np.flatnonzero(seen[:, k]).astype(np.int32)
        w, h = u1[fr, k] - u0[fr, k], v1[fr, k] - v0[fr, k]
        n = w * h
        local = np.arange(n.sum(), dtype=np.int32) - np.repeat(np.cumsum(n) - n, n)  # pixel number in the rectangle
        ww = np.repeat(w, n)
        frame = np.repeat(fr, n)
        idx = frame * P + (np.repeat(v0[fr, k], n) + local // ww) * width + np.repeat(u0[fr, k], n) + local % ww
        cy, sy = np.float32(np.cos(scene.yaw[k])), np.float32(np.sin(scene.yaw[k]))  # rays into the turned frame
        ox, oy = cy * px[frame] + sy * py[frame], cy * py[frame] - sy * px[frame]
        rx, ry = cy * dx[idx] + sy * dy[idx], cy * dy[idx] - sy * dx[idx]
        oz, rz = pz[frame] + (floor[frame] if scene.parts[k] == _STEP else 0), dz[idx]
        t = _HIT[scene.kinds[k]](scene.geom[k], ox, oy, oz, rx, ry, rz)
        closer = np.flatnonzero(t < depth[idx])
        if not closer.size:
            continue
        idx, t = idx[closer], t[closer]
        p = np.stack([ox[closer], oy[closer], oz[closer]], axis=1) + t[:, None] * np.stack(
            [rx[closer], ry[closer], rz[closer]], axis=1)  # (M, 3) hit points
        normal = _normals(scene.kinds[k], scene.geom[k], p) @ np.array([[cy, sy, 0], [-sy, cy, 0], [0, 0, 1]])  # world
        shade = 0.55 + 0.45 * np.clip(normal @ scene.light, 0, None)  # (M,) ambient + Lambert
        c = np.broadcast_to(scene.colors[k], (len(t), 3)).copy()
        if scene.patterns[k] == _LIT:
            shade[:] = 1.0
        elif scene.patterns[k] == _WINDOWS:
            along, up = (p[:, 0] + p[:, 1]) / 2.4 % 1, p[:, 2] / 3.0 % 1
            window = (np.abs(normal[:, 2]) < 0.5) & (along > 0.3) & (along < 0.75) & (up > 0.35) & (up < 0.8)
            c[window] = (0.22, 0.27, 0.35)
        depth[idx] = t
        color[idx] = c * shade[:, None]


def _floor_holes(scene, X, Y, t):
    """(F, P) floor points (X, Y) that lie over a stair step (the floor is cut open there: descending steps
    below it show through, and a climber looking back sees the flight below)."""
    hole = np.zeros(X.shape, bool)
    for k in np.flatnonzero(scene.parts == _STEP):
        fr = np.flatnonzero((t >= scene.active[k, 0]) & (t <= scene.active[k, 1]))
        if fr.size:
            g, cy, sy = scene.geom[k], np.cos(scene.yaw[k]), np.sin(scene.yaw[k])
            u, v = cy * X[fr] + sy * Y[fr], cy * Y[fr] - sy * X[fr]  # in the step's turned frame
            hole[fr] |= (u >= g[0]) & (u <= g[3]) & (v >= g[1]) & (v <= g[4])
    return hole


def _render_chunk(scene, pos, R, d_cam, f, width, height, t, floor):
    pos, R = pos.astype(np.float32), R.astype(np.float32)
    d = np.matmul(R, d_cam.T.astype(np.float32))  # (3, P) -> (F, 3, P) world ray directions
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]  # (F, P) each
    ox, oy, oz = (pos[:, i:i + 1] for i in range(3))  # (F, 1) each; oz: height above the floor
    down = dz < -1e-4
    t_floor = oz / np.where(down, -dz, 1.0)  # (F, P) distance to the floor
    color = _ground_color(scene, ox + t_floor * dx, oy + t_floor * dy)  # (F, P, 3)
    hole = down & _floor_holes(scene, ox + t_floor * dx, oy + t_floor * dy, t)  # (F, P)
    if scene.ceiling is None:
        s = np.sqrt(np.clip(dz, 0, 1))[..., None]
        sky = scene.sky_horizon + (scene.sky_zenith - scene.sky_horizon) * s  # (F, P, 3) gradient with elevation
        depth = np.where(down, t_floor, np.inf)
    else:
        t_ceil = (scene.ceiling - oz) / np.where(down, 1.0, np.maximum(dz, 1e-4))
        X, Y = ox + t_ceil * dx, oy + t_ceil * dy
        panel = ((X % 3.0) < 0.8) & ((Y % 3.0) < 0.8)  # light panels every 3 m
        sky = np.where(panel[..., None], np.float32(1.0), scene.ceiling_color * (0.9 + 0.1 * _grain(X, Y))[..., None])
        depth = np.where(down, t_floor, t_ceil)
    color = np.where(down[..., None], np.where(hole[..., None], 0.45 * scene.ground_a, color), sky).reshape(-1, 3)
    depth = np.where(hole, np.inf, depth).astype(np.float32).reshape(-1)  # (F*P,)
    _draw_objects(scene, pos, R, d, color, depth, f, width, height, t, floor)
    wall = hole.reshape(-1) & np.isinf(depth)  # through the hole, past the steps: the stairwell's shaded side
    depth[wall] = t_floor.reshape(-1)[wall]
    fog = scene.fog_max * (1 - np.exp(-np.minimum(depth, 1e4) / scene.fog_m))  # (F*P,)
    fog[np.isinf(depth)] = 0.0
    color = color + (scene.sky_horizon - color) * fog[..., None]
    return np.clip(color * scene.brightness * 255 + 0.5, 0, 255).astype(np.uint8)


def render_frames(scene, pos, R, width, height, fov_deg=90.0, t=None, floor=None, chunk=200):
    """Pinhole ray casting. pos (F, 3): camera position with z = height above the floor; R (F, 3, 3) sensor ->
    world rotations (camera x right, y down, z forward, principal point at the image centre); t (F,) frame times
    [s] (default 0) and floor (F,) the world height of the floor under the person (default 0)
    -> (F, height, width, 3) uint8. Chunks of `chunk` frames bound the memory (about 1 kB per ray)."""
    t = np.zeros(len(pos)) if t is None else np.asarray(t, float)
    floor = np.zeros(len(pos), np.float32) if floor is None else np.asarray(floor, np.float32)
    f = 0.5 * width / np.tan(np.radians(fov_deg) / 2)  # focal length [px]
    jj, ii = np.meshgrid(np.arange(width), np.arange(height))
    d_cam = np.stack([(jj + 0.5 - width / 2) / f, (ii + 0.5 - height / 2) / f, np.ones(jj.shape)], -1).reshape(-1, 3)
    d_cam /= np.linalg.norm(d_cam, axis=1, keepdims=True)  # (P, 3) unit rays, row-major pixels
    out = np.empty((len(pos), height, width, 3), np.uint8)
    for s in range(0, len(pos), chunk):
        out[s:s + chunk] = _render_chunk(scene, pos[s:s + chunk], R[s:s + chunk], d_cam, f, width, height,
                                         t[s:s + chunk], floor[s:s + chunk]).reshape(-1, height, width, 3)
    return out



def motion_blur(frames, omega, exposure_sec, fov_deg):
    """Frames (F, H, W, 3) as exposed for exposure_sec while the head turns at omega (F, 3) [rad/s] in the
    camera frame (what the gyro senses). A far point's direction d moves as dd/dt = -omega x d, which at the image
    centre is (du, dv)/dt = f (-omega_y, omega_x) px/s: each frame becomes the mean of 5 copies shifted along that
    flow, over the exposure (a box blur whose length grows with the angular speed; roll is left sharp)."""
    F, H, W, _ = frames.shape
    f = 0.5 * W / np.tan(np.radians(fov_deg) / 2)  # focal length [px]
    flow = f * exposure_sec * np.stack([-omega[:, 1], omega[:, 0]], axis=1)  # (F, 2) px travelled during exposure
    out = frames.copy()
    moving = np.flatnonzero(np.abs(flow).max(axis=1) >= 1.0)  # shifts of under half a pixel round to none
    jj, ii = np.meshgrid(np.arange(W), np.arange(H))  # (H, W) each
    acc = np.zeros((len(moving), H, W, 3), np.float32)
    for s in np.linspace(-0.5, 0.5, 5):
        u = np.clip(np.rint(jj + s * flow[moving, 0, None, None]), 0, W - 1).astype(int)  # (M, H, W)
        v = np.clip(np.rint(ii + s * flow[moving, 1, None, None]), 0, H - 1).astype(int)
        acc += frames[moving[:, None, None], v, u]
    out[moving] = np.rint(acc / 5).astype(np.uint8)
    return out
