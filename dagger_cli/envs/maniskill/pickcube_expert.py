"""Scripted PickCube-v1 expert: a state-feedback controller that computes the action from the observation alone.

Because it keeps no internal state, it can label any state the student visits. The finger opening serves as the
"closing in progress" memory. Priority of the branches:
1. holding the cube (is_grasped and the cube within 3 cm of the TCP): carry it to the goal, gripper closed;
2. fingers closing around the cube: hold position, keep closing;
3. more than 1 cm off in xy: go to 5 cm above the cube (rise first when low), gripper open;
4. more than 1 cm off in z: descend onto the cube, gripper open;
5. aligned: close (reopen if the fingers shut on nothing, then retry).
The Cartesian command becomes joint deltas by damped least squares on the TCP Jacobian (Pinocchio, through SAPIEN,
built from ManiSkill's Panda URDF); the orientation is held.

State layout (obs_mode="state", 42-D): [0:9] qpos, [9:18] qvel, [18] is_grasped, [19:26] tcp pose (p, q wxyz),
[26:29] goal, [29:36] cube pose, [36:39] tcp→cube, [39:42] cube→goal. The Panda base is unrotated, so world and
base axes agree.
"""

from __future__ import annotations

import os

import numpy as np

_GRIPPER_OPEN, _GRIPPER_CLOSED = 1.0, -1.0
_ARM_JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
_FINGER_JOINTS = ["panda_finger_joint1", "panda_finger_joint2"]


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(B, 4) wxyz quaternions -> (B, 3, 3) rotation matrices."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1),
        ],
        axis=1,
    )


class PickCubeExpert:
    """`Policy` for PickCube-v1 in `pd_joint_delta_pos` (8-D) or `pd_ee_delta_pos` (4-D)."""

    def __init__(self, control_mode: str = "pd_joint_delta_pos", gain: float = 1.0, damping: float = 0.05):
        if control_mode not in ("pd_joint_delta_pos", "pd_ee_delta_pos"):
            raise ValueError(f"the scripted PickCube expert supports pd_joint_delta_pos and pd_ee_delta_pos, not {control_mode!r}")
        self.control_mode = control_mode
        self.gain = gain
        self.damping = damping
        self.action_shape = (1, 8 if control_mode == "pd_joint_delta_pos" else 4)
        self._model = self._kinematic_model() if control_mode == "pd_joint_delta_pos" else None

    @staticmethod
    def _kinematic_model():
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*libvulkan.*")
            import sapien
        import mani_skill

        urdf = os.path.join(os.path.dirname(mani_skill.__file__), "assets", "robots", "panda", "panda_v2.urdf")
        with open(urdf) as f:
            model = sapien.PinocchioModel(f.read(), np.array([0.0, 0.0, -9.81]))
        model.set_joint_order(_ARM_JOINTS + _FINGER_JOINTS)
        model.set_link_order(["panda_hand_tcp"])
        return model

    def cartesian_command(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 42) states -> (desired TCP displacement (B, 3) in metres, gripper command (B,))."""
        tcp, goal, cube = obs[:, 19:22], obs[:, 26:29], obs[:, 29:32]
        finger = obs[:, 7]
        to_cube = cube - tcp
        xy_err = np.linalg.norm(to_cube[:, :2], axis=1)
        z_err = np.abs(to_cube[:, 2])
        holding = (obs[:, 18] > 0.5) & (np.linalg.norm(to_cube, axis=1) < 0.03)
        closing = (xy_err < 0.02) & (z_err < 0.015) & (finger > 0.003) & (finger < 0.037)

        dx = np.zeros_like(tcp)
        gripper = np.full(len(obs), _GRIPPER_OPEN)
        # 5. aligned: close, or reopen after closing on nothing
        gripper[:] = np.where(finger < 0.003, _GRIPPER_OPEN, _GRIPPER_CLOSED)
        # 4. descend onto the cube
        descend = z_err > 0.01
        dx[descend] = to_cube[descend]
        gripper[descend] = _GRIPPER_OPEN
        # 3. go above the cube, rising first when low
        approach = xy_err > 0.01
        above = cube + np.array([0.0, 0.0, 0.05])
        low = tcp[:, 2] < cube[:, 2] + 0.03
        dx[approach] = (above - tcp)[approach]
        rise = approach & low
        dx[rise] = 0.0
        dx[rise, 2] = (above - tcp)[rise, 2]
        gripper[approach] = _GRIPPER_OPEN
        # 2. keep closing
        dx[closing] = 0.0
        gripper[closing] = _GRIPPER_CLOSED
        # 1. carry to the goal
        dx[holding] = (goal - cube)[holding]
        gripper[holding] = _GRIPPER_CLOSED
        return dx, gripper

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        dx, gripper = self.cartesian_command(obs)
        arm = self.gain * dx / 0.1 if self.control_mode == "pd_ee_delta_pos" else self._joint_delta(obs, self.gain * dx) / 0.1
        # Scale the whole vector into [-1, 1] so that saturation keeps the direction of motion.
        arm = arm / np.maximum(1.0, np.abs(arm).max(axis=1, keepdims=True))
        action = np.concatenate([arm, gripper[:, None]], axis=1)
        return action[:, None, :].astype(np.float32)

    def _joint_delta(self, obs: np.ndarray, dx: np.ndarray) -> np.ndarray:
        """Damped least squares on the world-aligned TCP Jacobian; zero angular velocity holds the orientation."""
        rotation = _quat_to_matrix(obs[:, 22:26])
        jac = np.empty((len(obs), 6, 7))
        for i, qpos in enumerate(obs[:, :9]):
            local = self._model.compute_single_link_local_jacobian(qpos, 0)[:, :7]
            jac[i, :3] = rotation[i] @ local[:3]
            jac[i, 3:] = rotation[i] @ local[3:]
        twist = np.concatenate([dx, np.zeros_like(dx)], axis=1)
        jjt = jac @ jac.transpose(0, 2, 1) + self.damping**2 * np.eye(6)
        return (jac.transpose(0, 2, 1) @ np.linalg.solve(jjt, twist[..., None]))[..., 0]
