"""Storage throttling and faults: real syncs (MariaDB + moto) through a fault-injecting proxy end as a clean
run does; a persistent outage fails only its SKUs; the pure retry policy on a fake clock.

The figures of docs/reliability.md come from these runs: `pytest tests/test_storage_faults.py -s` prints them
(lines starting "FIGURES").
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from async_helpers import cli, write_config
from botocore.exceptions import ClientError, ConnectionClosedError, NoCredentialsError, ReadTimeoutError
from faultproxy import FaultProxy, Schedule
from helpers import Bucket, config_dict, install_meta, run, write_ndjson

from nacento_sync import Report, storage
from nacento_sync.config import StorageConfig
from nacento_sync.retry import AimdLimit, Limiter, RetryPolicy, Verdict, classify_answer, with_retries

#: Faults on the images only: the start-up check (a HEAD of the bucket) goes through untouched.
OBJECTS = "/media/catalog/product/"


def figures(name: str, **values: Any) -> None:
    print(f"FIGURES {name}: {json.dumps(values, sort_keys=True)}")


# ---------------------------------------------------------------- a catalogue, synced twice


def seed(store, products: int, images: int) -> list[dict[str, Any]]:
    """`products` products, the even ones with an old gallery (replace mode deletes it), and an export giving
    each `images` images with roles and labels: the records."""
    records = []
    for p in range(products):
        sku = f"SKU-{p:04d}"
        ref = store.add_product(sku)
        if p % 2 == 0:
            store.add_gallery_entry(ref.link_id, f"/o/l/old-{p}.jpg", label="old", position=1)
        paths = [f"{chr(97 + p % 26)}/{chr(97 + i % 26)}/p{p}-{i}.jpg" for i in range(images)]
        records.append({"sku": sku, "images": [
            {"file_path": path, "label": f"L{p}-{i}", **({"roles": ["base", "small", "thumbnail"]} if i == 0 else {})}
            for i, path in enumerate(paths)]})
    return records


def put_paths(bucket: Bucket, paths: list[str]) -> list[str]:
    """Upload an image at each path, 8 at a time: their ETags."""
    from concurrent.futures import ThreadPoolExecutor

    bucket.client  # noqa: B018 - built once, before the threads share it
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(bucket.put, paths))


def put_images(bucket: Bucket, records: list[dict[str, Any]]) -> None:
    put_paths(bucket, ["/" + image["file_path"] for record in records for image in record["images"]])


def end_state(store, skus: list[str]) -> dict[str, Any]:
    """Every product's gallery (ids left out), roles and meta ETags: what two runs must agree on."""
    state = {}
    for sku in skus:
        (row,) = store.query("SELECT entity_id FROM {catalog_product_entity} WHERE sku = %s", (sku,))
        link = row["entity_id"]
        gallery = [(g["value"], g["label"], g["position"], g["disabled"], g["store0_disabled"])
                   for g in store.gallery(link)]
        etags = sorted(r["s3_etag"] for r in store.query(
            "SELECT m.s3_etag FROM {nacento_media_gallery_meta} m "
            "JOIN {catalog_product_entity_media_gallery_value} v ON v.record_id = m.record_id "
            "WHERE v.entity_id = %s", (link,)))
        state[sku] = (gallery, sorted(store.roles(link).items()), etags)
    return state


@pytest.fixture
def stores(magento_factory):
    """Two identical empty stores: one synced straight from the bucket, one through the faults."""
    pair = magento_factory("ce"), magento_factory("ce")
    for s in pair:
        install_meta(s)
    return pair


def clean_and_faulty(stores, bucket, db_params, tmp_path, products: int, images: int):
    clean, faulty = stores
    records = seed(clean, products, images)
    seed(faulty, products, images)
    put_images(bucket, records)
    export = write_ndjson(tmp_path / "x.ndjson", records)
    started = time.monotonic()
    reference = run(config_dict(clean, bucket, db_params), export, mode="replace")
    assert reference.sync.status == "ok"
    return records, export, reference, time.monotonic() - started


def assert_same_outcome(stores, records, reference, report: Report) -> None:
    clean, faulty = stores
    skus = [r["sku"] for r in records]
    assert [(r.sku, r.error, r.image_stats) for r in report.results] == [
        (r.sku, r.error, r.image_stats) for r in reference.report.results]
    assert end_state(faulty, skus) == end_state(clean, skus)


# ---------------------------------------------------------------- (1) one request in four answered 503


