"""A scripted LIBERO-Spatial expert that reads the simulator: the action is a pure function of the current state.

Every libero_spatial goal is `(On akita_black_bowl_1 plate_1)`. From the true poses (a private `MjData` recomputed
from the sim's qpos, so the action never depends on stale derived quantities) the expert infers its phase each step:

- approach: pick a rim point of the bowl (rim radius ≈4.7 cm) whose outer finger has clearance (horizontal ray casts
  against collision geometry, skipping the robot and the bowl), that the arm reaches, and that the hand is already
  near (hysteresis from the state); descend in a funnel over it with the closing axis radial, so the fingers close
  across the rim wall; the gripper tilts (≤25°) about its closing axis when the point is far from the base;
  the whole open gripper (hand and fingertips) must fit there from above (vertical ray casts over its footprint);
- grasp: close at the grasp point; a grasp that closed on nothing re-opens and retries (in place while the fingers
  are still at the rim: a bowl that slipped out of the grasp over the plate drops onto it instead of being dragged);
- hold (both fingers touch the bowl): slide the bowl out of a drawer first, lift it over the obstacles on its way,
  keep it level, carry it over the plate and lower it until it touches (success fires while held).

Actions are LIBERO's 7-D OSC_POSE deltas in [-1, 1] (±0.05 m, ±0.5 rad; gripper -1 open, +1 close).
`expert_chunk` computes C actions open-loop by stepping the expert in the sim and restoring the state exactly.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

POS_SCALE, ROT_SCALE = 0.05, 0.5
RIM_DEPTH = 0.014
"""how far below the rim's top the finger pads' centre (the grip site) closes"""
FINGER_REACH = 0.068
"""how far beyond the rim point the open outer finger reaches (with a margin)"""
OPEN_GAP, CLOSED_GAP = 0.07, 0.004
MAX_TILT = math.radians(25)
HAND_MARGIN = 0.005
_GRIPPER_BOTTOM = [np.array([x, y, -0.031]) for x in np.linspace(-0.093, 0.093, 7) for y in (-0.018, 0.018)] + [
    np.array([sx * x, y, z]) for sx in (-1, 1) for x, z in ((0.039, 0.009), (0.053, 0.009), (0.064, -0.025))
    for y in (-0.008, 0.008)
]
"""points on the bottom of the open Panda gripper (its collision meshes) in the grip site's frame (z: approach,
down): the hand's flat bottom face over its length (≈19 cm), the fingers' tips and outer edges"""


def _raw(env):
    """The robosuite env under LIBERO's wrapper (or the env itself)."""
    return getattr(env, "env", env)


def _axis_angle(R: np.ndarray) -> np.ndarray:
    """Rotation vector of rotation matrix R."""
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, R.reshape(-1))
    v = np.zeros(3)
    q = q if q[0] >= 0 else -q
    angle = 2 * math.atan2(np.linalg.norm(q[1:]), q[0])
    n = np.linalg.norm(q[1:])
    if n < 1e-12:
        return v
    return q[1:] / n * angle


