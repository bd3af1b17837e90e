"""A RoboTwin checkout has its task code here (the fake runtime does not need it; `dagger check` looks for it)."""