def test_one_request_in_four_answered_503_for_the_whole_run_ends_as_a_clean_run(
        stores, bucket, db_params, tmp_path):
    """HEAD's 503 has no body (nothing says "SlowDown"): the status alone marks throttling."""
    records, export, reference, clean_seconds = clean_and_faulty(stores, bucket, db_params, tmp_path, 80, 4)
    with FaultProxy(bucket.endpoint, Schedule({"503": 0.25}, seed=11, only=OBJECTS)) as proxy:
        cfg = config_dict(stores[1], Bucket(proxy.endpoint, bucket.name), db_params, etag_strategy="head")
        started = time.monotonic()
        outcome = run(cfg, export, mode="replace")
        seconds = time.monotonic() - started
    assert outcome.sync.status == "ok"
    assert_same_outcome(stores, records, reference, outcome.report)
    requests = outcome.sync.s3_requests
    assert proxy.injected["503"] > 50 and requests["HEAD"] == 320
    assert requests["retries"] == requests["throttled"] == proxy.injected["503"]  # every one absorbed
    figures("503 one in four", heads=requests["HEAD"], injected=dict(proxy.injected), retries=requests["retries"],
            seconds=round(seconds, 2), clean_seconds=round(clean_seconds, 2))


def test_the_run_sends_fewer_requests_at_once_while_throttled_and_recovers(bucket):
    """The in-flight limit (one for all of a client's requests) halves under 503s and grows back after them."""
    paths = [f"/t/h/{i}.jpg" for i in range(120)]
    etags = dict(zip(paths, put_paths(bucket, paths), strict=True))
    cfg = StorageConfig(bucket=bucket.name, access_key="test", secret_key="test", path_style=True)

    async def look_up(endpoint: str) -> tuple[dict, dict, int, int]:
        async with storage.Storage(cfg.model_copy(update={"endpoint": endpoint}), 32) as st:
            first = await st.head_etags(paths)
            lowest = st.limiter.aimd.lowest
            again = await st.head_etags(paths)
            return first, again, lowest, st.limiter.aimd.limit

    with FaultProxy(bucket.endpoint, Schedule({"503": 0.25}, seed=5, only=OBJECTS)) as proxy:
        first, again, lowest, _ = asyncio.run(look_up(proxy.endpoint))
    assert first == again == etags and proxy.injected["503"] > 0
    assert lowest < 32  # the run slowed down
    steady_lowest = lowest
    # A burst: the first 120 requests answered 503, then none: the look-ups finish and the limit grows back.
    with FaultProxy(bucket.endpoint, Schedule({"503": 1.0}, only=OBJECTS, end=120)) as proxy:
        started = time.monotonic()
        first, again, lowest, limit = asyncio.run(look_up(proxy.endpoint))
        seconds = time.monotonic() - started
    assert first == again == etags and lowest == 32 // 8 and limit > lowest
    # Recovered: every request the burst throttled is answered within the back-off cap of the burst's end.
    burst_end = max(t for t, _, fate in proxy.timeline if fate != "ok")
    answered = {}
    for t, key, fate in proxy.timeline:
        if fate == "ok":
            answered.setdefault(key, t)
    recovered = max(answered.values()) - burst_end
    assert recovered <= storage.retry_policy(cfg).cap + 5  # (+ slack for a busy machine)
    figures("throttling and recovery", lowest_limit_at_25pc_503=steady_lowest, lowest_limit_in_burst=lowest,
            limit_240_lookups_later=limit, all_answered_after_burst_s=round(recovered, 3), seconds=round(seconds, 2))


# ---------------------------------------------------------------- (2) a mix of faults, slow answers included