def _rot(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 1e-12 else v


class _Scene:
    """Per-model constants: body and geom ids, the bowl's rim, a private MjData."""

    def __init__(self, raw, bowl: str, plate: str):
        m = raw.sim.model._model
        self.model = m
        self.data = mujoco.MjData(m)
        robot = raw.robots[0]
        self.robot = robot
        self.bowl = raw.obj_body_id[bowl]
        self.plate = raw.obj_body_id[plate]
        self.site = robot.eef_site_id
        self.base = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, robot.robot_model.root_body)
        self.robot_root = m.body_rootid[self.base]
        self.gripper_qpos = np.asarray(robot._ref_gripper_joint_pos_indexes)
        self.gripper_qvel = np.asarray(robot._ref_gripper_joint_vel_indexes)
        fingers = robot.gripper.important_geoms
        geom = mujoco.mjtObj.mjOBJ_GEOM
        self.left = {mujoco.mj_name2id(m, geom, n) for n in fingers["left_finger"]}
        self.right = {mujoco.mj_name2id(m, geom, n) for n in fingers["right_finger"]}
        self.bowl_geoms = {g for g in range(m.ngeom) if m.geom_bodyid[g] == self.bowl}
        # the bowl's rim in its body frame: radius of the outermost collision boxes, height of the highest point
        radial, top = 0.0, 0.0
        for g in self.bowl_geoms:
            if not m.geom_contype[g]:
                continue
            R = np.zeros(9)
            mujoco.mju_quat2Mat(R, m.geom_quat[g])
            ext = np.abs(R.reshape(3, 3)) @ m.geom_size[g]
            radial = max(radial, float(np.hypot(*m.geom_pos[g][:2])))
            top = max(top, float(m.geom_pos[g][2] + ext[2]))
        self.rim_radius, self.rim_top = radial, top
        self.plate_top = max(
            float(m.geom_pos[g][2] + (np.abs(_quat_mat(m.geom_quat[g])) @ m.geom_size[g])[2])
            for g in range(m.ngeom)
            if m.geom_bodyid[g] == self.plate and m.geom_contype[g]
        )
        self.skip_roots = {self.robot_root, m.body_rootid[self.bowl]}
        self.geomgroup = np.array([1, 0, 0, 0, 0, 0], dtype=np.uint8)
        self._geomid = np.zeros(1, dtype=np.int32)
        # drawer joints (slide): where a bowl sits in an open drawer it is pulled out along the joint's axis
        self.drawers = [
            j
            for j in range(m.njnt)
            if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_SLIDE and m.body_rootid[m.jnt_bodyid[j]] not in self.skip_roots
        ]

    def sync(self, d_sim) -> mujoco.MjData:
        """Positions, contacts for the sim's current qpos in the private MjData."""
        d = self.data
        d.qpos[:] = d_sim.qpos
        d.qvel[:] = d_sim.qvel
        d.mocap_pos[:] = d_sim.mocap_pos
        d.mocap_quat[:] = d_sim.mocap_quat
        mujoco.mj_fwdPosition(self.model, d)
        return d

    def reach(self, p: np.ndarray, direction: np.ndarray, cutoff: float) -> float:
        """Free distance from p along direction (horizontal), skipping the robot and the bowl; cutoff if nothing."""
        m, d = self.model, self.data
        pnt = np.array(p, dtype=np.float64)
        vec = np.array(direction, dtype=np.float64)
        travelled = 0.0
        for _ in range(8):
            dist = mujoco.mj_ray(m, d, pnt, vec, self.geomgroup, 1, -1, self._geomid)
            g = int(self._geomid[0])
            if g < 0 or travelled + dist > cutoff:
                return cutoff
            if m.body_rootid[m.geom_bodyid[g]] not in self.skip_roots:
                return travelled + dist
            travelled += dist + 1e-4
            pnt = pnt + vec * (dist + 1e-4)
        return cutoff

    def ground(self, x: float, y: float, z0: float) -> float:
        """Height of the first collision surface below (x, y, z0), skipping the robot and the bowl."""
        m, d = self.model, self.data
        pnt = np.array([x, y, z0], dtype=np.float64)
        down = np.array([0.0, 0.0, -1.0])
        for _ in range(8):
            dist = mujoco.mj_ray(m, d, pnt, down, self.geomgroup, 1, -1, self._geomid)
            g = int(self._geomid[0])
            if g < 0:
                return -np.inf
            hit = pnt[2] - dist
            if m.body_rootid[m.geom_bodyid[g]] not in self.skip_roots:
                return hit
            pnt[2] = hit - 1e-4
        return -np.inf


def _quat_mat(q) -> np.ndarray:
    R = np.zeros(9)
    mujoco.mju_quat2Mat(R, q)
    return R.reshape(3, 3)


