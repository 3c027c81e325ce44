"""ETag discovery: the pure cost decision, the bounded listing cache, and the strategies against moto."""

from __future__ import annotations

import asyncio
import io

import pytest
from helpers import config_dict, install_meta, make_bucket, write_ndjson

from nacento_sync import Feed, Options, sync
from nacento_sync.config import Config, StorageConfig
from nacento_sync.etags import LIST_COST, EtagFinder, ListingCache, choose, folders
from nacento_sync.storage import Storage


def test_folders():
    assert folders("/m/y/a.jpg") == ("m", "m/y")
    assert folders("/m/a.jpg") == ("m", None)
    assert folders("/a.jpg") == (None, None)


def test_head_strategy_never_lists():
    d = choose(["/a/b/1.jpg", "/a/b/2.jpg"], "head", {"a": 10_000, "a/b": 10_000}, {})
    assert d.lists == [] and sorted(d.heads) == ["/a/b/1.jpg", "/a/b/2.jpg"]


def test_auto_heads_a_handful_and_lists_when_demand_pays_for_it():
    few = choose(["/a/b/1.jpg"], "auto", {"a": 1, "a/b": 1}, {})
    assert few.lists == [] and few.heads == ["/a/b/1.jpg"]
    many = [f"/a/{c}/{i}.jpg" for c in "bcd" for i in range(5)]
    d = choose(many, "auto", {"a": 15, "a/b": 5, "a/c": 5, "a/d": 5}, {})
    assert d.lists == ["a"] and d.heads == []  # 15 HEADs > 12.5 for one LIST page


def test_auto_weighs_the_folder_size_estimate():
    pending = [f"/a/b/{i}.jpg" for i in range(20)]
    demand = {"a": 20, "a/b": 20}
    # folder "a" holds 30,000 images (30 pages = 375 HEADs): listing only "a/b" (1 page) is cheaper
    d = choose(pending, "auto", demand, {"a": 30_000, "a/b": 900})
    assert d.lists == ["a/b"]
    # ... and when "a/b" alone is big too, HEADs are cheaper than either listing
    d = choose(pending, "auto", demand, {"a": 30_000, "a/b": 5_000})
    assert d.lists == [] and len(d.heads) == 20
    assert LIST_COST * 5 > 20


def test_list_strategy_picks_the_level_with_fewer_requests():
    d = choose(["/a/b/1.jpg", "/a/c/1.jpg"], "list", {}, {"a": 1_500, "a/b": 10, "a/c": 10})
    assert d.lists == ["a"]  # 2 pages for "a" vs 1 + 1 for the two second-level folders: a tie goes up
    d = choose(["/a/b/1.jpg"], "list", {}, {"a": 50_000, "a/b": 10})
    assert d.lists == ["a/b"]


def test_evicted_folders_are_not_listed_again():
    d = choose([f"/a/b/{i}.jpg" for i in range(50)], "auto", {"a": 50, "a/b": 50}, {}, never_list={"a", "a/b"})
    assert d.lists == [] and len(d.heads) == 50


def test_listing_cache_is_bounded_lru():
    cache = ListingCache(max_keys=3)
    cache.put("a", {"b/1.jpg": "e1", "b/2.jpg": "e2"})
    cache.put("c", {"d/1.jpg": "e3"})
    assert cache.lookup("/a/b/1.jpg") == (True, "e1")  # "a" is now the most recently used
    assert cache.lookup("/a/b/9.jpg") == (True, None)  # listed folder, absent key: a missing object
    cache.put("e", {"f/1.jpg": "e4"})
    assert cache.evicted == {"c"} and cache.lookup("/c/d/1.jpg") == (False, None)
    assert cache.size == 3


@pytest.fixture
def populated(s3_endpoint):
    bucket = make_bucket(s3_endpoint, prefix="store-1")
    etags = {}
    for first in "ab":
        for second in "xyz":
            for i in range(10):
                path = f"/{first}/{second}/{i}.jpg"
                etags[path] = bucket.put(path)
    bucket.put("/cache/0123abcd/a/x/0.jpg", b"resized")  # the cache tree is never listed or read
    return bucket, etags