def test_a_mix_of_429_500_resets_and_stalls_past_the_read_timeout_ends_as_a_clean_run(
        stores, bucket, db_params, tmp_path):
    records, export, reference, _ = clean_and_faulty(stores, bucket, db_params, tmp_path, 60, 4)
    mix = {"429": 0.06, "500": 0.06, "503-bare": 0.04, "reset": 0.06, "stall": 0.02}
    with FaultProxy(bucket.endpoint, Schedule(mix, seed=3, only=OBJECTS, stall_seconds=5)) as proxy:
        cfg = config_dict(stores[1], Bucket(proxy.endpoint, bucket.name), db_params)
        cfg["storage"].update(connect_timeout=1, read_timeout=1)
        report = tmp_path / "report.json"
        started = time.monotonic()
        res = cli("--config", str(write_config(tmp_path / "c.yaml", cfg)), "--quiet", "sync", str(export),
                  "--mode", "replace", "--report", str(report))
        seconds = time.monotonic() - started
    assert res.returncode == 0, res.stderr
    assert_same_outcome(stores, records, reference, Report.model_validate_json(report.read_text()))
    assert set(proxy.injected) == set(mix) and proxy.injected["stall"] >= 1
    requests = json.loads(report.read_text())["run"]["s3_requests"]
    # Every fault cost one retry, but a reset on a reused connection, which aiohttp itself resends once.
    assert sum(proxy.injected.values()) - proxy.injected["reset"] <= requests["retries"] <= sum(proxy.injected.values())
    bound = storage.request_bound(StorageConfig.model_validate(cfg["storage"]))
    figures("mix", injected=dict(proxy.injected), requests=requests, seconds=round(seconds, 2),
            request_bound_s=bound)


# ---------------------------------------------------------------- (3) a persistent outage


@pytest.mark.parametrize("fault", ["503", "500", "reset"])
def test_a_persistent_outage_on_some_keys_fails_only_their_skus_and_writes_nothing_for_them(
        fault, store, bucket, db_params, tmp_path):
    """Replace mode: the affected SKUs keep their galleries (nothing deleted), the others are written."""
    hit, half, fine = store.add_product("SKU-HIT"), store.add_product("SKU-HALF"), store.add_product("SKU-FINE")
    for ref in (hit, half, fine):
        store.add_gallery_entry(ref.link_id, f"/k/p/keep-{ref.sku}.jpg", label="old", position=1)
        store.set_varchar(ref.link_id, "image", f"/k/p/keep-{ref.sku}.jpg")
    for path in ("/d/n/a.jpg", "/d/n/b.jpg", "/o/k/c.jpg", "/o/k/d.jpg"):
        bucket.put(path)
    before = {ref.sku: (store.gallery(ref.link_id), store.roles(ref.link_id)) for ref in (hit, half)}
    export = write_ndjson(tmp_path / "x.ndjson", [
        {"sku": "SKU-HIT", "images": [{"file_path": "d/n/a.jpg", "roles": ["base"]}, {"file_path": "d/n/b.jpg"}]},
        {"sku": "SKU-HALF", "images": [{"file_path": "o/k/c.jpg", "roles": ["base"]}, {"file_path": "d/n/a.jpg"}]},
        {"sku": "SKU-FINE", "images": [{"file_path": "o/k/c.jpg", "roles": ["base"]}, {"file_path": "o/k/d.jpg"}]},
    ])
    with FaultProxy(bucket.endpoint, Schedule(keys=("/d/n/",), outage=fault, stall_seconds=5)) as proxy:
        cfg = config_dict(store, Bucket(proxy.endpoint, bucket.name), db_params, etag_strategy="head")
        cfg["storage"].update(max_backoff=0.5, read_timeout=2)
        started = time.monotonic()
        out = run(cfg, export, mode="replace")
        seconds = time.monotonic() - started
    attempts = sum(1 for _, key, fate in proxy.timeline if "/d/n/" in key)
    assert out.sync.s3_requests["retries"] == 2 * 11  # two keys, each its whole budget
    # aiohttp itself resends an idempotent request once when a reused connection is reset.
    assert attempts == 2 * 12 * (2 if fault == "reset" else 1)
    for ref in (hit, half):
        result = out.result(ref.sku)
        assert result.error == "storage_error"
        assert any(w.startswith("storage_error: media/catalog/product/d/n/a.jpg") for w in result.image_stats.warnings)
        assert (store.gallery(ref.link_id), store.roles(ref.link_id)) == before[ref.sku]
    assert out.result("SKU-FINE").error is None
    assert [g["value"] for g in store.gallery(fine.link_id)] == ["/o/k/c.jpg", "/o/k/d.jpg"]
    assert out.sync.status == "failed"
    bound = storage.request_bound(StorageConfig.model_validate(cfg["storage"]))
    assert seconds < bound + 30  # one request's bound: the failing keys are retried concurrently
    figures(f"persistent outage ({fault})", proxy_attempts_per_key=attempts // 2, seconds=round(seconds, 2),
            request_bound_s=round(bound, 1), requests=out.sync.s3_requests)


