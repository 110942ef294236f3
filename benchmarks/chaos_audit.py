"""Count what a chaos run did from the outside: the simulators' own records (every job
created, its status and points) and S3 itself (every stored file re-hashed), never
from what the flows say about themselves.

- duplicates: two jobs the account paid or holds points for (not failed) with the same
  endpoint and body (image URLs without their query: a presigned URL changes per try),
  i.e. two paid jobs for one step; plus every job id claimed by two ledger records
  (one job adopted by two steps), or recorded by a key other than the one holding its
  claim.
- lost: every job a simulator completed and charged whose outputs are not all in S3
  with matching hashes: the sidecar must exist, every file it lists must hash to the
  sidecar's sha256, and the first file must equal the simulator's own bytes (its images
  are deterministic) while its URL still serves. Jobs whose URLs expired on purpose
  before the flow could download them are counted apart (`expired`), not as lost.
- leaked: occurrences of an API key in any process log or S3 object.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx


@dataclass
class SimRecord:
    """One simulator's view, read over its HTTP introspection routes."""

    name: str
    base_url: str
    api_key: str
    expiring: bool = False  # its output URLs expire on purpose before download
    jobs: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def read(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=120) as http:
            http.put("/_sim/faults", json={}).raise_for_status()  # the audit meets no faults
            self.jobs = http.get("/_sim/jobs").json()
            self.stats = http.get("/_sim/stats").json()


@dataclass
class Audit:
    jobs: int = 0
    charged_points: int = 0
    kept_points: int = 0
    duplicates: int = 0
    lost: int = 0
    expired: int = 0
    leaked: int = 0
    files_checked: int = 0
    peak_in_flight: int = 0
    lost_jobs: list[str] = field(default_factory=list)
    duplicate_keys: list[str] = field(default_factory=list)


def _unsigned(value: Any) -> Any:
    if isinstance(value, list):
        return [_unsigned(item) for item in value]
    if isinstance(value, str):
        return urlunsplit(urlsplit(value)._replace(query="", fragment=""))
    return value


def step_identity(job: dict[str, Any]) -> str:
    """What makes two creates the same step: task type and body, callback aside."""
    body = {k: v for k, v in job["body"].items() if k != "callback"}
    for name in ("imgUrl", "imgUrls"):
        if name in body:
            body[name] = _unsigned(body[name])
    if isinstance(body.get("mask"), dict) and "url" in body["mask"]:
        body["mask"] = {**body["mask"], "url": _unsigned(body["mask"]["url"])}
    return json.dumps([job["task_type"], body], sort_keys=True)


class S3View:
    """Every object of one bucket, read straight from moto (never through the proxy)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        self.keys = [item["Key"] for page in pages for item in page.get("Contents", [])]

    def body(self, key: str) -> bytes | None:
        try:
            data: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return data

    def sidecars(self) -> dict[str, str]:
        """job id -> sidecar key (``.../{job_id}/job.json``)."""
        return {k.split("/")[-2]: k for k in self.keys if k.endswith("/job.json")}

    def ledger_records(self) -> list[dict[str, Any]]:
        """The ledger's records (``key -> job id``), without its job claims."""
        return [doc for key, doc in self._ledger_documents() if "/_jobs/" not in f"/{key}"]

    def job_claims(self) -> dict[str, str]:
        """job id -> the key holding its claim (``_ledger/_jobs/<job id>.json``)."""
        return {
            doc["job_id"]: doc["key"]
            for key, doc in self._ledger_documents()
            if "/_jobs/" in f"/{key}"
        }

    def _ledger_documents(self) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for key in self.keys:
            if "/_ledger/" in f"/{key}" and key.endswith(".json"):
                body = self.body(key)
                if body is not None:
                    found.append((key, json.loads(body)))
        return found