class LiberoSpatialExpert:
    """`action(env)`: the 7-D action for the env's current state (LIBERO's `OffScreenRenderEnv` or its robosuite
    env)."""

    def __init__(self, bowl: str = "akita_black_bowl_1", plate: str = "plate_1", n_sides: int = 16):
        self.bowl_name, self.plate_name, self.n_sides = bowl, plate, n_sides
        self._scene: _Scene | None = None
        self.debug: dict = {}

    def scene(self, env) -> _Scene:
        raw = _raw(env)
        m = raw.sim.model._model
        if self._scene is None or self._scene.model is not m:  # a hard reset rebuilds the model
            self._scene = _Scene(raw, self.bowl_name, self.plate_name)
        return self._scene

    def __call__(self, env) -> np.ndarray:
        return self.action(env)

    # STATE
    def _state(self, s: _Scene, d) -> dict:
        contacts_left = contacts_right = False
        for i in range(d.ncon):
            c = d.contact[i]
            g1, g2 = int(c.geom1), int(c.geom2)
            for a, b in ((g1, g2), (g2, g1)):
                if b in s.bowl_geoms:
                    contacts_left |= a in s.left
                    contacts_right |= a in s.right
        q = d.qpos[s.gripper_qpos]
        return {
            "eef": d.site_xpos[s.site].copy(),
            "R": d.site_xmat[s.site].reshape(3, 3).copy(),
            "gap": float(q[0] - q[1]),
            "gap_vel": float(d.qvel[s.gripper_qvel][0] - d.qvel[s.gripper_qvel][1]),
            "touch": contacts_left and contacts_right,
            "bowl": d.xpos[s.bowl].copy(),
            "bowl_R": d.xmat[s.bowl].reshape(3, 3).copy(),
            "plate": d.xpos[s.plate].copy(),
            "base": d.xpos[s.base].copy(),
        }

    def action(self, env) -> np.ndarray:
        """The 7-D action for the env's current state (reads qpos/qvel only; changes nothing in the env)."""
        raw = _raw(env)
        s = self.scene(env)
        d = s.sync(raw.sim.data._data)
        st = self._state(s, d)
        holding = st["touch"] and st["gap"] < 0.03
        self.debug = {
            "hold": holding,
            "touch": st["touch"],
            "gap": round(st["gap"], 3),
            "eef": np.round(st["eef"], 3),
            "bowl": np.round(st["bowl"], 3),
        }
        if holding:
            return self._carry(s, st)
        return self._approach(s, st)

    # GRASP CHOICE
    def _grasp_pose(self, s: _Scene, st: dict, phi: float):
        """Grip-site target position and orientation for the rim point at angle phi (bowl frame)."""
        Rb, c = st["bowl_R"], st["bowl"]
        local = np.array([s.rim_radius * math.cos(phi), s.rim_radius * math.sin(phi), s.rim_top])
        up = Rb[:, 2]
        rim = c + Rb @ local
        u = Rb @ np.array([math.cos(phi), math.sin(phi), 0.0])
        u[2] = 0
        u = _unit(u)
        target = rim - up * RIM_DEPTH
        return target, u

    def _orientation(self, st: dict, u: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
        """Gripper frame with closing axis ±u (the sign nearer the current one), approach down, tilted about the
        closing axis away from the base when far from it (joint-4 reach); returns (R, wrist distance)."""
        x = u if np.dot(u, st["R"][:, 0]) >= 0 else -u
        down = np.array([0.0, 0.0, -1.0])
        away = target[:2] - st["base"][:2]
        dist = float(np.linalg.norm(away))
        away3 = np.array([*_unit(away), 0.0])
        y0 = np.cross(down, x)  # z × x = y for a right-handed frame with z = down
        # tilting by angle t about x turns the approach towards ±y0; lean it away from the base
        lean = float(np.dot(y0, away3))
        tilt = MAX_TILT * float(np.clip((dist - 0.52) / 0.12, 0, 1)) * float(np.clip(abs(lean) * 1.5, 0, 1))
        angle = tilt if lean >= 0 else -tilt
        # rotating z=down about x by +angle moves it towards -y0; choose the sign that moves it towards +lean*y0
        Rz = _rot(x, -angle)
        z = Rz @ down
        y = np.cross(z, x)
        R = np.stack([x, y, z], axis=1)
        wrist = dist - 0.2 * abs(math.sin(angle)) * abs(lean)
        return R, wrist

    def _choose(self, s: _Scene, st: dict):
        options = []
        for k in range(self.n_sides):
            phi = 2 * math.pi * k / self.n_sides
            target, u = self._grasp_pose(s, st, phi)
            R, wrist = self._orientation(st, u, target)
            v = np.cross([0, 0, 1.0], u)
            tip = target[2] - 0.012
            room = min(
                s.reach(target + v * ll + np.array([0, 0, zz]) - u * 0.004, u, 0.12)
                for ll in (-0.013, 0.0, 0.013)
                for zz in (tip - target[2] + 0.004, 0.02)
            )
            blocked = max(0.0, FINGER_REACH - room)
            # past the margin the outer finger lands on the obstacle (a drawer's thin wall): no grasp from there
            blocked += 0.075 * float(np.clip((blocked - 0.006) / 0.006, 0.0, 1.0))
            # the hand comes from above: nothing may hang over the fingers (a cabinet's top over its drawer)
            up = np.array([0.0, 0.0, 1.0])
            covered = any(s.reach(target + u * dd, up, 0.25) < 0.25 for dd in (-0.04, 0.0, 0.045))
            blocked += 0.2 * covered
            rot = np.linalg.norm(_axis_angle(R @ st["R"].T))
            near = np.linalg.norm(st["eef"][:2] - target[:2])
            cost = 40 * max(blocked, 0.0) + 8 * max(0.0, wrist - 0.62) + 0.05 * rot + 0.6 * min(near, 0.2)
            options.append((cost, k, target, R))
        # the whole gripper must fit from above (a second bowl on the cabinet beside the drawer under the hand, a
        # drawer wall under a fingertip): checked lazily, cheapest first, since it only adds to the cost
        options.sort(key=lambda o: (o[0], o[1]))
        best = None
        for cost, _, target, R in options:
            if best is not None and cost >= best[0]:
                break
            cost += 40 * max(0.0, self._hand_intrusion(s, target, R) + HAND_MARGIN)
            if best is None or cost < best[0]:
                best = (cost, target, R)
        return best[1], best[2]

    @staticmethod
    def _hand_intrusion(s: _Scene, target: np.ndarray, R: np.ndarray) -> float:
        """How far anything (but the robot and the bowl) reaches up into the open gripper's bottom (hand and
        fingers) when the grip site is at target with orientation R (vertical ray casts over its footprint);
        negative: clearance."""
        worst = -np.inf
        for local in _GRIPPER_BOTTOM:
            p = target + R @ local
            worst = max(worst, s.ground(p[0], p[1], p[2] + 0.3) - p[2])
        return worst

    # PHASES
    def _move(self, st: dict, target: np.ndarray, R: np.ndarray, gripper: float, gain: float = 1.0) -> np.ndarray:
        dp = (target - st["eef"]) * gain / POS_SCALE
        dr = _axis_angle(R @ st["R"].T) / ROT_SCALE
        a = np.concatenate([np.clip(dp, -1, 1), np.clip(dr, -1, 1), [gripper]])
        return a

    def _approach(self, s: _Scene, st: dict) -> np.ndarray:
        target, R = self._choose(s, st)
        e = target - st["eef"]
        xy = float(np.linalg.norm(e[:2]))
        ori = float(np.linalg.norm(_axis_angle(R @ st["R"].T)))
        gap = st["gap"]
        near = xy < 0.008 and abs(e[2]) < 0.008 and ori < 0.12
        self.debug.update(target=np.round(target, 3), xy=round(xy, 3), ez=round(float(e[2]), 3), ori=round(ori, 2))
        if near and (gap > OPEN_GAP or st["gap_vel"] < -1e-3 or (gap > CLOSED_GAP and st["touch"])):
            return self._move(st, target, R, 1.0)  # close (or keep closing) at the grasp point
        if gap < OPEN_GAP and self._at_rim(s, st) and (gap < 0.04 or st["gap_vel"] > 0.01):
            # the fingers are still around the rim (the bowl slipped out of the grasp, or it closed on nothing):
            # open in place first; moving or turning now drags the bowl along (off the plate it was dropped on)
            return self._move(st, st["eef"], st["R"], -1.0)
        if gap < OPEN_GAP:
            # not open (closed on nothing, or dropped): open, backing up when at the bowl
            up = st["eef"] + np.array([0, 0, 0.03 if xy < 0.03 else 0.0])
            if near or xy < 0.03:
                return self._move(st, up, R, -1.0)
        # funnel over the grasp point: higher when farther in xy or still turning
        hover = min(0.10, 4.0 * max(0.0, xy - 0.003) + 0.3 * max(0.0, ori - 0.1))
        goal = target + np.array([0, 0, hover])
        step = goal - st["eef"]
        if step[2] > 0.02:  # climb before travelling
            step[:2] *= 0.3
        return self._move(st, st["eef"] + step, R, -1.0)

    @staticmethod
    def _at_rim(s: _Scene, st: dict) -> bool:
        """Whether the grip site is down at the bowl's rim wall (the fingers straddle or touch it)."""
        rel = st["bowl_R"].T @ (st["eef"] - st["bowl"])
        radial = float(np.hypot(rel[0], rel[1]))
        return abs(radial - s.rim_radius) < 0.02 and rel[2] < s.rim_top + 0.01

    def _from_under(self, s: _Scene, st: dict):
        """Horizontal unit direction out from under an overhead obstacle, or None when the bowl has open sky."""
        c, Rb = st["bowl"], st["bowl_R"]
        top = c + Rb[:, 2] * (s.rim_top + 0.005)
        up = np.array([0.0, 0.0, 1.0])
        free, covered = [], []
        for r in (0.0, 0.03, 0.055):
            for k in range(8 if r else 1):
                a = 2 * math.pi * k / 8
                p = top + np.array([r * math.cos(a), r * math.sin(a), 0.0])
                (covered if s.reach(p, up, 0.2) < 0.2 else free).append(p[:2])
        if not covered:
            return None
        if not free:
            return None
        return _unit(np.mean(free, axis=0) - np.mean(covered, axis=0))

    def _carry(self, s: _Scene, st: dict) -> np.ndarray:
        bowl, plate = st["bowl"], st["plate"]
        up = st["bowl_R"][:, 2]
        dxy = plate[:2] - bowl[:2]
        dist = float(np.linalg.norm(dxy))
        # the height that clears everything between the bowl and the plate (ray casts along the way)
        clear = plate[2] + s.plate_top
        for t in np.linspace(0, 1, 7):
            p = bowl[:2] + t * dxy
            for off in ((0, 0), (0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)):
                clear = max(clear, s.ground(p[0] + off[0], p[1] + off[1], 1.6) if t > 0.05 or off != (0, 0) else clear)
        safe = clear + 0.03
        floor = plate[2] - 0.02  # below the plate's floor: the bowl stops on it
        bottom = bowl[2]
        want = floor + min(safe + 0.01 - floor, 4.0 * max(0.0, dist - 0.008))
        move = np.zeros(3)
        move[2] = want - bottom
        move[:2] = dxy
        if bottom < safe - 0.01 and dist > 0.03:
            move[:2] *= 0.0 if bottom < safe - 0.03 else 0.3
        out = self._from_under(s, st)
        if out is not None:  # something hangs over the bowl (a drawer under the cabinet's top): slide it out first
            move = np.array([out[0] * 0.03, out[1] * 0.03, 0.003])
        # keep the bowl level: turn its up axis back to vertical; keep the gripper's yaw
        # (only once it is off its support: levelling a bowl that still rests on one edge pivots it in the grasp)
        support = s.ground(bowl[0], bowl[1], bowl[2] - 0.002)
        lifted = float(np.clip((bottom - support - 0.01) / 0.03, 0, 1))
        level = lifted * _axis_angle(_rot_between(up, np.array([0, 0, 1.0])))
        dp = np.clip(move / POS_SCALE, -1, 1)
        dp[2] = max(dp[2], -0.6)
        dr = np.clip(level / ROT_SCALE, -1, 1)
        return np.concatenate([dp, dr, [1.0]])


def _rot_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit vector a to b."""
    axis = np.cross(a, b)
    n = np.linalg.norm(axis)
    if n < 1e-9:
        return np.eye(3)
    return _rot(axis / n, math.atan2(n, float(np.dot(a, b))))


# OPEN-LOOP CHUNKS
_PLAIN = (np.ndarray, np.generic, int, float, bool, type(None))


def _python_state(obj) -> dict:
    """Copies of an object's plain attributes (arrays, numbers, robosuite's buffers): what a step may change."""
    import copy

    return {
        k: copy.deepcopy(v)
        for k, v in vars(obj).items()
        if isinstance(v, _PLAIN) or type(v).__name__ in ("DeltaBuffer", "RingBuffer")
    }


def _set_python_state(obj, state: dict) -> None:
    for k, v in state.items():
        setattr(obj, k, v)


def _data_arrays(d) -> dict:
    """Copies of every array of an MjData (integration state and derived quantities)."""
    out = {}
    for name in dir(d):
        if name.startswith("_"):
            continue
        v = getattr(d, name, None)
        if isinstance(v, np.ndarray) and v.flags.writeable and v.size:
            out[name] = v.copy()
    return out


class SimSnapshot:
    """Everything a robosuite step changes: MuJoCo's integration state (with warm start) and derived arrays, the
    env's step counters, the robot's controller, gripper and buffers. `restore()` puts it all back exactly."""

    def __init__(self, env):
        raw = _raw(env)
        self.raw = raw
        m, d = raw.sim.model._model, raw.sim.data._data
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        self.state = np.empty(mujoco.mj_stateSize(m, spec))
        mujoco.mj_getState(m, d, self.state, spec)
        self.arrays = _data_arrays(d)
        self.objects = [raw] + [x for r in raw.robots for x in (r, r.controller, r.gripper)]
        self.python = [_python_state(o) for o in self.objects]

    def restore(self) -> None:
        raw = self.raw
        m, d = raw.sim.model._model, raw.sim.data._data
        for name, v in self.arrays.items():
            target = getattr(d, name)
            if target.shape == v.shape:  # arrays sized by the current contacts are recomputed by the next step
                target[...] = v
        mujoco.mj_setState(m, d, self.state, mujoco.mjtState.mjSTATE_INTEGRATION)
        for o, s in zip(self.objects, self.python):
            _set_python_state(o, s)


def physics_step(env, action) -> None:
    """One env step's physics and control, as robosuite's `step` runs them, without observations, rendering or the
    success check."""
    raw = _raw(env)
    action = np.asarray(action, dtype=np.float64)
    for i in range(int(raw.control_timestep / raw.model_timestep)):
        raw.sim.forward()
        raw._pre_action(action, policy_step=i == 0)
        raw.sim.step()
    raw.timestep += 1
    raw.cur_time += raw.control_timestep


def expert_chunk(expert: LiberoSpatialExpert, env, chunk: int) -> np.ndarray:
    """`chunk` expert actions (chunk × 7) from the current state, open loop: the expert acts, the sim steps (no
    rendering), and the state is restored exactly afterwards, so the env continues as if nothing happened."""
    snapshot = SimSnapshot(env)
    actions = []
    try:
        for _ in range(chunk):
            action = expert.action(env)
            actions.append(action)
            physics_step(env, action)
    finally:
        snapshot.restore()
    return np.stack(actions)
