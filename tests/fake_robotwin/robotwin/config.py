"""Fake `robotwin.config`: the packaged task configs (only demo_clean's keys that matter here)."""


def load_task_config(name: str) -> dict:
    if name != "demo_clean":
        raise ValueError(f"RoboTwin task config is not packaged: {name!r}")
    return {
        "render_freq": 0, "embodiment": ["aloha-agilex"], "save_path": "./data", "clear_cache_freq": 5,
        "domain_randomization": {"random_background": False, "cluttered_table": False},
        "camera": {"head_camera_type": "D435", "wrist_camera_type": "D435", "collect_head_camera": True,
                   "collect_wrist_camera": True},
        "data_type": {"rgb": True, "qpos": True},
        "collect_data": True, "eval_video_log": True,
    }