def _stored(view: S3View, sidecar_key: str | None, http: httpx.Client, live: bool) -> bool:
    """Whether a job's outputs are all in S3 with matching hashes."""
    raw = view.body(sidecar_key) if sidecar_key else None
    if raw is None:
        return False
    sidecar = json.loads(raw)
    files = sidecar["files"] + ([sidecar["grid"]] if sidecar.get("grid") else [])
    if not files:
        return False
    for item in files:
        body = view.body(item["key"])
        if body is None or hashlib.sha256(body).hexdigest() != item["sha256"]:
            return False
    if live:  # the simulator's own bytes for the first file, while its URL serves
        answer = http.get(files[0]["source_url"])
        if (
            answer.status_code == 200
            and hashlib.sha256(answer.content).hexdigest() != (files[0]["sha256"])
        ):
            return False
    return True


def audit(sims: Iterable[SimRecord], view: S3View, log_dirs: Iterable[Path]) -> Audit:
    sims = list(sims)
    result = Audit()
    sidecars = view.sidecars()
    paid: Counter[str] = Counter()
    for sim in sims:
        sim.read()
        result.jobs += len(sim.jobs)
        result.charged_points += sim.stats["points"]["charged"]
        result.peak_in_flight = max(result.peak_in_flight, sim.stats["peak_in_flight"])
        paid.update(f"{sim.name}:{step_identity(j)}" for j in sim.jobs if j["status"] != "failed")
        completed = [j for j in sim.jobs if j["status"] == "completed"]
        live = not sim.expiring
        with httpx.Client(timeout=120) as http, ThreadPoolExecutor(4) as pool:
            checks = pool.map(
                lambda j: _stored(view, sidecars.get(j["job_id"]), http, live),  # noqa: B023
                completed,
            )
            for job, stored in zip(completed, checks, strict=True):
                result.files_checked += 1
                if stored:
                    result.kept_points += job["points"]
                elif sim.expiring:
                    result.expired += 1
                else:
                    result.lost += 1
                    result.lost_jobs.append(f"{sim.name}:{job['job_id']}")
    extra = {k: n - 1 for k, n in paid.items() if n > 1}
    records = [r for r in view.ledger_records() if r.get("job_id")]
    held = Counter(r["job_id"] for r in records)
    adopted_twice = {k: n - 1 for k, n in held.items() if n > 1}
    # A record holding a job whose claim names another key is a job taken from its owner.
    claims = view.job_claims()
    for r in records:
        if claims.get(r["job_id"], r["key"]) != r["key"]:
            adopted_twice[f"{r['job_id']} (claimed by another key)"] = 1
    result.duplicates = sum(extra.values()) + sum(adopted_twice.values())
    # Named with their jobs and who holds them, so that the worker logs can be searched.
    holders = {r["job_id"]: r["key"] for r in records}
    jobs: dict[str, list[str]] = {
        f"{sim.name}:{step_identity(j)}": [] for sim in sims for j in sim.jobs
    }
    for sim in sims:
        for j in sim.jobs:
            jobs[f"{sim.name}:{step_identity(j)}"].append(_traced(j, claims, holders))
    result.duplicate_keys = [f"{k} jobs: {'; '.join(jobs.get(k, []))}" for k in extra]
    result.duplicate_keys = [*result.duplicate_keys, *adopted_twice][:20]
    traced = {j["job_id"]: _traced(j, claims, holders) for sim in sims for j in sim.jobs}
    result.lost_jobs = [f"{name} ({traced[name.split(':', 1)[1]]})" for name in result.lost_jobs]
    result.leaked = count_leaks([s.api_key for s in sims], view, log_dirs)
    return result


def _traced(job: dict[str, Any], claims: dict[str, str], holders: dict[str, str]) -> str:
    """One job for the details: id, status, creation time, claim and record holders."""
    return (
        f"{job['job_id']} {job['status']} created {job.get('created_at', '?')} "
        f"claim={claims.get(job['job_id'])} record={holders.get(job['job_id'])}"
    )


def count_leaks(keys: list[str], view: S3View, log_dirs: Iterable[Path]) -> int:
    """Occurrences of any API key in process logs and in every S3 object."""
    needles = [k.encode() for k in keys if k]
    found = 0
    for directory in log_dirs:
        for path in Path(directory).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                found += sum(data.count(n) for n in needles)
    for key in view.keys:
        data = view.body(key) or b""
        found += sum(data.count(n) for n in needles)
    return found
