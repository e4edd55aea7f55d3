"""Misbehaving verifiers for the pool tests, loaded into scorer processes with verifier.modules."""

import os
import time

from rlsys.verify import register_verifier


@register_verifier("test_hang")
def hang(response: str, ground_truth: str):
    time.sleep(3600)
    return 1.0, {}


@register_verifier("test_crash")
def crash(response: str, ground_truth: str):
    os._exit(3)  # the scorer process dies mid-sample


@register_verifier("test_nan")
def nan_reward(response: str, ground_truth: str):
    return float("nan"), {"reason": "lies"}


@register_verifier("test_slow")
def slow(response: str, ground_truth: str):
    time.sleep(0.5)  # long enough for a test to kill the verifier actor mid-call
    return float(response == ground_truth), {}


@register_verifier("test_extra_info")
def graded(response: str, ground_truth: str, extra_info=None):
    """Reward 1 when the response is the answer the row's extra_info asks for (verl rows carry one)."""
    return float(extra_info is not None and response == extra_info["want"]), {"saw": extra_info}