async def _find(bucket, strategy, paths, sizes=None):
    cfg = StorageConfig(bucket=bucket.name, endpoint=bucket.endpoint, access_key="k", secret_key="s",
                        path_style=True, prefix=bucket.prefix)
    async with Storage(cfg, concurrency=8) as storage:

        async def folder_sizes():
            return sizes or {}

        finder = EtagFinder(storage, strategy, folder_sizes=folder_sizes)
        first = await finder.etags(paths)
        second = await finder.etags(paths)  # a later batch: answered from the listings
        return first, second, dict(storage.requests)


@pytest.mark.parametrize("strategy", ["head", "list", "auto"])
def test_strategies_agree_with_the_bucket(populated, strategy):
    bucket, etags = populated
    paths = [*etags, "/a/x/missing.jpg", "/q/q/elsewhere.jpg", "/top.jpg"]
    first, second, requests = asyncio.run(_find(bucket, strategy, paths))
    expected = {**etags, "/a/x/missing.jpg": None, "/q/q/elsewhere.jpg": None, "/top.jpg": None}
    assert first == expected
    if strategy == "head":
        assert requests == {"HEAD": 2 * len(paths), "LIST": 0}
    elif strategy == "list":
        assert second == expected
        assert requests == {"LIST": 3, "HEAD": 2}  # "a", "b", "q" listed once; /top.jpg has no folder
    else:
        assert second == expected
        assert requests == {"LIST": 2, "HEAD": 4}  # "a" and "b" pay for a listing; "q" and /top.jpg don't


def test_auto_heads_a_handful(populated):
    bucket, etags = populated
    paths = list(etags)[:3]
    first, _, requests = asyncio.run(_find(bucket, "auto", paths))
    assert first == {p: etags[p] for p in paths}
    assert requests["LIST"] == 0 and requests["HEAD"] == 6


def test_expected_demand_lists_from_the_first_batch(populated):
    """Three images of folder "a" alone do not pay for a listing; told the run will need ten times as many,
    the finder lists "a" at once and answers the next batch from the listing."""
    bucket, etags = populated
    paths = [p for p in etags if p.startswith("/a/")][:3]

    async def go(scale: float):
        cfg = StorageConfig(bucket=bucket.name, endpoint=bucket.endpoint, access_key="k", secret_key="s",
                            path_style=True, prefix=bucket.prefix)
        async with Storage(cfg, concurrency=8) as storage:
            finder = EtagFinder(storage, "auto")
            finder.expect(scale)
            answers = [await finder.etags(paths), await finder.etags(paths)]
            return answers, dict(storage.requests)

    (first, second), requests = asyncio.run(go(10))
    assert first == second == {p: etags[p] for p in paths}
    assert requests == {"LIST": 1, "HEAD": 0}
    _, requests = asyncio.run(go(1))
    assert requests == {"LIST": 0, "HEAD": 6}
    _, requests = asyncio.run(go(0.5))  # less than what was seen is never assumed
    assert requests == {"LIST": 0, "HEAD": 6}


def test_a_large_export_lists_from_its_first_batch(magento_factory, s3_endpoint, db_params, tmp_path):
    """A sync of an export file extrapolates each folder's demand to the whole file: no HEAD at all, one
    LIST per folder. The same records without a size to go by are HEADed until demand builds up."""
    store = magento_factory()
    install_meta(store)
    bucket = make_bucket(s3_endpoint)
    items = []
    for i in range(400):
        sku, path = f"SKU-{i:03d}", f"/{'abcdefgh'[i % 8]}/{'xyz'[i % 3]}/{i:03d}.jpg"
        store.add_product(sku)
        bucket.put(path)
        items.append({"sku": sku, "images": [{"file_path": path.lstrip("/"), "label": f"{sku} " + "x" * 200}]})
    export = write_ndjson(tmp_path / "big.ndjson", items)  # ~100 KB: many read buffers
    cfg = config_dict(store, bucket, db_params)
    config = Config.model_validate(cfg)

    def requests(records) -> dict[str, int]:
        result = sync(config, records, Options.from_config(config, dry_run=True), json_out=io.StringIO())
        assert result.status == "ok"
        return {k: result.s3_requests.get(k, 0) for k in ("HEAD", "LIST")}

    assert requests(Feed([str(export)])) == {"HEAD": 0, "LIST": 8}
    unsized = requests(list(Feed([str(export)])))
    assert unsized["HEAD"] >= 50 and unsized["LIST"] == 8  # batch 1 (50 SKUs: ~6 per folder) is HEADed