def test_a_total_outage_of_the_images_fails_every_sku_with_storage_error_and_writes_nothing(
        store, bucket, db_params, tmp_path):
    refs = [store.add_product(f"SKU-{i}") for i in range(10)]
    for ref in refs:
        store.add_gallery_entry(ref.link_id, "/k/p/keep.jpg", position=1)
    counts = store.table_counts()
    export = write_ndjson(tmp_path / "x.ndjson", [
        {"sku": ref.sku, "images": [{"file_path": f"n/e/{ref.sku}.jpg"}]} for ref in refs])
    with FaultProxy(bucket.endpoint, Schedule(keys=(OBJECTS,), outage="503")) as proxy:
        cfg = config_dict(store, Bucket(proxy.endpoint, bucket.name), db_params, etag_strategy="head")
        cfg["storage"]["max_backoff"] = 0.5
        out = run(cfg, export, mode="replace")
    assert [r.error for r in out.report.results] == ["storage_error"] * 10
    assert store.table_counts() == counts
    assert proxy.injected["503"] == 10 * 12 and out.sync.s3_requests["throttled"] == 10 * 11


def test_a_bucket_dead_mid_run_fails_the_rest_at_one_attempt_each(store, bucket, db_params, tmp_path):
    """Every image request stalls past the read timeout: once nothing but faults came back for one request's
    bound, the later requests stop after one attempt instead of spending their whole budget."""
    refs = [store.add_product(f"SKU-{i}") for i in range(12)]
    counts = store.table_counts()
    assert storage.request_bound(StorageConfig(bucket="shop-media", connect_timeout=0.5, read_timeout=1,
                                               max_backoff=0.1)) == pytest.approx(19.1)
    export = write_ndjson(tmp_path / "x.ndjson", [
        {"sku": ref.sku, "images": [{"file_path": f"d/e/{ref.sku}.jpg"}]} for ref in refs])
    with FaultProxy(bucket.endpoint, Schedule(keys=(OBJECTS,), outage="stall", stall_seconds=2)) as proxy:
        cfg = config_dict(store, Bucket(proxy.endpoint, bucket.name), db_params, etag_strategy="head",
                          concurrency=2)
        cfg["storage"].update(connect_timeout=0.5, read_timeout=1, max_backoff=0.1)  # the bucket check passes
        started = time.monotonic()
        out = run(cfg, export, mode="replace")
        seconds = time.monotonic() - started
    assert [r.error for r in out.report.results] == ["storage_error"] * 12
    assert store.table_counts() == counts
    # Two at a time, a whole budget takes ≥ 12 × 1 s: after three rounds the bound (19.1 s) has passed.
    assert proxy.injected["stall"] <= 6 * 12 + 6 < 12 * 12
    bound = storage.request_bound(StorageConfig.model_validate(cfg["storage"]))
    figures("bucket dead mid-run", attempts=proxy.injected["stall"], budget=12 * 12, seconds=round(seconds, 2),
            request_bound_s=round(bound, 2))


# ---------------------------------------------------------------- (4) the start-up check


@pytest.mark.parametrize("fault", ["stall", "503"])
def test_check_access_against_a_silent_or_throttling_endpoint_fails_within_its_bound(fault, bucket):
    cfg = StorageConfig(bucket=bucket.name, access_key="test", secret_key="test", path_style=True,
                        connect_timeout=0.5, read_timeout=0.5)

    async def check(endpoint: str) -> None:
        async with storage.Storage(cfg.model_copy(update={"endpoint": endpoint})) as st:
            await st.check_access()

    with FaultProxy(bucket.endpoint, Schedule({fault: 1.0}, stall_seconds=10)) as proxy:
        started = time.monotonic()
        with pytest.raises(storage.StorageAccessError) as err:
            asyncio.run(check(proxy.endpoint))
        seconds = time.monotonic() - started
    assert proxy.injected[fault] == storage.CHECK_ATTEMPTS
    assert seconds < storage.startup_bound(cfg) + 5, seconds
    assert "unreachable" in str(err.value) if fault == "stall" else "503" in str(err.value)
    figures(f"check_access ({fault})", attempts=proxy.injected[fault], seconds=round(seconds, 2),
            startup_bound_s=storage.startup_bound(cfg))


