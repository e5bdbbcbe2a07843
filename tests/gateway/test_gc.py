"""A serving process settles its garbage collector once started (gateway.app.settle_gc)."""

from __future__ import annotations

import gc

from aiohttp import web

from gateway.app import GC_THRESHOLDS, settle_gc


async def test_settle_gc_freezes_startup_objects_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        await settle_gc(web.Application())
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0  # what startup built is out of every later collection
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_evaluation_runs_with_the_serving_gc_thresholds() -> None:
    from antifraud.evaluate import SERVING_GC_THRESHOLDS

    assert SERVING_GC_THRESHOLDS == GC_THRESHOLDS
