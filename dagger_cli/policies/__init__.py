"""Policy adapters behind `dagger_cli.core.protocols.Policy`, found by `model_type` in the registry
(`dagger_cli.core.registry`): the MLP and π₀ here, others from packages' entry points; `scripted` experts come
from the env adapter. `dagger_cli.assembly` builds students and experts from them."""
