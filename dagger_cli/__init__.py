"""dagger: DAgger fine-tuning of embodied robot policies."""

__version__ = "0.1.0"