def test_the_default_bounds_follow_the_retry_budget():
    cfg = StorageConfig(bucket="shop-media")
    assert (cfg.max_attempts, cfg.max_backoff) == (12, 5)
    policy = storage.retry_policy(cfg)
    assert storage.boto_config(cfg, 8).retries == {"total_max_attempts": 1, "mode": "standard"}
    # 12 attempts of 5 + 10 s, and waits of at most 0.1, 0.2, … 3.2, then 5 s (five times).
    assert policy.longest_backoff() == pytest.approx(0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 3.2 + 5 * 5)
    assert storage.request_bound(cfg) == pytest.approx(12 * 15 + policy.longest_backoff())
    assert storage.startup_bound(cfg) == pytest.approx(3 * 15 + 0.1 + 0.2)
    assert storage.startup_bound(cfg) < 60  # every start-up check stays under a minute


# ---------------------------------------------------------------- (5) the pure policy, on a fake clock


@pytest.mark.parametrize(("status", "code", "verdict"), [
    (503, "503", Verdict.THROTTLED),  # a HEAD: no body, botocore makes the status the code
    (503, "SlowDown", Verdict.THROTTLED), (429, "", Verdict.THROTTLED), (400, "Throttling", Verdict.THROTTLED),
    (500, "InternalError", Verdict.TRANSIENT), (502, "", Verdict.TRANSIENT), (400, "RequestTimeout", Verdict.TRANSIENT),
    (403, "AccessDenied", Verdict.FINAL), (404, "NoSuchKey", Verdict.FINAL), (400, "InvalidArgument", Verdict.FINAL),
])
def test_answers_are_classified_by_status_and_code(status, code, verdict):
    assert classify_answer(status, code) is verdict
    err = ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "HeadObject")
    assert storage.classify(err) is verdict


def test_resets_and_timeouts_are_retried_missing_credentials_are_not():
    assert storage.classify(ConnectionClosedError(endpoint_url="http://x")) is Verdict.TRANSIENT
    assert storage.classify(ReadTimeoutError(endpoint_url="http://x")) is Verdict.SLOW
    assert storage.classify(TimeoutError()) is Verdict.SLOW
    assert storage.classify(ConnectionResetError()) is Verdict.TRANSIENT
    assert storage.classify(NoCredentialsError()) is Verdict.FINAL


def test_backoff_is_full_jitter_under_a_doubling_cap():
    policy = RetryPolicy(attempts=12, base=0.1, cap=5)
    assert [policy.ceiling(i) for i in range(1, 12)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5, 5, 5, 5, 5])
    assert policy.delay(3, 0.0) == 0 and policy.delay(3, 0.5) == pytest.approx(0.2)
    assert policy.delay(40, 0.999) < 5
    assert policy.bound(2.0) == pytest.approx(24 + policy.longest_backoff())


class Fault(Exception):
    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict


def _run(call, policy, limiter=None, draw=lambda: 0.999):
    """`with_retries` on a fake clock: returns (result or exception, the waits, the retries counted)."""
    waits: list[float] = []
    retries: list[Verdict] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    async def go():
        try:
            return await with_retries(call, lambda e: e.verdict, policy, limiter or Limiter(4),
                                      on_retry=retries.append, sleep=fake_sleep, draw=draw)
        except Fault as e:
            return e

    return asyncio.run(go()), waits, retries


def test_a_request_is_retried_until_it_answers_within_its_budget():
    answers = [Verdict.THROTTLED, Verdict.TRANSIENT, Verdict.THROTTLED]

    async def call():
        if answers:
            raise Fault(answers.pop(0))
        return "etag"

    policy = RetryPolicy(attempts=12, base=0.1, cap=5)
    result, waits, retries = _run(call, policy)
    assert result == "etag" and retries == [Verdict.THROTTLED, Verdict.TRANSIENT, Verdict.THROTTLED]
    assert waits == pytest.approx([0.0999, 0.1998, 0.3996])


@pytest.mark.parametrize(("verdict", "halved"), [(Verdict.THROTTLED, True), (Verdict.SLOW, True),
                                                  (Verdict.TRANSIENT, False)])
def test_throttling_and_timeouts_halve_the_limit_other_faults_do_not(verdict, halved):
    """No answer in time is treated as an overloaded endpoint: fewer requests at once, as when throttled."""
    limiter = Limiter(16)
    answers = [verdict]

    async def call():
        if answers:
            raise Fault(answers.pop(0))
        return "etag"

    result, _, retries = _run(call, RetryPolicy(attempts=3), limiter)
    assert result == "etag" and retries == [verdict]
    assert limiter.aimd.limit == (8 if halved else 16)


