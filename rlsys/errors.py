"""Errors that name what to change; a leaf module so any layer can raise them."""


class ConfigError(ValueError):
    """A configuration value that makes no sense; the message names the key."""


def engine_died(err: BaseException) -> bool:
    """A rollout engine actor is gone (killed, crashed, node lost) or its vLLM engine core died under it."""
    import ray

    if isinstance(err, ray.exceptions.RayActorError):
        return True
    cause = getattr(err, "cause", None)
    return type(cause).__name__ == "EngineDeadError"