def test_a_final_answer_is_not_retried_and_a_spent_budget_raises_the_last_error():
    calls = []

    async def forbidden():
        calls.append(1)
        raise Fault(Verdict.FINAL)

    result, waits, _ = _run(forbidden, RetryPolicy(attempts=12))
    assert isinstance(result, Fault) and calls == [1] and waits == []

    async def down():
        calls.append(1)
        raise Fault(Verdict.THROTTLED)

    calls.clear()
    policy = RetryPolicy(attempts=12, base=0.1, cap=5)
    result, waits, retries = _run(down, policy)
    assert isinstance(result, Fault) and len(calls) == 12 and len(retries) == 11
    assert sum(waits) <= policy.longest_backoff()


def test_one_request_in_four_throttled_needs_no_more_than_the_budget():
    """12 attempts: a request fails only if 12 in a row do, 0.25^12 ≈ 6e-8; 5,000 requests all succeed."""
    import random

    rng = random.Random(1)
    policy = RetryPolicy(attempts=12)

    async def go():
        limiter = Limiter(32)

        async def call():
            await asyncio.sleep(0)
            if rng.random() < 0.25:
                raise Fault(Verdict.THROTTLED)
            return 1

        async def fake_sleep(_s: float) -> None:
            await asyncio.sleep(0)

        results = await asyncio.gather(*(with_retries(call, lambda e: e.verdict, policy, limiter, sleep=fake_sleep)
                                         for _ in range(5_000)))
        return sum(results), limiter

    total, limiter = asyncio.run(go())
    assert total == 5_000 and limiter.in_flight == 0 and limiter.aimd.lowest < 32


def test_a_dead_endpoint_stops_the_retries_until_it_answers_again():
    now = [0.0]
    limiter = Limiter(4, clock=lambda: now[0])
    policy = RetryPolicy(attempts=12, base=0.1, cap=5)
    attempts: list[float] = []
    alive = [False]

    async def call():
        attempts.append(now[0])
        now[0] += 1.0  # each attempt times out after 1 s
        if not alive[0]:
            raise Fault(Verdict.TRANSIENT)
        return "etag"

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    async def one():
        try:
            return await with_retries(call, lambda e: e.verdict, policy, limiter, sleep=fake_sleep,
                                      draw=lambda: 0.999, down_after=policy.bound(1.0))
        except Fault:
            return None

    assert asyncio.run(one()) is None and len(attempts) == 12  # the first request: its whole budget
    attempts.clear()
    assert asyncio.run(one()) is None and len(attempts) == 1  # silent for longer than a bound: one attempt
    alive[0] = True
    assert asyncio.run(one()) == "etag"  # it answers again
    alive[0] = False
    attempts.clear()
    now[0] += 10_000  # an idle hour (a worker waiting for messages) is no silence
    assert asyncio.run(one()) is None and len(attempts) == 12  # and the budget is whole again


def test_the_limit_halves_once_per_round_down_to_an_eighth_and_grows_back_one_per_round():
    aimd = AimdLimit(16)
    epoch = aimd.epoch
    for _ in range(10):  # ten answers of one burst, all sent before the halving: one halving
        aimd.throttled(epoch)
    assert (aimd.limit, aimd.epoch) == (8, epoch + 1)
    for _ in range(5):
        aimd.throttled(aimd.epoch)
    assert aimd.limit == 2 == aimd.lowest  # never below an eighth of the ceiling
    for expected in (3, 4, 5):
        for _ in range(aimd.limit):
            aimd.succeeded()
        assert aimd.limit == expected
    for _ in range(1000):
        aimd.succeeded()
    assert aimd.limit == 16  # never above the ceiling
    small = AimdLimit(4)
    for _ in range(5):
        small.throttled(small.epoch)
    assert small.limit == 1 == AimdLimit(32, floor=1).floor


def test_no_more_requests_are_in_flight_than_the_limit_and_a_cancelled_waiter_passes_its_turn_on():
    async def go():
        limiter = Limiter(4)
        limiter.aimd.throttled(0)  # limit 2
        peak = 0
        release = asyncio.Event()

        async def one():
            nonlocal peak
            await limiter.acquire()
            peak = max(peak, limiter.in_flight)
            await release.wait()
            limiter.release()

        tasks = [asyncio.create_task(one()) for _ in range(10)]
        await asyncio.sleep(0.01)
        assert limiter.in_flight == 2
        tasks[5].cancel()  # a waiter gives up
        release.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        return peak, limiter.in_flight, sum(t.cancelled() for t in tasks)

    peak, in_flight, cancelled = asyncio.run(go())
    assert (peak, in_flight, cancelled) == (2, 0, 1)
